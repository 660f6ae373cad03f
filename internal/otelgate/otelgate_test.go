package otelgate

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

func TestGateWithoutSDK(t *testing.T) {
	var g Gate
	tr := tracenoop.NewTracerProvider().Tracer("t")
	ctx := context.Background()
	g.Start(ctx, tr, "probe") // finds no SDK and closes
	if !g.Shut() || !g.Closed(ctx) {
		t.Fatal("the gate did not close after a root span without an SDK")
	}
	if n := testing.AllocsPerRun(100, func() {
		c, s := g.Start(ctx, tr, "x")
		s.End()
		_ = c
	}); n != 0 {
		t.Errorf("closed gate: %v allocations per Start, want 0", n)
	}
	c, s := g.Start(ctx, tr, "x")
	if c != ctx || s.IsRecording() || s.SpanContext().IsValid() {
		t.Error("closed gate changed the context or returned a real span")
	}
}

func TestGatePassesRemoteParents(t *testing.T) {
	var g Gate
	tr := tracenoop.NewTracerProvider().Tracer("t")
	g.Start(context.Background(), tr, "probe")
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	parent := trace.ContextWithRemoteSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, Remote: true}))
	if g.Closed(parent) {
		t.Error("Closed for a context with a valid parent")
	}
	ctx, _ := g.Start(parent, tr, "child")
	if trace.SpanContextFromContext(ctx).TraceID() != tid {
		t.Error("a closed gate dropped the incoming trace context")
	}
}

// TestGateReopensWhenSDKArrives: a gate closed while the global provider
// had no SDK reopens when one is installed.
func TestGateReopensWhenSDKArrives(t *testing.T) {
	prev := otel.GetTracerProvider()
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	otel.SetTracerProvider(tracenoop.NewTracerProvider())

	var g Gate
	global := otel.Tracer("t") // the global tracer, as instrumentation holds it
	g.Start(context.Background(), global, "probe")
	if !g.Shut() {
		t.Fatal("the gate did not close without an SDK")
	}
	rec := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	if g.Shut() {
		t.Fatal("the gate stayed closed after the global provider changed")
	}
	_, s := g.Start(context.Background(), otel.Tracer("t"), "after")
	recording := s.IsRecording()
	s.End()
	if !recording || len(rec.Ended()) != 1 || g.Shut() {
		t.Fatal("no span through the reopened gate")
	}
	// With an SDK, unsampled root spans have valid contexts: the gate stays open.
	never := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample())).Tracer("t")
	g.Start(context.Background(), never, "unsampled")
	if g.Shut() {
		t.Error("an unsampled root span closed the gate")
	}
}
