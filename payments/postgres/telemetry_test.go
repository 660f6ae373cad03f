package postgres_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/payrail/payrail/payments"
	"github.com/payrail/payrail/payments/postgres"
	"github.com/payrail/payrail/telemetry"
)

// Store operations against a real PostgreSQL are client spans
// "<operation> <table>" and db.client.operation.duration points with the
// database conventions' attributes; no payment data is recorded.
func TestStoreTelemetry(t *testing.T) {
	ctx := context.Background()
	u := newTable(t)
	pu, _ := url.Parse(u)
	table := pu.Query().Get("table")
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	s, err := postgres.Open(ctx, u, postgres.WithTelemetry(telemetry.Providers{TracerProvider: tp, MeterProvider: mp}))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	now := time.Now().UTC().Truncate(time.Millisecond)
	p := &payments.Payment{ID: "pay_tel", Merchant: "acme", Status: payments.StatusAuthorized, Amount: 990, Currency: "EUR",
		PaymentMethod: "pm_card_visa", CreatedAt: now, UpdatedAt: now}
	if err := s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "acme", "pay_absent"); !errors.Is(err, payments.ErrNotFound) {
		t.Fatalf("Get of a missing payment: %v", err)
	}

	got := map[string]map[string]string{}
	for _, sp := range spans.Ended() {
		if sp.SpanKind() != trace.SpanKindClient {
			t.Errorf("%s: kind %v", sp.Name(), sp.SpanKind())
		}
		attrs := map[string]string{}
		for _, kv := range sp.Attributes() {
			attrs[string(kv.Key)] = kv.Value.Emit()
			if v := kv.Value.Emit(); v == "pay_tel" || v == "pay_absent" || v == "acme" || v == "pm_card_visa" {
				t.Errorf("%s records %s = %s", sp.Name(), kv.Key, v)
			}
		}
		if (attrs["error.type"] != "") != (sp.Status().Code == codes.Error) {
			t.Errorf("%s: status %v with attributes %v", sp.Name(), sp.Status(), attrs)
		}
		got[sp.Name()] = attrs
	}
	for name, want := range map[string]map[string]string{
		"INSERT " + table: {"db.system.name": "postgresql", "db.operation.name": "INSERT", "db.collection.name": table, "error.type": ""},
		"SELECT " + table: {"db.system.name": "postgresql", "db.operation.name": "SELECT", "db.collection.name": table, "error.type": "not_found"},
	} {
		attrs, ok := got[name]
		if !ok {
			t.Errorf("no span %q in %v", name, got)
			continue
		}
		for k, v := range want {
			if attrs[k] != v {
				t.Errorf("%s: %s = %q, want %q", name, k, attrs[k], v)
			}
		}
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	var points uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "db.client.operation.duration" && m.Unit == "s" {
				for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
					points += dp.Count
				}
			}
		}
	}
	if points != 2 {
		t.Errorf("db.client.operation.duration recorded %d operations, want 2", points)
	}
}
