package otlpsink_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"net/http"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/payrail/payrail/internal/testkit/otlpsink"
)

// TestOTLPSinkGRPC exports with the real OTLP/gRPC exporters (gzip
// compressed) and reads the result back from the sink.
func TestOTLPSinkGRPC(t *testing.T) {
	sink := otlpsink.StartOTLPSink(t)
	ctx := context.Background()
	addr := sink.GRPCEndpoint()[len("http://"):]
	te, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(addr), otlptracegrpc.WithInsecure(), otlptracegrpc.WithCompressor("gzip"))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(te))
	tr := tp.Tracer("sink-test")
	pctx, parent := tr.Start(ctx, "parent", trace.WithSpanKind(trace.SpanKindServer))
	cctx, child := tr.Start(pctx, "child", trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attribute.Int("n", 7)))
	_, grandchild := tr.Start(cctx, "grandchild", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(trace.Link{SpanContext: parent.SpanContext()}))
	grandchild.AddEvent("settled")
	grandchild.End()
	child.End()
	parent.End()

	me, err := otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(addr), otlpmetricgrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewPeriodicReader(me)))
	c, _ := mp.Meter("sink-test").Int64Counter("payrail.test.count")
	c.Add(ctx, 5)
	g, _ := mp.Meter("sink-test").Float64Gauge("payrail.test.gauge")
	g.Record(ctx, 1.5)
	if err := mp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	if !sink.Wait(5*time.Second, func() bool { return len(sink.Spans()) == 3 }) {
		t.Fatalf("spans = %d, want 3", len(sink.Spans()))
	}
	spans := sink.Spans()
	byName := map[string]otlpsink.SinkSpan{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	p, c1, gc := byName["parent"], byName["child"], byName["grandchild"]
	if p.Kind != "server" || c1.Kind != "producer" || gc.Kind != "consumer" || c1.Attrs["n"] != "7" || p.Scope != "sink-test" {
		t.Errorf("spans = %+v", spans)
	}
	if !otlpsink.IsAncestor(spans, p.SpanID, gc.SpanID) || otlpsink.IsAncestor(spans, gc.SpanID, p.SpanID) || p.ParentSpanID != "" {
		t.Error("IsAncestor does not follow parent links")
	}
	if len(gc.Links) != 1 || gc.Links[0] != [2]string{p.TraceID, p.SpanID} || len(gc.Events) != 1 || gc.Events[0] != "settled" {
		t.Errorf("grandchild links %v events %v", gc.Links, gc.Events)
	}
	if tr := otlpsink.Trace(spans, p.TraceID); len(tr) != 3 || tr[0].Name != "parent" {
		t.Errorf("Trace = %+v", tr)
	}
	var count, gauge bool
	for _, pt := range sink.MetricPoints() {
		count = count || pt.Metric == "payrail.test.count" && pt.Type == "sum" && pt.Monotonic && pt.Value == 5
		gauge = gauge || pt.Metric == "payrail.test.gauge" && pt.Type == "gauge" && pt.Value == 1.5
	}
	if !count || !gauge {
		t.Errorf("metric points = %+v", sink.MetricPoints())
	}
	if r := sink.Requests(); r["grpc traces"] == 0 || r["grpc metrics"] == 0 {
		t.Errorf("requests = %v", r)
	}
	if f := sink.Find("grandchild"); len(f) != 1 {
		t.Errorf("Find(grandchild) = %q, want one hit", f)
	}
	if f := sink.Find("not-sent-anywhere"); len(f) != 0 {
		t.Errorf("Find found what was never sent: %q", f)
	}
}

// TestOTLPSinkHTTPGzip posts a gzip-compressed OTLP/HTTP protobuf export,
// as exporters configured with OTEL_EXPORTER_OTLP_COMPRESSION=gzip send it,
// and checks the errors for unusable requests.
func TestOTLPSinkHTTPGzip(t *testing.T) {
	sink := otlpsink.StartOTLPSink(t)
	tid, _ := hex.DecodeString("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := hex.DecodeString("00f067aa0ba902b7")
	str := func(s string) *commonpb.AnyValue {
		return &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: s}}
	}
	export := &coltrace.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{{Key: "service.name", Value: str("gz-svc")}}},
		ScopeSpans: []*tracepb.ScopeSpans{{
			Scope: &commonpb.InstrumentationScope{Name: "gz"},
			Spans: []*tracepb.Span{{
				TraceId: tid, SpanId: sid, Name: "GET /x", Kind: tracepb.Span_SPAN_KIND_SERVER,
				StartTimeUnixNano: 1, EndTimeUnixNano: 2,
				Status: &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR, Message: "boom"},
				Attributes: []*commonpb.KeyValue{
					{Key: "http.response.status_code", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: 500}}},
					{Key: "ok", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_BoolValue{BoolValue: false}}},
					{Key: "list", Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_ArrayValue{ArrayValue: &commonpb.ArrayValue{
						Values: []*commonpb.AnyValue{str("a"), {Value: &commonpb.AnyValue_DoubleValue{DoubleValue: 1.5}}}}}}},
				},
			}},
		}},
	}}}
	raw, err := proto.Marshal(export)
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(raw)
	_ = zw.Close()
	req, _ := http.NewRequest(http.MethodPost, sink.HTTPEndpoint()+"/v1/traces", &gz)
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-protobuf" {
		t.Fatalf("status %d content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	spans := sink.Spans()
	if len(spans) != 1 {
		t.Fatalf("spans = %+v", spans)
	}
	s := spans[0]
	if s.Name != "GET /x" || s.Kind != "server" || s.StatusCode != "error" || s.StatusMessage != "boom" ||
		s.Attrs["http.response.status_code"] != "500" || s.Attrs["ok"] != "false" || s.Attrs["list"] != "[a,1.5]" ||
		s.Resource["service.name"] != "gz-svc" || s.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || s.SpanID != "00f067aa0ba902b7" {
		t.Errorf("span = %+v", s)
	}
	if sink.Requests()["http traces"] != 1 {
		t.Errorf("requests = %v", sink.Requests())
	}

	for name, r := range map[string]struct{ ct, ce, body string }{
		"unsupported content type": {"text/plain", "", "x"},
		"OTLP/JSON":                {"application/json", "", "{}"},
		"bad protobuf":             {"application/x-protobuf", "", "\xff\xff\xff"},
		"bad gzip":                 {"application/x-protobuf", "gzip", "not gzip"},
		"unknown encoding":         {"application/x-protobuf", "br", ""},
	} {
		req, _ := http.NewRequest(http.MethodPost, sink.HTTPEndpoint()+"/v1/metrics", bytes.NewBufferString(r.body))
		req.Header.Set("Content-Type", r.ct)
		if r.ce != "" {
			req.Header.Set("Content-Encoding", r.ce)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("%s: status %d, want an error", name, resp.StatusCode)
		}
	}
	if n := len(sink.MetricPoints()); n != 0 {
		t.Errorf("rejected requests stored %d points", n)
	}
}
