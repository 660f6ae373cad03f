package payments_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/inmemory"
	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/payments"
	"github.com/payrail/payrail/telemetry"
)

// telEnv is a processor, its gateway and bus all reporting to in-memory
// OpenTelemetry SDK providers.
type telEnv struct {
	p      *payments.Processor
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	h      http.Handler
}

func newTelEnv(t *testing.T, async bool) *telEnv {
	t.Helper()
	ctx := context.Background()
	e := &telEnv{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(e.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(e.reader))
	g, err := gateway.Open(ctx, "mock://", gateway.WithTelemetry(telemetry.Providers{TracerProvider: tp, MeterProvider: mp}))
	if err != nil {
		t.Fatal(err)
	}
	b := inmemory.NewBroker()
	dt, err := b.OpenTopic(ctx, mustURL("inmemory://payments"))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := b.OpenSubscription(ctx, mustURL("inmemory://payments"))
	if err != nil {
		t.Fatal(err)
	}
	// One telemetry value for every component (issue 21): bus, gateway and
	// processor report to the same providers.
	tel := telemetry.Providers{TracerProvider: tp, MeterProvider: mp}
	topic := bus.NewTopic(dt, bus.WithTelemetry(tel), bus.WithName("payments"))
	sub := bus.NewSubscription(ds, bus.WithTelemetry(tel), bus.WithName("payments"))
	mode := payments.ModeSync
	if async {
		mode = payments.ModeAsync
	}
	e.p, err = payments.New(payments.WithGateway(g), payments.WithTopic(topic), payments.WithMode(mode),
		payments.WithTelemetry(telemetry.Providers{TracerProvider: tp, MeterProvider: mp}), payments.WithMetricOrigins("web", "POS"),
		payments.WithRetryPolicy(payments.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	w, err := payments.NewWorker(e.p, payments.WithSubscription(sub))
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	auth, err := payments.APIKeys(map[string]string{"sk_tel": "merchant-t"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.h, err = payments.NewHandler(e.p, auth); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
		_ = e.p.Close()
		_ = sub.Close()
		_ = topic.Close()
		_ = g.Close()
	})
	return e
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// counts returns the data points of metric name as sorted "k=v,..." -> value
// (counters) or count (histograms).
func (e *telEnv) counts(t *testing.T, name string) map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := e.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[p.Attributes.Encoded(attribute.DefaultEncoder())] += float64(p.Value)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out[p.Attributes.Encoded(attribute.DefaultEncoder())] += float64(p.Count)
				}
			}
		}
	}
	return out
}

func key(kv ...string) string {
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

func (e *telEnv) span(t *testing.T, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range e.spans.Ended() {
		if s.Name() == name {
			return s
		}
	}
	var names []string
	for _, s := range e.spans.Ended() {
		names = append(names, s.Name())
	}
	t.Fatalf("no span %q among %v", name, names)
	return nil
}

func TestTelemetrySync(t *testing.T) {
	e := newTelEnv(t, false)
	ctx := context.Background()
	req := payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "k1", Amount: 1999, Currency: "EUR", PaymentMethod: "pm_card_visa", Origin: "web"}
	if _, err := e.p.Authorize(ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Authorize(ctx, req); err != nil { // a replay
		t.Fatal(err)
	}
	req.IdempotencyKey, req.PaymentMethod, req.CaptureMethod = "k2", "pm_card_visa", payments.CaptureManual
	pay, err := e.p.Authorize(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.p.Capture(ctx, payments.CaptureRequest{Merchant: "m", PaymentID: pay.ID}); err != nil {
		t.Fatal(err)
	}
	req.IdempotencyKey, req.PaymentMethod, req.CaptureMethod = "k3", "pm_card_chargeDeclined", ""
	if _, err := e.p.Authorize(ctx, req); !errors.Is(err, payments.ErrDeclined) {
		t.Fatalf("decline: %v", err)
	}

	ops := e.counts(t, payments.MetricOperations)
	base := []string{"payrail.gateway=mock", "payrail.origin=web"}
	for k, want := range map[string]float64{
		key(append(base, "payrail.operation=authorize", "payrail.outcome=captured")...):   1,
		key(append(base, "payrail.operation=authorize", "payrail.outcome=replayed")...):   1,
		key(append(base, "payrail.operation=authorize", "payrail.outcome=authorized")...): 1,
		key(append(base, "payrail.operation=capture", "payrail.outcome=captured")...):     1,
		key(append(base, "payrail.operation=authorize", "payrail.outcome=declined")...):   1,
	} {
		if ops[k] != want {
			t.Errorf("operations{%s} = %v, want %v; all: %v", k, ops[k], want, ops)
		}
	}
	idem := e.counts(t, payments.MetricIdempotency)
	if idem["payrail.idempotency.outcome=acquired"] != 3 || idem["payrail.idempotency.outcome=replay"] != 1 {
		t.Errorf("idempotency = %v", idem)
	}
	// Each gateway call is measured once, by the gateway.
	gw := e.counts(t, gateway.MetricRequestDuration)
	if gw[key("payrail.gateway=mock", "payrail.operation=authorize")] != 2 ||
		gw[key("payrail.gateway=mock", "payrail.operation=authorize", "error.type=declined")] != 1 ||
		gw[key("payrail.gateway=mock", "payrail.operation=capture")] != 1 {
		t.Errorf("gateway durations = %v", gw)
	}

	auth, gwSpan := e.span(t, "payments.authorize"), e.span(t, "gateway.authorize")
	if gwSpan.Parent().SpanID() != auth.SpanContext().SpanID() || gwSpan.SpanKind() != trace.SpanKindClient {
		t.Error("gateway.authorize is not a client span under payments.authorize")
	}
	for _, s := range e.spans.Ended() {
		for _, kv := range s.Attributes() {
			if strings.Contains(kv.Value.Emit(), "pm_card") {
				t.Errorf("span %s attribute %s carries the payment method token", s.Name(), kv.Key)
			}
		}
	}
}

// TestTelemetryAsyncTrace: the worker's spans continue the trace of the
// request that published the command.
func TestTelemetryAsyncTrace(t *testing.T) {
	e := newTelEnv(t, true)
	ctx := context.Background()
	pay, err := e.p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "a1", Amount: 500,
		Currency: "EUR", PaymentMethod: "pm_card_visa", Origin: "pos"})
	if err != nil {
		t.Fatal(err)
	}
	if pay.Status != payments.StatusPending {
		t.Fatalf("status %s, want pending", pay.Status)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, err := e.p.Get(ctx, payments.GetRequest{Merchant: "m", PaymentID: pay.ID})
		if err == nil && p.Status == payments.StatusCaptured {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("payment not captured: %v %v", p, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The worker ends its span after storing the outcome; wait for it.
	var process sdktrace.ReadOnlySpan
	for process == nil && time.Now().Before(deadline) {
		for _, s := range e.spans.Ended() {
			if s.Name() == "payments.process" {
				process = s
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	auth, publish := e.span(t, "payments.authorize"), e.span(t, "publish payments")
	busProcess, gw := e.span(t, "process payments"), e.span(t, "gateway.authorize")
	if process == nil {
		t.Fatal("no payments.process span")
	}
	tid := auth.SpanContext().TraceID()
	for _, s := range []sdktrace.ReadOnlySpan{publish, busProcess, process, gw} {
		if s.SpanContext().TraceID() != tid {
			t.Errorf("%s is in trace %s, not the request's %s", s.Name(), s.SpanContext().TraceID(), tid)
		}
	}
	if publish.Parent().SpanID() != auth.SpanContext().SpanID() ||
		busProcess.Parent().SpanID() != publish.SpanContext().SpanID() ||
		process.Parent().SpanID() != busProcess.SpanContext().SpanID() ||
		gw.Parent().SpanID() != process.SpanContext().SpanID() {
		t.Error("want payments.authorize > publish payments > process payments > payments.process > gateway.authorize")
	}
	ops := e.counts(t, payments.MetricOperations)
	if ops[key("payrail.gateway=mock", "payrail.origin=pos", "payrail.operation=process", "payrail.outcome=captured")] != 1 ||
		ops[key("payrail.origin=pos", "payrail.gateway=", "payrail.operation=authorize", "payrail.outcome=pending")]+
			ops[key("payrail.origin=pos", "payrail.gateway=mock", "payrail.operation=authorize", "payrail.outcome=pending")] != 1 {
		t.Errorf("operations = %v", ops)
	}
}

// TestTelemetryHTTPProblems: error responses are counted by route, status
// and code, such as the 409s of a reused idempotency key.
func TestTelemetryHTTPProblems(t *testing.T) {
	e := newTelEnv(t, false)
	post := func(key, body string) int {
		r := httptest.NewRequest(http.MethodPost, "/payments", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer sk_tel")
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Idempotency-Key", key)
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, r)
		return w.Code
	}
	if c := post("h1", `{"amount":100,"currency":"EUR","payment_method":"pm_card_visa"}`); c != http.StatusCreated {
		t.Fatalf("create: %d", c)
	}
	if c := post("h1", `{"amount":200,"currency":"EUR","payment_method":"pm_card_visa"}`); c != http.StatusConflict {
		t.Fatalf("reuse: %d", c)
	}
	if c := post("h2", `{"amount":100,"currency":"EUR","payment_method":"pm_card_insufficientFunds"}`); c != http.StatusPaymentRequired {
		t.Fatalf("decline: %d", c)
	}
	r := httptest.NewRequest("BREW", "/payments", nil)
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)

	got := e.counts(t, payments.MetricHTTPProblems)
	for k, want := range map[string]float64{
		key("http.request.method=POST", "http.route=/payments", "http.response.status_code=409", "payrail.error.code=idempotency_key_reused"): 1,
		key("http.request.method=POST", "http.route=/payments", "http.response.status_code=402", "payrail.error.code=payment_declined"):       1,
		key("http.request.method=_OTHER", "http.route=/payments", "http.response.status_code=405", "payrail.error.code=method_not_allowed"):   1,
	} {
		if got[k] != want {
			t.Errorf("problems{%s} = %v, want %v; all: %v", k, got[k], want, got)
		}
	}
	if idem := e.counts(t, payments.MetricIdempotency); idem["payrail.idempotency.outcome=mismatch"] != 1 {
		t.Errorf("idempotency = %v", idem)
	}
}

// Metrics never carry merchant-supplied text: an origin the deployment
// does not list is counted under "other", whatever the client sent (the
// span of that one request keeps it).
func TestTelemetryUnknownOriginIsOther(t *testing.T) {
	e := newTelEnv(t, false)
	ctx := context.Background()
	for i, origin := range []string{"partner-7f3a", "Web", "x" + strings.Repeat("y", 60)} {
		if _, err := e.p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: fmt.Sprintf("o%d", i),
			Amount: 100, Currency: "EUR", PaymentMethod: "pm_card_visa", Origin: origin}); err != nil {
			t.Fatal(err)
		}
	}
	ops := e.counts(t, payments.MetricOperations)
	if ops[key("payrail.gateway=mock", "payrail.origin=other", "payrail.operation=authorize", "payrail.outcome=captured")] != 2 ||
		ops[key("payrail.gateway=mock", "payrail.origin=web", "payrail.operation=authorize", "payrail.outcome=captured")] != 1 {
		t.Fatalf("operations = %v", ops)
	}
	for k := range ops {
		if strings.Contains(k, "partner") || strings.Contains(k, "yyy") {
			t.Fatalf("merchant-supplied origin in a metric label: %s", k)
		}
	}
}
