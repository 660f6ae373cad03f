package observability_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/payrail/payrail/internal/testkit/otlpsink"
	"github.com/payrail/payrail/observability"
)

// clearEnv unsets every variable Setup reads, for the test's duration.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
		"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER",
		"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "SERVICE_NAME", "OTEL_SDK_DISABLED",
	} {
		t.Setenv(k, "")
	}
}

// restoreGlobals puts the OpenTelemetry globals back after a Setup test.
func restoreGlobals(t *testing.T) {
	tp, mp, prop := otel.GetTracerProvider(), otel.GetMeterProvider(), otel.GetTextMapPropagator()
	t.Cleanup(func() {
		otel.SetTracerProvider(tp)
		otel.SetMeterProvider(mp)
		otel.SetTextMapPropagator(prop)
	})
}

func TestSetupWithoutExporterIsNoOp(t *testing.T) {
	clearEnv(t)
	restoreGlobals(t)
	ctx := context.Background()
	shutdown, err := observability.Setup(ctx)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	_, span := otel.Tracer("test").Start(ctx, "op")
	if span.IsRecording() {
		t.Error("span is recording with no exporter configured: instrumentation would pay for nothing")
	}
	span.End()
	// The W3C propagator is installed even without an exporter, so trace
	// context passes through a service that exports nothing.
	if f := otel.GetTextMapPropagator().Fields(); !contains(f, "traceparent") || !contains(f, "baggage") {
		t.Errorf("propagator fields = %v, want traceparent and baggage", f)
	}
	if err := shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

func TestNewProvidersDisabled(t *testing.T) {
	clearEnv(t)
	sink := otlpsink.StartOTLPSink(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.GRPCEndpoint())
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	t.Setenv("OTEL_SDK_DISABLED", "true")
	p, shutdown, err := observability.NewProviders(context.Background())
	if err != nil {
		t.Fatalf("NewProviders: %v", err)
	}
	defer shutdown(context.Background())
	if _, span := p.Tracer.Tracer("t").Start(context.Background(), "x"); span.IsRecording() {
		t.Error("OTEL_SDK_DISABLED=true: span is recording")
	}
}

func TestSetupPrometheusWithoutExporter(t *testing.T) {
	clearEnv(t)
	restoreGlobals(t)
	t.Setenv("SERVICE_NAME", "payrail-prom-test")
	reg := prometheus.NewRegistry()
	ctx := context.Background()
	shutdown, err := observability.Setup(ctx, observability.WithPrometheus(reg))
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	defer shutdown(ctx)
	c, err := otel.Meter("test").Int64Counter("payrail.test.requests")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(ctx, 3, metric.WithAttributes(attribute.String("payrail.outcome", "ok")))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	var found, service bool
	for _, mf := range mfs {
		switch mf.GetName() {
		case "payrail_test_requests_total":
			for _, m := range mf.GetMetric() {
				if m.GetCounter().GetValue() == 3 && labelValue(m.GetLabel(), "payrail_outcome") == "ok" {
					found = true
				}
			}
		case "target_info":
			for _, m := range mf.GetMetric() {
				if labelValue(m.GetLabel(), "service_name") == "payrail-prom-test" {
					service = true
				}
			}
		}
	}
	if !found {
		t.Errorf("payrail_test_requests_total{payrail_outcome=\"ok\"} 3 not gathered; got %d families", len(mfs))
	}
	if !service {
		t.Error("target_info has no service_name=\"payrail-prom-test\" (SERVICE_NAME)")
	}
	// Traces are still a no-op: only metrics have a consumer.
	if _, span := otel.Tracer("t").Start(ctx, "x"); span.IsRecording() {
		t.Error("span is recording with only Prometheus configured")
	}
}

func TestSetupExportsOverOTLP(t *testing.T) {
	for _, tc := range []struct {
		protocol, transport string
		endpoint            func(*otlpsink.OTLPSink) string
	}{
		{"grpc", "grpc", (*otlpsink.OTLPSink).GRPCEndpoint},
		{"http/protobuf", "http", (*otlpsink.OTLPSink).HTTPEndpoint},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			clearEnv(t)
			restoreGlobals(t)
			sink := otlpsink.StartOTLPSink(t)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", tc.endpoint(sink))
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", tc.protocol)
			t.Setenv("SERVICE_NAME", "guide-name")
			t.Setenv("OTEL_SERVICE_NAME", "otel-name") // wins over SERVICE_NAME
			t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test,team=payments")
			ctx := context.Background()
			var logs bytes.Buffer
			shutdown, err := observability.Setup(ctx, observability.WithServiceName("fallback"),
				observability.WithLogger(observability.NewLogger(&logs, slog.LevelDebug)))
			if err != nil {
				t.Fatalf("Setup: %v", err)
			}
			ctx, span := otel.Tracer("payrail/test").Start(ctx, "payments.authorize",
				trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attribute.String("payrail.operation", "authorize")))
			if !span.IsRecording() {
				t.Fatal("span not recording with an OTLP endpoint configured")
			}
			wantTrace := span.SpanContext().TraceID().String()
			span.End()
			h, _ := otel.Meter("payrail/test").Float64Histogram("payrail.test.duration", metric.WithUnit("s"))
			h.Record(ctx, 0.25, metric.WithAttributes(attribute.String("payrail.gateway", "mock")))
			if err := shutdown(ctx); err != nil { // flushes both signals
				t.Fatalf("shutdown: %v", err)
			}

			var got *otlpsink.SinkSpan
			for _, sp := range sink.Spans() {
				if sp.Name == "payments.authorize" {
					got = &sp
				}
			}
			if got == nil {
				t.Fatalf("span not received; requests %v", sink.Requests())
			}
			if got.TraceID != wantTrace || got.Kind != "server" || got.Attrs["payrail.operation"] != "authorize" || got.Scope != "payrail/test" {
				t.Errorf("span = %+v", *got)
			}
			if got.Resource["service.name"] != "otel-name" || got.Resource["deployment.environment.name"] != "test" || got.Resource["team"] != "payments" {
				t.Errorf("resource = %v, want service.name otel-name and OTEL_RESOURCE_ATTRIBUTES", got.Resource)
			}
			var point *otlpsink.SinkPoint
			for _, p := range sink.MetricPoints() {
				if p.Metric == "payrail.test.duration" {
					point = &p
				}
			}
			if point == nil || point.Type != "histogram" || point.Count != 1 || point.Sum != 0.25 || point.Unit != "s" || point.Attrs["payrail.gateway"] != "mock" {
				t.Errorf("metric point = %+v", point)
			}
			req := sink.Requests()
			if req[tc.transport+" traces"] == 0 || req[tc.transport+" metrics"] == 0 {
				t.Errorf("requests = %v, want traces and metrics over %s", req, tc.transport)
			}
		})
	}
}

func TestServiceNameFromGuideVariable(t *testing.T) {
	clearEnv(t)
	sink := otlpsink.StartOTLPSink(t)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", sink.HTTPEndpoint()+"/v1/traces")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("SERVICE_NAME", "payments-api")
	ctx := context.Background()
	p, shutdown, err := observability.NewProviders(ctx, observability.WithServiceName("fallback"))
	if err != nil {
		t.Fatalf("NewProviders: %v", err)
	}
	_, span := p.Tracer.Tracer("t").Start(ctx, "x")
	span.End()
	if err := shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	spans := sink.Spans()
	if len(spans) != 1 || spans[0].Resource["service.name"] != "payments-api" {
		t.Fatalf("spans = %+v, want one from service payments-api", spans)
	}
	// Only traces were configured: the metrics signal stays a no-op.
	if n := sink.Requests()["http metrics"]; n != 0 {
		t.Errorf("%d metric exports with only a traces endpoint", n)
	}
}

func TestSetupBadProtocol(t *testing.T) {
	clearEnv(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
	_, _, err := observability.NewProviders(context.Background())
	if err == nil {
		t.Fatal("NewProviders accepted OTEL_EXPORTER_OTLP_PROTOCOL=carrier-pigeon")
	}
	if !strings.Contains(err.Error(), "observability:") {
		t.Errorf("error %q does not say where it came from", err)
	}
}

func TestPropagatorRoundTrip(t *testing.T) {
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	carrier := propagation.MapCarrier{}
	observability.Propagator().Inject(trace.ContextWithSpanContext(context.Background(), sc), carrier)
	if carrier["traceparent"] != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Fatalf("traceparent = %q", carrier["traceparent"])
	}
	got := trace.SpanContextFromContext(observability.Propagator().Extract(context.Background(), carrier))
	if got.TraceID() != tid || got.SpanID() != sid || !got.IsRemote() {
		t.Fatalf("extracted %v", got)
	}
}

func TestNewLoggerAddsTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log := observability.NewLogger(&buf, slog.LevelInfo)
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}))
	log.With("component", "test").WithGroup("g").InfoContext(ctx, "traced", "k", "v")
	log.WithGroup("a").With("x", 1).WithGroup("b").With("y", 2).InfoContext(ctx, "nested", "z", 3)
	log.InfoContext(context.Background(), "untraced")
	log.Debug("below level")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines: %q", len(lines), buf.String())
	}
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[2]), &second); err != nil {
		t.Fatal(err)
	}
	want := `"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","a":{"x":1,"b":{"y":2,"z":3}}}`
	if !strings.HasSuffix(lines[1], want) {
		t.Errorf("nested groups line = %s, want suffix %s", lines[1], want)
	}
	// Trace ids are at the top level, outside the group opened by
	// WithGroup, where log backends look for them; the record's own
	// attributes stay in the group.
	g, _ := first["g"].(map[string]any)
	if first["component"] != "test" || first["trace_id"] != tid.String() || first["span_id"] != sid.String() || g["k"] != "v" {
		t.Errorf("traced line = %v", first)
	}
	if _, ok := second["trace_id"]; ok {
		t.Errorf("untraced line has a trace_id: %v", second)
	}
}

func TestParseLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{
		"debug": slog.LevelDebug, "INFO": slog.LevelInfo, "warn": slog.LevelWarn,
		"error": slog.LevelError, "": slog.LevelInfo, "verbose": slog.LevelInfo,
	} {
		if got := observability.ParseLevel(in); got != want {
			t.Errorf("ParseLevel(%q) = %v, want %v", in, got, want)
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

type labelPair interface {
	GetName() string
	GetValue() string
}

func labelValue[L labelPair](ls []L, name string) string {
	for _, l := range ls {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
