package gateway_test

import (
	"context"
	"errors"
	"runtime"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/driver"
	"github.com/payrail/payrail/gateway/mock"
)

type telemetryRig struct {
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	opts   []gateway.Option
}

func newRig() *telemetryRig {
	r := &telemetryRig{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	r.opts = []gateway.Option{
		gateway.WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))),
		gateway.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader))),
	}
	return r
}

// points returns the request-duration data points as attribute set -> count.
func (r *telemetryRig) points(t *testing.T) map[string]uint64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != gateway.MetricRequestDuration {
				continue
			}
			if m.Unit != "s" {
				t.Errorf("unit %q", m.Unit)
			}
			for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				out[dp.Attributes.Encoded(attribute.DefaultEncoder())] += dp.Count
			}
		}
	}
	return out
}

func auth(id, pm string) *gateway.AuthorizeRequest {
	return &gateway.AuthorizeRequest{IdempotencyKey: id + ":authorize", PaymentID: id, Merchant: "m",
		Amount: 1000, Currency: "EUR", PaymentMethod: pm, CaptureMethod: gateway.CaptureManual}
}

func TestGatewayTelemetry(t *testing.T) {
	rig := newRig()
	g, err := gateway.New("psp-a", mock.New(), rig.opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tx, err := g.Authorize(ctx, auth("pay_1", "pm_card_visa"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Capture(ctx, &gateway.CaptureRequest{IdempotencyKey: "pay_1:capture", PaymentID: "pay_1", Reference: tx.Reference, Amount: 1000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Authorize(ctx, auth("pay_2", "pm_card_insufficientFunds")); !errors.Is(err, gateway.ErrDeclined) {
		t.Fatalf("decline: %v", err)
	}
	if _, err := g.Authorize(ctx, auth("pay_3", "pm_card_processingError")); !errors.Is(err, gateway.ErrTransient) {
		t.Fatalf("transient: %v", err)
	}
	if _, err := g.Lookup(ctx, "never-sent"); !errors.Is(err, gateway.ErrNotFound) {
		t.Fatalf("lookup: %v", err)
	}

	want := map[string]uint64{
		"payrail.gateway=psp-a,payrail.operation=authorize":                      1,
		"payrail.gateway=psp-a,payrail.operation=capture":                        1,
		"error.type=declined,payrail.gateway=psp-a,payrail.operation=authorize":  1,
		"error.type=transient,payrail.gateway=psp-a,payrail.operation=authorize": 1,
		"error.type=not_found,payrail.gateway=psp-a,payrail.operation=lookup":    1,
	}
	got := rig.points(t)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("count{%s} = %d, want %d", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("points = %v, want %v", got, want)
	}

	spans := rig.spans.Ended()
	if len(spans) != 5 {
		t.Fatalf("%d spans, want 5", len(spans))
	}
	byPayment := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		if s.SpanKind() != trace.SpanKindClient {
			t.Errorf("%s kind %v, want client", s.Name(), s.SpanKind())
		}
		attrs := attrs(s)
		if attrs["payrail.gateway"] != "psp-a" {
			t.Errorf("%s attrs %v", s.Name(), attrs)
		}
		if id := attrs["payrail.payment.id"]; id != "" && s.Name() == "gateway.authorize" {
			byPayment[id] = s
		}
		for k, v := range attrs {
			if v == "pm_card_visa" || v == "pm_card_insufficientFunds" || k == "payment_method" {
				t.Errorf("span %s carries the payment method token: %s=%s", s.Name(), k, v)
			}
		}
	}
	ok, dec, tr := byPayment["pay_1"], byPayment["pay_2"], byPayment["pay_3"]
	if ok == nil || dec == nil || tr == nil {
		t.Fatalf("authorize spans by payment: %v", byPayment)
	}
	if ok.Status().Code.String() != "Unset" || attrs(ok)["error.type"] != "" {
		t.Errorf("approved: status %v attrs %v", ok.Status(), attrs(ok))
	}
	if a := attrs(dec); dec.Status().Code.String() != "Unset" || a["error.type"] != "declined" || a["payrail.gateway.decline_code"] != "insufficient_funds" {
		t.Errorf("declined (not a failed call): status %v attrs %v", dec.Status(), a)
	}
	if a := attrs(tr); tr.Status().Code.String() != "Error" || a["error.type"] != "transient" || a["payrail.gateway.not_processed"] != "true" {
		t.Errorf("transient: status %v attrs %v", tr.Status(), a)
	}
}

// wrapping is a driver that calls another Gateway, like a circuit breaker.
type wrapping struct{ inner *gateway.Gateway }

func (w wrapping) Authorize(ctx context.Context, r *driver.AuthorizeRequest) (*driver.Transaction, error) {
	return w.inner.Authorize(ctx, r)
}
func (w wrapping) Capture(ctx context.Context, r *driver.CaptureRequest) (*driver.Transaction, error) {
	return w.inner.Capture(ctx, r)
}
func (w wrapping) Void(ctx context.Context, r *driver.VoidRequest) (*driver.Transaction, error) {
	return w.inner.Void(ctx, r)
}
func (w wrapping) Refund(ctx context.Context, r *driver.RefundRequest) (*driver.Transaction, error) {
	return w.inner.Refund(ctx, r)
}
func (w wrapping) Lookup(ctx context.Context, k string) (*driver.Transaction, error) {
	return w.inner.Lookup(ctx, k)
}
func (w wrapping) Close() error  { return w.inner.Close() }
func (w wrapping) As(i any) bool { return w.inner.As(i) }

// TestGatewayWrappingMeasuredOnce: a Gateway over a driver that calls
// another Gateway records one span and one measurement per call.
func TestGatewayWrappingMeasuredOnce(t *testing.T) {
	rig := newRig()
	inner, err := gateway.New("psp-a", mock.New(), rig.opts...)
	if err != nil {
		t.Fatal(err)
	}
	outer, err := gateway.New("psp-a", wrapping{inner}, rig.opts...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := outer.Authorize(context.Background(), auth("pay_1", "pm_card_visa")); err != nil {
		t.Fatal(err)
	}
	if n := len(rig.spans.Ended()); n != 1 {
		t.Errorf("%d spans for one wrapped call, want 1", n)
	}
	if got := rig.points(t); got["payrail.gateway=psp-a,payrail.operation=authorize"] != 1 || len(got) != 1 {
		t.Errorf("points = %v, want one authorize", got)
	}
	// The inner Gateway used directly is measured as usual.
	if _, err := inner.Authorize(context.Background(), auth("pay_2", "pm_card_visa")); err != nil {
		t.Fatal(err)
	}
	if got := rig.points(t); got["payrail.gateway=psp-a,payrail.operation=authorize"] != 2 {
		t.Errorf("points = %v, want two authorizes", got)
	}
}

// TestGatewayTelemetryNoSDKAllocations: with no-op providers, the
// instrumentation allocates nothing (internal/otelgate skips the spans).
func TestGatewayTelemetryNoSDKAllocations(t *testing.T) {
	m := mock.New()
	g, err := gateway.New("psp-a", m, gateway.WithTracerProvider(tracenoop.NewTracerProvider()),
		gateway.WithMeterProvider(metricnoop.NewMeterProvider()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := auth("pay_1", "pm_card_visa")
	if _, err := g.Authorize(ctx, r); err != nil { // later calls are replays
		t.Fatal(err)
	}
	// The mock's own allocations vary a little between calls: average
	// over many, in floating point (AllocsPerRun rounds down).
	perCall := func(f func()) float64 {
		const n = 3000
		f()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range n {
			f()
		}
		runtime.ReadMemStats(&after)
		return float64(after.Mallocs-before.Mallocs) / n
	}
	direct := perCall(func() { _, _ = m.Authorize(ctx, r) })
	wrapped := perCall(func() { _, _ = g.Authorize(ctx, r) })
	t.Logf("allocations per call: driver %.2f, Gateway %.2f", direct, wrapped)
	if wrapped-direct > 0.5 {
		t.Errorf("Gateway.Authorize allocates %.2f times per call, the driver %.2f: telemetry adds %.2f with no SDK, want none",
			wrapped, direct, wrapped-direct)
	}
}

func TestErrorType(t *testing.T) {
	for err, want := range map[error]string{
		nil: "", gateway.ErrClosed: "closed", context.Canceled: "canceled", errors.New("x"): "_OTHER",
		&gateway.Error{Kind: gateway.KindAuthentication}: "authentication",
	} {
		if got := gateway.ErrorType(err); got != want {
			t.Errorf("ErrorType(%v) = %q, want %q", err, got, want)
		}
	}
}

func attrs(s sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}
