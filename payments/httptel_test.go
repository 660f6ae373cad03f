package payments_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/payments"
	"github.com/payrail/payrail/telemetry"
)

const incomingTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func serve(h http.Handler, method, path, body string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// The handler traces itself (no middleware): a server span named after the
// route, continuing the caller's W3C trace context with no propagator
// configured anywhere, with the processor's span under it; and it measures
// http.server.request.duration by method, route and status. Health probes
// are neither traced nor measured; unmatched paths carry no route.
func TestHandlerTracesAndMeasuresItself(t *testing.T) {
	e := newTelEnv(t, false)
	res := serve(e.h, "POST", "/payments", `{"amount":1999,"currency":"EUR","payment_method":"pm_card_visa","origin":"web"}`,
		map[string]string{"Authorization": "Bearer sk_tel", "Content-Type": "application/json", "Idempotency-Key": "h-1",
			"Traceparent": incomingTraceparent})
	if res.Code != http.StatusCreated {
		t.Fatalf("POST /payments: %d %s", res.Code, res.Body)
	}
	srv := e.span(t, "POST /payments")
	if srv.SpanKind() != trace.SpanKindServer {
		t.Errorf("span kind %v, want server", srv.SpanKind())
	}
	if got := srv.SpanContext().TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" || !srv.Parent().IsRemote() ||
		srv.Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("server span trace %s parent %s (remote %v); want the incoming traceparent's", got, srv.Parent().SpanID(), srv.Parent().IsRemote())
	}
	attrs := map[string]string{}
	for _, kv := range srv.Attributes() {
		attrs[string(kv.Key)] = kv.Value.Emit()
	}
	for k, want := range map[string]string{"http.request.method": "POST", "http.route": "/payments", "http.response.status_code": "201", "url.path": "/payments"} {
		if attrs[k] != want {
			t.Errorf("server span %s = %q, want %q (all: %v)", k, attrs[k], want, attrs)
		}
	}
	if op := e.span(t, "payments.authorize"); op.Parent().SpanID() != srv.SpanContext().SpanID() {
		t.Error("payments.authorize is not a child of the server span")
	}

	serve(e.h, "GET", "/healthz", "", nil)
	serve(e.h, "GET", "/readyz", "", nil)
	if nf := serve(e.h, "GET", "/nowhere", "", nil); nf.Code != http.StatusNotFound {
		t.Fatalf("GET /nowhere: %d", nf.Code)
	}
	for _, s := range e.spans.Ended() {
		if s.SpanKind() == trace.SpanKindServer && strings.Contains(s.Name(), "z") {
			t.Errorf("a probe was traced: %s", s.Name())
		}
	}
	e.span(t, "GET") // the unmatched path: named by method only
	d := e.counts(t, payments.MetricHTTPDuration)
	want := map[string]float64{
		key("http.request.method=POST", "http.route=/payments", "http.response.status_code=201"): 1,
		key("http.request.method=GET", "http.response.status_code=404"):                          1,
	}
	if len(d) != len(want) {
		t.Errorf("%s series %v, want exactly %v (no probes)", payments.MetricHTTPDuration, d, want)
	}
	for k, n := range want {
		if d[k] != n {
			t.Errorf("%s{%s} = %v, want %v", payments.MetricHTTPDuration, k, d[k], n)
		}
	}
}

// An application that already wraps its mux in tracing middleware turns
// the handler's own spans off; the processor's spans still join the trace.
func TestHandlerWithoutHTTPTelemetry(t *testing.T) {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	p := newProcessor(t, mockGateway(t, mock.New()), payments.WithTelemetry(telemetry.Providers{TracerProvider: tp}))
	auth, err := payments.APIKeys(map[string]string{"sk_x": "m"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := payments.NewHandler(p, auth, payments.WithoutHTTPTelemetry())
	if err != nil {
		t.Fatal(err)
	}
	res := serve(h, "POST", "/payments", `{"amount":100,"currency":"EUR","payment_method":"pm_card_visa"}`,
		map[string]string{"Authorization": "Bearer sk_x", "Content-Type": "application/json", "Idempotency-Key": "nt-1"})
	if res.Code != http.StatusCreated {
		t.Fatalf("%d %s", res.Code, res.Body)
	}
	var names []string
	for _, s := range spans.Ended() {
		names = append(names, s.Name())
		if s.SpanKind() == trace.SpanKindServer {
			t.Errorf("server span %q with WithoutHTTPTelemetry", s.Name())
		}
	}
	if !strings.Contains(strings.Join(names, ","), "payments.authorize") {
		t.Errorf("spans %v; want the processor's", names)
	}
}

// NewHandler validates its arguments instead of panicking on the first
// request.
func TestNewHandlerValidates(t *testing.T) {
	if _, err := payments.NewHandler(nil, payments.DevAuthenticator()); !errors.Is(err, payments.ErrNotInitialized) {
		t.Errorf("nil processor: %v", err)
	}
	if _, err := payments.NewHandler(&payments.Processor{}, payments.DevAuthenticator()); !errors.Is(err, payments.ErrNotInitialized) {
		t.Errorf("zero processor: %v", err)
	}
	if _, err := payments.NewHandler(newProcessor(t, mockGateway(t, mock.New())), nil); !errors.Is(err, payments.ErrNoAuthenticator) {
		t.Errorf("nil authenticator: %v", err)
	}
}
