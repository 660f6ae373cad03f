package observability_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/payrail/payrail/observability"
)

// Setup reads the OTEL_* environment: with no exporter configured, as
// here, traces are a no-op and metrics go only to the Prometheus registry.
func ExampleSetup() {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"} {
		os.Unsetenv(k)
	}
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	shutdown, err := observability.Setup(ctx, observability.WithServiceName("payrail-example"), observability.WithPrometheus(reg))
	if err != nil {
		panic(err)
	}
	defer shutdown(ctx) // flushes and stops the exporters

	_, span := otel.Tracer("example").Start(ctx, "op")
	defer span.End()
	fmt.Println("span recorded:", span.IsRecording())
	// Output: span recorded: false
}

// TraceHandler adds the trace and span ids of the context's span to every
// record, here over a JSON handler without timestamps.
func ExampleTraceHandler() {
	h := slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})
	log := slog.New(observability.TraceHandler(h))
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	log.InfoContext(ctx, "payment captured", "payment_id", "pay_1")
	// Output: {"level":"INFO","msg":"payment captured","payment_id":"pay_1","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}
}
