package payments

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/payrail/payrail/internal/otelgate"
	"github.com/payrail/payrail/telemetry"
)

// MetricHTTPDuration is the HTTP API's request duration histogram, with
// the semantic conventions' name and attributes: http.request.method,
// http.route (the matched pattern, e.g. /payments/{id}) and
// http.response.status_code. No attribute comes from a request header or
// path value, so the series are bounded. Health probes are not measured.
const MetricHTTPDuration = "http.server.request.duration"

// httpTelemetry instruments the Handler: a server span per request that
// continues the caller's trace context, and MetricHTTPDuration.
type httpTelemetry struct {
	providers telemetry.Providers
	tracer    trace.Tracer
	gate      otelgate.Gate
	duration  metric.Float64Histogram

	mu   sync.RWMutex
	opts map[httpKey][]metric.RecordOption
}

type httpKey struct {
	method, route string
	status        int
}

func newHTTPTelemetry(p telemetry.Providers) (*httpTelemetry, error) {
	t := &httpTelemetry{providers: p, tracer: p.Tracer().Tracer(instrumentationName), opts: map[httpKey][]metric.RecordOption{}}
	var err error
	t.duration, err = p.Meter().Meter(instrumentationName).Float64Histogram(MetricHTTPDuration,
		metric.WithDescription("Duration of HTTP server requests."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10))
	return t, err
}

// isProbe reports the health endpoints, kept out of traces and metrics:
// they are called every few seconds by orchestrators and say nothing about
// the API's traffic.
func (h *Handler) isProbe(r *http.Request) bool {
	p := r.URL.Path
	return p == "/healthz" || p == "/readyz"
}

// serverSpan is shared by every request: options built per call would
// allocate.
var serverSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}

// statusWriters recycles the per-request status recorders.
var statusWriters = sync.Pool{New: func() any { return new(statusWriter) }}

// ServeHTTP implements http.Handler: it traces and measures the request,
// then routes it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := h.tel
	if t == nil || h.isProbe(r) {
		h.mux.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	method := httpMethod(r.Method)
	ctx := t.providers.Propagators().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := t.gate.Start(ctx, t.tracer, method, serverSpan...)
	recording := span.IsRecording()
	if recording {
		span.SetAttributes(
			semconv.HTTPRequestMethodKey.String(method),
			semconv.URLPath(r.URL.Path),
			semconv.URLScheme(scheme(r)),
			semconv.NetworkProtocolVersion(protocolVersion(r)),
			semconv.UserAgentOriginal(r.UserAgent()),
		)
		if host, port, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			span.SetAttributes(semconv.ClientAddress(host), semconv.NetworkPeerAddress(host))
			if n, err := strconv.Atoi(port); err == nil {
				span.SetAttributes(semconv.NetworkPeerPort(n))
			}
		}
	}
	sw := statusWriters.Get().(*statusWriter)
	sw.ResponseWriter, sw.status = w, 0
	if ctx != r.Context() {
		r = r.WithContext(ctx)
	}
	h.mux.ServeHTTP(sw, r) // sets r.Pattern to the matched route
	status := sw.status
	sw.ResponseWriter = nil // the handler is done with it: recycle
	statusWriters.Put(sw)
	if status == 0 {
		status = http.StatusOK
	}
	route := r.Pattern
	if _, path, ok := strings.Cut(route, " "); ok {
		route = path // a pattern that names its method ("GET /x")
	}
	if route == "/" {
		route = "" // the catch-all 404: no route matched
	}
	t.duration.Record(ctx, time.Since(start).Seconds(), t.recordOpts(method, route, status)...)
	if recording {
		if route != "" {
			span.SetName(method + " " + route)
			span.SetAttributes(semconv.HTTPRoute(route))
		}
		span.SetAttributes(semconv.HTTPResponseStatusCode(status))
		if status >= 500 {
			span.SetStatus(codes.Error, "")
			span.SetAttributes(semconv.ErrorTypeKey.String(strconv.Itoa(status)))
		}
	}
	span.End()
}

func (t *httpTelemetry) recordOpts(method, route string, status int) []metric.RecordOption {
	k := httpKey{method, route, status}
	t.mu.RLock()
	o, ok := t.opts[k]
	t.mu.RUnlock()
	if ok {
		return o
	}
	kvs := []attribute.KeyValue{semconv.HTTPRequestMethodKey.String(method), semconv.HTTPResponseStatusCode(status)}
	if route != "" {
		kvs = append(kvs, semconv.HTTPRoute(route))
	}
	o = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(kvs...))}
	t.mu.Lock()
	if len(t.opts) < maxCachedAttrSets {
		t.opts[k] = o
	}
	t.mu.Unlock()
	return o
}

// httpMethod is the method as the semantic conventions record it: a
// client-chosen method is "_OTHER", so it cannot grow the series.
func httpMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

func protocolVersion(r *http.Request) string {
	switch {
	case r.ProtoMajor == 1 && r.ProtoMinor == 1:
		return "1.1"
	case r.ProtoMajor == 2:
		return "2"
	case r.ProtoMajor == 1 && r.ProtoMinor == 0:
		return "1.0"
	}
	return strconv.Itoa(r.ProtoMajor) + "." + strconv.Itoa(r.ProtoMinor)
}

// statusWriter records the status code a handler writes. Unwrap lets
// http.ResponseController reach the underlying writer (flush, deadlines).
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
