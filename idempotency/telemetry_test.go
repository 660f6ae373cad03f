package idempotency_test

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/payrail/payrail/idempotency"
	_ "github.com/payrail/payrail/idempotency/memory"
	"github.com/payrail/payrail/telemetry"
)

// Store operations are client spans and db.client.operation.duration
// points with the database conventions' attributes; a failure carries
// error.type, never the key.
func TestStoreTelemetry(t *testing.T) {
	ctx := context.Background()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	s, err := idempotency.Open(ctx, "memory://",
		idempotency.WithTelemetry(telemetry.Providers{TracerProvider: tp, MeterProvider: mp}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	res, err := s.Begin(ctx, &idempotency.BeginRequest{Merchant: "m", Key: "secret-key", Fingerprint: "fp"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Extend(ctx, idempotency.ExtendRequest{Merchant: "m", Key: "secret-key", Token: "not-the-owner"}); !errors.Is(err, idempotency.ErrLeaseLost) {
		t.Fatalf("Extend by another token: %v", err)
	}
	if err := s.Complete(ctx, idempotency.CompleteRequest{Merchant: "m", Key: "secret-key", Token: res.Record.Token}); err != nil {
		t.Fatal(err)
	}

	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, sp := range spans.Ended() {
		byName[sp.Name()] = sp
		if sp.SpanKind() != trace.SpanKindClient {
			t.Errorf("%s: kind %v, want client", sp.Name(), sp.SpanKind())
		}
		for _, kv := range sp.Attributes() {
			if kv.Value.Emit() == "secret-key" || kv.Value.Emit() == res.Record.Token {
				t.Errorf("%s records %s = %s", sp.Name(), kv.Key, kv.Value.Emit())
			}
		}
	}
	want := map[string]map[string]string{
		"begin": {"db.system.name": "memory", "db.operation.name": "begin", "db.collection.name": "",
			"payrail.idempotency.outcome": "acquired"},
		"extend":   {"db.operation.name": "extend", "error.type": "lease_lost"},
		"complete": {"db.operation.name": "complete"},
	}
	for name, attrs := range want {
		sp := byName[name]
		if sp == nil {
			t.Errorf("no span %q (got %v)", name, keys(byName))
			continue
		}
		got := map[string]string{}
		for _, kv := range sp.Attributes() {
			got[string(kv.Key)] = kv.Value.Emit()
		}
		for k, v := range attrs {
			if got[k] != v {
				t.Errorf("%s: %s = %q, want %q (all: %v)", name, k, got[k], v, got)
			}
		}
		if isErr := attrs["error.type"] != ""; isErr != (sp.Status().Code == codes.Error) {
			t.Errorf("%s: status %v", name, sp.Status())
		}
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != idempotency.MetricOperationDuration {
				continue
			}
			if m.Unit != "s" {
				t.Errorf("%s unit %q, want s", m.Name, m.Unit)
			}
			for _, p := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				op, _ := p.Attributes.Value(attribute.Key("db.operation.name"))
				et, _ := p.Attributes.Value(attribute.Key("error.type"))
				counts[op.AsString()+"/"+et.AsString()] += p.Count
			}
		}
	}
	for k, n := range map[string]uint64{"begin/": 1, "extend/lease_lost": 1, "complete/": 1} {
		if counts[k] != n {
			t.Errorf("%s points %s = %d, want %d (all: %v)", idempotency.MetricOperationDuration, k, counts[k], n, counts)
		}
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
