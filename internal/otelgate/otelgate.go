// Package otelgate lets payrail's instrumentation skip starting spans while
// no OpenTelemetry SDK is installed, so that tracing costs nothing (not even
// the allocations of a no-op span's context) in applications that do not
// export traces.
//
// The OpenTelemetry trace API cannot say whether a tracer is backed by an
// SDK. A Gate finds out from the spans it starts: an SDK gives every root
// span a valid span context (sampled or not), a no-op tracer does not. After
// a root span with an invalid context the gate closes, and Start returns at
// once for contexts without a valid span context, until the global tracer
// provider changes (otel.SetTracerProvider, as observability.Setup calls):
// then it lets one span through to check again. Spans with a valid parent
// context (an SDK's, or one received from upstream) are always started, so
// trace context still propagates through a service that exports nothing.
package otelgate

import (
	"context"
	"sync/atomic"
	"unsafe"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"
)

// Gate decides whether to start spans. The zero value is open. It is safe
// for concurrent use.
type Gate struct {
	closed atomic.Pointer[closure]
}

// closure records the global tracer provider in force when the gate closed,
// as its interface words: comparing them is cheaper than comparing the
// interfaces (a runtime call), and cannot panic on non-comparable types.
type closure struct {
	global [2]unsafe.Pointer
}

func words(tp trace.TracerProvider) [2]unsafe.Pointer {
	return *(*[2]unsafe.Pointer)(unsafe.Pointer(&tp))
}

// noop is a span that does nothing, returned when the gate is closed.
var noop = trace.SpanFromContext(context.Background())

// Shut reports whether the gate is closed: Start would return at once for a
// context without a valid span context. It looks into no context (a Value
// lookup can allocate) and reads no clock.
func (g *Gate) Shut() bool {
	c := g.closed.Load()
	if c == nil {
		return false
	}
	return words(otel.GetTracerProvider()) == c.global
}

// Closed reports whether Start would return at once for ctx, so that
// callers can skip building span options.
func (g *Gate) Closed(ctx context.Context) bool {
	return g.Shut() && !trace.SpanContextFromContext(ctx).IsValid()
}

// Start starts a span with tr, unless ctx has no valid span context and the
// gate is closed: then it returns ctx unchanged and a no-op span, without
// allocating.
func (g *Gate) Start(ctx context.Context, tr trace.Tracer, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	parent := trace.SpanContextFromContext(ctx).IsValid()
	if !parent && g.Shut() {
		return ctx, noop
	}
	global := otel.GetTracerProvider() // before Start: a provider set meanwhile reopens the gate
	ctx, span := tr.Start(ctx, name, opts...)
	switch {
	case parent:
	case span.SpanContext().IsValid():
		g.closed.Store(nil)
	default:
		g.closed.Store(&closure{global: words(global)})
	}
	return ctx, span
}
