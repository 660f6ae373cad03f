// Package otlpsink is a real OTLP receiver (gRPC and HTTP) for telemetry
// tests. It is its own module so that its gRPC and OTLP protobuf
// dependencies stay out of the SDK core's go.mod.
package otlpsink

import (
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // accept gzip-compressed OTLP/gRPC exports
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// OTLPSink is a real OpenTelemetry Protocol receiver for tests: an OTLP/gRPC
// server and an OTLP/HTTP server implementing the collector's trace,
// metrics and logs services from go.opentelemetry.io/proto/otlp. OTLP/HTTP
// accepts binary protobuf (application/x-protobuf, the Go SDK's encoding),
// optionally gzip-compressed; OTLP/JSON, whose hex-encoded ids differ from
// the protobuf JSON mapping, is refused with 415. The sink stores every
// export it receives, so that tests assert what an application really sent
// over the wire: the bytes an OpenTelemetry Collector would get.
//
// Point an application at it with the standard environment:
//
//	sink := otlpsink.StartOTLPSink(t)
//	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.GRPCEndpoint())
//	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc") // or HTTPEndpoint() with "http/protobuf"
//
// It is safe for concurrent use.
type OTLPSink struct {
	grpcAddr string
	httpAddr string

	mu       sync.Mutex
	spans    []*tracepb.ResourceSpans
	metrics  []*metricspb.ResourceMetrics
	logs     []*logspb.ResourceLogs
	requests map[string]int // "grpc traces", "http metrics"...
	notify   chan struct{}  // closed and replaced on every export
}

// StartOTLPSink starts a sink listening on two free loopback ports and
// stops it when the test ends.
func StartOTLPSink(tb testing.TB) *OTLPSink {
	tb.Helper()
	s := &OTLPSink{requests: map[string]int{}, notify: make(chan struct{})}

	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("otlp sink: %v", err)
	}
	gs := grpc.NewServer()
	coltrace.RegisterTraceServiceServer(gs, traceService{s: s})
	colmetrics.RegisterMetricsServiceServer(gs, metricsService{s: s})
	collogs.RegisterLogsServiceServer(gs, logsService{s: s})
	go func() { _ = gs.Serve(gl) }()
	s.grpcAddr = gl.Addr().String()

	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		gs.Stop()
		tb.Fatalf("otlp sink: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", s.httpExport("traces", func() proto.Message { return &coltrace.ExportTraceServiceRequest{} },
		func(m proto.Message) proto.Message {
			s.addSpans("http", m.(*coltrace.ExportTraceServiceRequest))
			return &coltrace.ExportTraceServiceResponse{}
		}))
	mux.HandleFunc("POST /v1/metrics", s.httpExport("metrics", func() proto.Message { return &colmetrics.ExportMetricsServiceRequest{} },
		func(m proto.Message) proto.Message {
			s.addMetrics("http", m.(*colmetrics.ExportMetricsServiceRequest))
			return &colmetrics.ExportMetricsServiceResponse{}
		}))
	mux.HandleFunc("POST /v1/logs", s.httpExport("logs", func() proto.Message { return &collogs.ExportLogsServiceRequest{} },
		func(m proto.Message) proto.Message {
			s.addLogs("http", m.(*collogs.ExportLogsServiceRequest))
			return &collogs.ExportLogsServiceResponse{}
		}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(hl) }()
	s.httpAddr = hl.Addr().String()

	tb.Cleanup(func() {
		gs.Stop()
		_ = hs.Close()
	})
	return s
}

// GRPCEndpoint is the OTLP/gRPC endpoint, "http://127.0.0.1:<port>", for
// OTEL_EXPORTER_OTLP_ENDPOINT with OTEL_EXPORTER_OTLP_PROTOCOL=grpc.
func (s *OTLPSink) GRPCEndpoint() string { return "http://" + s.grpcAddr }

// HTTPEndpoint is the OTLP/HTTP base URL, "http://127.0.0.1:<port>", for
// OTEL_EXPORTER_OTLP_ENDPOINT with OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
// (exporters append /v1/traces, /v1/metrics and /v1/logs).
func (s *OTLPSink) HTTPEndpoint() string { return "http://" + s.httpAddr }

// Requests returns how many export requests arrived, keyed by transport and
// signal: "grpc traces", "grpc metrics", "grpc logs", "http traces"...
func (s *OTLPSink) Requests() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.requests))
	for k, v := range s.requests {
		out[k] = v
	}
	return out
}

// Wait blocks until cond returns true, re-evaluating it after every export
// received, or until timeout; it reports cond's last result.
func (s *OTLPSink) Wait(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ch := s.notify
		s.mu.Unlock()
		if cond() {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return cond()
		}
	}
}

// SinkSpan is a received span, flattened for assertions.
type SinkSpan struct {
	TraceID, SpanID, ParentSpanID string // lower-case hex; ParentSpanID is "" for a root
	Name                          string
	// Kind is "internal", "server", "client", "producer" or "consumer".
	Kind string
	// Attrs are the span's attributes, values rendered as strings.
	Attrs map[string]string
	// Resource holds the resource attributes (service.name...).
	Resource map[string]string
	// Scope is the instrumentation scope name.
	Scope string
	// StatusCode is "unset", "ok" or "error"; StatusMessage its description.
	StatusCode, StatusMessage string
	// Links are the trace and span ids (hex) of the span's links.
	Links [][2]string
	// Events are the names of the span's events.
	Events     []string
	Start, End time.Time
}

// Spans returns every span received so far, in arrival order.
func (s *OTLPSink) Spans() []SinkSpan {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []SinkSpan
	for _, rs := range s.spans {
		res := attrMap(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				x := SinkSpan{
					TraceID:       hex.EncodeToString(sp.GetTraceId()),
					SpanID:        hex.EncodeToString(sp.GetSpanId()),
					ParentSpanID:  hex.EncodeToString(sp.GetParentSpanId()),
					Name:          sp.GetName(),
					Kind:          spanKind(sp.GetKind()),
					Attrs:         attrMap(sp.GetAttributes()),
					Resource:      res,
					Scope:         ss.GetScope().GetName(),
					StatusCode:    statusCode(sp.GetStatus().GetCode()),
					StatusMessage: sp.GetStatus().GetMessage(),
					Start:         time.Unix(0, int64(sp.GetStartTimeUnixNano())),
					End:           time.Unix(0, int64(sp.GetEndTimeUnixNano())),
				}
				for _, l := range sp.GetLinks() {
					x.Links = append(x.Links, [2]string{hex.EncodeToString(l.GetTraceId()), hex.EncodeToString(l.GetSpanId())})
				}
				for _, e := range sp.GetEvents() {
					x.Events = append(x.Events, e.GetName())
				}
				out = append(out, x)
			}
		}
	}
	return out
}

// SinkPoint is one received metric data point, flattened for assertions.
type SinkPoint struct {
	// Metric is the instrument name ("payrail.payment.operations"); Unit
	// its unit.
	Metric, Unit string
	// Type is "sum", "gauge", "histogram", "exponential_histogram" or
	// "summary".
	Type string
	// Monotonic is set for monotonic sums (counters).
	Monotonic bool
	// Attrs are the point's attributes; Resource the resource attributes.
	Attrs, Resource map[string]string
	// Scope is the instrumentation scope name.
	Scope string
	// Value is a sum's or gauge's value; Count and Sum a histogram's.
	Value float64
	Count uint64
	Sum   float64
	// Time is the point's timestamp.
	Time time.Time
}

// MetricPoints returns every metric data point received so far, in arrival
// order (a cumulative metric appears once per export).
func (s *OTLPSink) MetricPoints() []SinkPoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []SinkPoint
	for _, rm := range s.metrics {
		res := attrMap(rm.GetResource().GetAttributes())
		for _, sm := range rm.GetScopeMetrics() {
			scope := sm.GetScope().GetName()
			for _, m := range sm.GetMetrics() {
				base := SinkPoint{Metric: m.GetName(), Unit: m.GetUnit(), Resource: res, Scope: scope}
				switch d := m.GetData().(type) {
				case *metricspb.Metric_Sum:
					for _, p := range d.Sum.GetDataPoints() {
						x := base
						x.Type, x.Monotonic = "sum", d.Sum.GetIsMonotonic()
						x.Attrs, x.Value, x.Time = attrMap(p.GetAttributes()), numberValue(p), time.Unix(0, int64(p.GetTimeUnixNano()))
						out = append(out, x)
					}
				case *metricspb.Metric_Gauge:
					for _, p := range d.Gauge.GetDataPoints() {
						x := base
						x.Type = "gauge"
						x.Attrs, x.Value, x.Time = attrMap(p.GetAttributes()), numberValue(p), time.Unix(0, int64(p.GetTimeUnixNano()))
						out = append(out, x)
					}
				case *metricspb.Metric_Histogram:
					for _, p := range d.Histogram.GetDataPoints() {
						x := base
						x.Type = "histogram"
						x.Attrs, x.Count, x.Sum, x.Time = attrMap(p.GetAttributes()), p.GetCount(), p.GetSum(), time.Unix(0, int64(p.GetTimeUnixNano()))
						out = append(out, x)
					}
				case *metricspb.Metric_ExponentialHistogram:
					for _, p := range d.ExponentialHistogram.GetDataPoints() {
						x := base
						x.Type = "exponential_histogram"
						x.Attrs, x.Count, x.Sum, x.Time = attrMap(p.GetAttributes()), p.GetCount(), p.GetSum(), time.Unix(0, int64(p.GetTimeUnixNano()))
						out = append(out, x)
					}
				case *metricspb.Metric_Summary:
					for _, p := range d.Summary.GetDataPoints() {
						x := base
						x.Type = "summary"
						x.Attrs, x.Count, x.Sum, x.Time = attrMap(p.GetAttributes()), p.GetCount(), p.GetSum(), time.Unix(0, int64(p.GetTimeUnixNano()))
						out = append(out, x)
					}
				}
			}
		}
	}
	return out
}

// Find returns a description of every place where substr occurs in
// anything received — span names, attributes, events, links, resources,
// metric names and attributes, log bodies — searched in the protobuf JSON
// rendering of every export. Tests use it to prove that secrets never left
// the process.
func (s *OTLPSink) Find(substr string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	search := func(kind string, i int, m proto.Message) {
		b, err := protojson.Marshal(m)
		if err != nil {
			out = append(out, fmt.Sprintf("%s #%d: unrenderable: %v", kind, i, err))
			return
		}
		text := string(b)
		for off := 0; ; {
			j := strings.Index(text[off:], substr)
			if j < 0 {
				return
			}
			at := off + j
			out = append(out, fmt.Sprintf("%s #%d: …%s…", kind, i, text[max(0, at-80):min(len(text), at+len(substr)+40)]))
			off = at + len(substr)
		}
	}
	for i, m := range s.spans {
		search("traces", i, m)
	}
	for i, m := range s.metrics {
		search("metrics", i, m)
	}
	for i, m := range s.logs {
		search("logs", i, m)
	}
	return out
}

func (s *OTLPSink) record(key string, add func()) {
	s.mu.Lock()
	add()
	s.requests[key]++
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
}

func (s *OTLPSink) addSpans(transport string, r *coltrace.ExportTraceServiceRequest) {
	s.record(transport+" traces", func() { s.spans = append(s.spans, r.GetResourceSpans()...) })
}

func (s *OTLPSink) addMetrics(transport string, r *colmetrics.ExportMetricsServiceRequest) {
	s.record(transport+" metrics", func() { s.metrics = append(s.metrics, r.GetResourceMetrics()...) })
}

func (s *OTLPSink) addLogs(transport string, r *collogs.ExportLogsServiceRequest) {
	s.record(transport+" logs", func() {
		s.logs = append(s.logs, r.GetResourceLogs()...)
	})
}

// httpExport serves one OTLP/HTTP signal endpoint.
func (s *OTLPSink) httpExport(signal string, newReq func() proto.Message, handle func(proto.Message) proto.Message) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = http.MaxBytesReader(w, r.Body, 64<<20)
		switch r.Header.Get("Content-Encoding") {
		case "", "identity":
		case "gzip":
			zr, err := gzip.NewReader(body)
			if err != nil {
				http.Error(w, "bad gzip body: "+err.Error(), http.StatusBadRequest)
				return
			}
			defer zr.Close()
			body = zr
		default:
			http.Error(w, "unsupported Content-Encoding", http.StatusUnsupportedMediaType)
			return
		}
		b, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
		ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		req := newReq()
		switch ct {
		case "application/x-protobuf":
			err = proto.Unmarshal(b, req)
		default:
			http.Error(w, "unsupported Content-Type "+strconv.Quote(ct), http.StatusUnsupportedMediaType)
			return
		}
		if err != nil {
			http.Error(w, "decoding "+signal+" export: "+err.Error(), http.StatusBadRequest)
			return
		}
		out, err := proto.Marshal(handle(req))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", ct)
		_, _ = w.Write(out)
	}
}

type traceService struct {
	coltrace.UnimplementedTraceServiceServer
	s *OTLPSink
}

func (t traceService) Export(_ context.Context, r *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	t.s.addSpans("grpc", r)
	return &coltrace.ExportTraceServiceResponse{}, nil
}

type metricsService struct {
	colmetrics.UnimplementedMetricsServiceServer
	s *OTLPSink
}

func (m metricsService) Export(_ context.Context, r *colmetrics.ExportMetricsServiceRequest) (*colmetrics.ExportMetricsServiceResponse, error) {
	m.s.addMetrics("grpc", r)
	return &colmetrics.ExportMetricsServiceResponse{}, nil
}

type logsService struct {
	collogs.UnimplementedLogsServiceServer
	s *OTLPSink
}

func (l logsService) Export(_ context.Context, r *collogs.ExportLogsServiceRequest) (*collogs.ExportLogsServiceResponse, error) {
	l.s.addLogs("grpc", r)
	return &collogs.ExportLogsServiceResponse{}, nil
}

// Trace returns the spans of one trace, sorted by start time.
func Trace(spans []SinkSpan, traceID string) []SinkSpan {
	var out []SinkSpan
	for _, sp := range spans {
		if sp.TraceID == traceID {
			out = append(out, sp)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// IsAncestor reports whether the span ancestor is spanID's parent, or its
// parent's parent, and so on, within spans.
func IsAncestor(spans []SinkSpan, ancestor, spanID string) bool {
	parent := map[string]string{}
	for _, sp := range spans {
		parent[sp.SpanID] = sp.ParentSpanID
	}
	seen := map[string]bool{}
	for id := parent[spanID]; id != "" && !seen[id]; id = parent[id] {
		if id == ancestor {
			return true
		}
		seen[id] = true
	}
	return false
}

func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = anyString(kv.GetValue())
	}
	return m
}

func anyString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *commonpb.AnyValue_BytesValue:
		return base64.StdEncoding.EncodeToString(x.BytesValue)
	case *commonpb.AnyValue_ArrayValue:
		parts := make([]string, 0, len(x.ArrayValue.GetValues()))
		for _, e := range x.ArrayValue.GetValues() {
			parts = append(parts, anyString(e))
		}
		return "[" + strings.Join(parts, ",") + "]"
	case *commonpb.AnyValue_KvlistValue:
		parts := make([]string, 0, len(x.KvlistValue.GetValues()))
		for _, kv := range x.KvlistValue.GetValues() {
			parts = append(parts, kv.GetKey()+"="+anyString(kv.GetValue()))
		}
		return "{" + strings.Join(parts, ",") + "}"
	}
	return ""
}

func numberValue(p *metricspb.NumberDataPoint) float64 {
	switch v := p.GetValue().(type) {
	case *metricspb.NumberDataPoint_AsInt:
		return float64(v.AsInt)
	case *metricspb.NumberDataPoint_AsDouble:
		return v.AsDouble
	}
	return 0
}

func spanKind(k tracepb.Span_SpanKind) string {
	switch k {
	case tracepb.Span_SPAN_KIND_SERVER:
		return "server"
	case tracepb.Span_SPAN_KIND_CLIENT:
		return "client"
	case tracepb.Span_SPAN_KIND_PRODUCER:
		return "producer"
	case tracepb.Span_SPAN_KIND_CONSUMER:
		return "consumer"
	case tracepb.Span_SPAN_KIND_INTERNAL:
		return "internal"
	}
	return "unspecified"
}

func statusCode(c tracepb.Status_StatusCode) string {
	switch c {
	case tracepb.Status_STATUS_CODE_OK:
		return "ok"
	case tracepb.Status_STATUS_CODE_ERROR:
		return "error"
	}
	return "unset"
}
