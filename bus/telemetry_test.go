package bus_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/payrail/payrail/bus"
	_ "github.com/payrail/payrail/bus/inmemory"
)

var telSeq atomic.Int64

// telRig is a tracer and meter provider recording in memory, and options
// passing them to topics and subscriptions.
type telRig struct {
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
	opts   []bus.Option
	topic  string
}

func newTelRig(t *testing.T) *telRig {
	r := &telRig{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader(),
		topic: fmt.Sprintf("tel-%s-%d", t.Name(), telSeq.Add(1))}
	r.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(r.spans))
	r.opts = []bus.Option{
		bus.WithTracerProvider(r.tp),
		bus.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader))),
	}
	return r
}

func (r *telRig) open(t *testing.T, extra ...bus.SubscriptionOption) (*bus.Topic, *bus.Subscription) {
	t.Helper()
	ctx := context.Background()
	topts := make([]bus.TopicOption, 0, len(r.opts))
	for _, o := range r.opts {
		topts = append(topts, o)
	}
	topic, err := bus.OpenTopic(ctx, "inmemory://"+r.topic, topts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = topic.Close() })
	sopts := make([]bus.SubscriptionOption, 0, len(r.opts)+len(extra))
	for _, o := range r.opts {
		sopts = append(sopts, o)
	}
	sub, err := bus.OpenSubscription(ctx, "inmemory://"+r.topic+"?ack_deadline=10s", append(sopts, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	return topic, sub
}

// receive runs sub.Receive with h until done is closed.
func receive(t *testing.T, sub *bus.Subscription, h bus.Handler) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- sub.Receive(ctx, h) }()
	return func() {
		cancel()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Receive: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Receive did not return")
		}
	}
}

func spanAttrs(s sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

// TestTraceContextThroughBus: the handler runs in a process span whose
// parent is the publish span, itself a child of the publisher's span, and
// the message carries the W3C trace context in its attributes.
func TestTraceContextThroughBus(t *testing.T) {
	rig := newTelRig(t)
	topic, sub := rig.open(t)
	ctx, root := rig.tp.Tracer("test").Start(context.Background(), "POST /payments", trace.WithSpanKind(trace.SpanKindServer))
	attrs := map[string]string{"payrail.command": "authorize"}
	if err := topic.Publish(ctx, &bus.Message{ID: "m1", Key: "k", Body: []byte("hi"), Attributes: attrs}); err != nil {
		t.Fatal(err)
	}
	root.End()
	if len(attrs) != 1 {
		t.Errorf("Publish modified the caller's attribute map: %v", attrs)
	}

	type got struct {
		sc    trace.SpanContext
		attrs map[string]string
	}
	ch := make(chan got, 1)
	stop := receive(t, sub, func(ctx context.Context, m *bus.Message) error {
		ch <- got{trace.SpanContextFromContext(ctx), m.Attributes}
		return nil
	})
	var g got
	select {
	case g = <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("message not delivered")
	}
	stop()

	if g.attrs["traceparent"] == "" || g.attrs["payrail.command"] != "authorize" {
		t.Errorf("delivered attributes %v: want traceparent and the original ones", g.attrs)
	}
	var publish, process, recv sdktrace.ReadOnlySpan
	for _, s := range rig.spans.Ended() {
		switch s.Name() {
		case "publish " + rig.topic:
			publish = s
		case "process " + rig.topic:
			process = s
		case "receive " + rig.topic:
			recv = s
		}
	}
	if publish == nil || process == nil || recv == nil {
		t.Fatalf("spans: publish %v process %v receive %v", publish != nil, process != nil, recv != nil)
	}
	if publish.SpanKind() != trace.SpanKindProducer || process.SpanKind() != trace.SpanKindConsumer || recv.SpanKind() != trace.SpanKindClient {
		t.Errorf("kinds: publish %v process %v receive %v", publish.SpanKind(), process.SpanKind(), recv.SpanKind())
	}
	if publish.Parent().SpanID() != root.SpanContext().SpanID() {
		t.Error("publish span is not a child of the publisher's span")
	}
	if process.Parent().SpanID() != publish.SpanContext().SpanID() || process.SpanContext().TraceID() != root.SpanContext().TraceID() {
		t.Error("process span is not a child of the publish span in the publisher's trace")
	}
	if l := process.Links(); len(l) != 1 || l[0].SpanContext.SpanID() != publish.SpanContext().SpanID() {
		t.Errorf("process span links %v, want the publish span (its creation context)", l)
	}
	if g.sc.SpanID() != process.SpanContext().SpanID() {
		t.Error("the handler's context does not carry the process span")
	}
	if l := recv.Links(); len(l) != 1 || l[0].SpanContext.SpanID() != publish.SpanContext().SpanID() {
		t.Errorf("receive span links %v, want the publish span", l)
	}
	pa, pr := spanAttrs(publish), spanAttrs(process)
	if pa["messaging.system"] != "inmemory" || pa["messaging.destination.name"] != rig.topic || pa["messaging.message.id"] != "m1" ||
		pa["messaging.operation.type"] != "send" {
		t.Errorf("publish attributes %v", pa)
	}
	if pr["messaging.destination.subscription.name"] != rig.topic || pr["payrail.bus.settlement"] != "ack" ||
		pr["payrail.bus.delivery_attempt"] != "1" || pr["messaging.operation.type"] != "process" {
		t.Errorf("process attributes %v", pr)
	}
}

// TestCallerTraceContextKept: a message that already carries a
// traceparent keeps it, and the publish span continues that trace.
func TestCallerTraceContextKept(t *testing.T) {
	rig := newTelRig(t)
	topic, sub := rig.open(t)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if err := topic.Publish(context.Background(), &bus.Message{Body: []byte("x"), Attributes: map[string]string{"traceparent": tp}}); err != nil {
		t.Fatal(err)
	}
	ch := make(chan string, 1)
	stop := receive(t, sub, func(_ context.Context, m *bus.Message) error { ch <- m.Attributes["traceparent"]; return nil })
	select {
	case got := <-ch:
		if got != tp {
			t.Errorf("traceparent = %q, want the caller's %q", got, tp)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not delivered")
	}
	stop()
	for _, s := range rig.spans.Ended() {
		if s.Name() == "publish "+rig.topic && s.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
			t.Errorf("publish span in trace %s, want the message's", s.SpanContext().TraceID())
		}
	}
}

// TestNoSDKNoTraceContext: without an SDK and without an incoming trace,
// nothing is injected and attributes travel unchanged.
func TestNoSDKNoTraceContext(t *testing.T) {
	ctx := context.Background()
	name := fmt.Sprintf("tel-nosdk-%d", telSeq.Add(1))
	topic, err := bus.OpenTopic(ctx, "inmemory://"+name)
	if err != nil {
		t.Fatal(err)
	}
	defer topic.Close()
	sub, err := bus.OpenSubscription(ctx, "inmemory://"+name)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := topic.Publish(ctx, &bus.Message{Body: []byte("x"), Attributes: map[string]string{"a": "b"}}); err != nil {
		t.Fatal(err)
	}
	ch := make(chan map[string]string, 1)
	stop := receive(t, sub, func(_ context.Context, m *bus.Message) error { ch <- m.Attributes; return nil })
	select {
	case got := <-ch:
		if len(got) != 1 || got["a"] != "b" {
			t.Errorf("attributes = %v, want only a=b", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not delivered")
	}
	stop()
}

// collect gathers the rig's metrics: name -> encoded attributes -> value
// (sums and gauges) or count (histograms).
func (r *telRig) collect(t *testing.T) map[string]map[string]float64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]float64{}
	enc := attribute.DefaultEncoder()
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			pts := map[string]float64{}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					pts[p.Attributes.Encoded(enc)] = float64(p.Value)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					pts[p.Attributes.Encoded(enc)] = float64(p.Value)
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					pts[p.Attributes.Encoded(enc)] = p.Value
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					pts[p.Attributes.Encoded(enc)] = float64(p.Count)
				}
			}
			out[m.Name] = pts
		}
	}
	return out
}

// TestBusMetrics drives publishes, an ack, a retry, a permanent failure and
// a final-attempt failure, then checks every counter, histogram and gauge.
func TestBusMetrics(t *testing.T) {
	rig := newTelRig(t)
	topic, sub := rig.open(t, bus.WithMaxAttempts(2), bus.WithRetryBackoff(func(int) time.Duration { return time.Millisecond }))
	ctx := context.Background()
	msgs := []*bus.Message{
		{ID: "ok", Body: []byte("ok")},
		{ID: "retry", Body: []byte("retry")},     // fails once, then acked
		{ID: "poison", Body: []byte("poison")},   // permanent: dead-lettered at once
		{ID: "failing", Body: []byte("failing")}, // fails twice: dead-lettered on the final attempt
	}
	if err := topic.PublishBatch(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	// The gauges read the queue before anything is consumed.
	if got := rig.collect(t)[bus.MetricBacklog]; got[sys(rig.topic, true)] != 4 {
		t.Errorf("backlog before receiving = %v, want 4", got)
	}

	var mu sync.Mutex
	seen := map[string]int{}
	done := make(chan struct{})
	var once sync.Once
	stop := receive(t, sub, func(_ context.Context, m *bus.Message) error {
		mu.Lock()
		defer mu.Unlock()
		seen[m.ID]++
		if seen["ok"] == 1 && seen["retry"] == 2 && seen["poison"] == 1 && seen["failing"] == 2 {
			defer once.Do(func() { close(done) })
		}
		switch {
		case m.ID == "retry" && seen[m.ID] == 1, m.ID == "failing":
			return errors.New("try later")
		case m.ID == "poison":
			return bus.Permanent(errors.New("cannot parse"))
		}
		return nil
	})
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("deliveries %v", seen)
	}
	stop() // waits for the last settlements

	m := rig.collect(t)
	subAttrs, topicAttrs := sys(rig.topic, true), sys(rig.topic, false)
	check := func(metric, attrs string, want float64) {
		t.Helper()
		parts := strings.Split(attrs, ",")
		sort.Strings(parts)
		attrs = strings.Join(parts, ",")
		if got := m[metric][attrs]; got != want {
			t.Errorf("%s{%s} = %v, want %v (all points: %v)", metric, attrs, got, want, m[metric])
		}
	}
	check(bus.MetricSentMessages, topicAttrs+",messaging.operation.name=publish,messaging.operation.type=send", 4)
	check(bus.MetricOperationDuration, topicAttrs+",messaging.operation.name=publish,messaging.operation.type=send", 1)
	check(bus.MetricConsumedMessages, subAttrs+",messaging.operation.name=receive,messaging.operation.type=receive", 6)
	check(bus.MetricOperationDuration, subAttrs+",messaging.operation.name=ack,messaging.operation.type=settle", 2)
	check(bus.MetricOperationDuration, subAttrs+",messaging.operation.name=nack,messaging.operation.type=settle", 2)
	check(bus.MetricOperationDuration, subAttrs+",messaging.operation.name=dead_letter,messaging.operation.type=settle", 2)
	check(bus.MetricProcessDuration, subAttrs+",messaging.operation.name=process", 2)
	check(bus.MetricProcessDuration, "error.type=_OTHER,"+subAttrs+",messaging.operation.name=process", 3)
	check(bus.MetricProcessDuration, "error.type=permanent,"+subAttrs+",messaging.operation.name=process", 1)
	check(bus.MetricDeliveryLag, subAttrs, 6)
	check(bus.MetricBacklog, subAttrs, 0)
	check(bus.MetricInFlight, subAttrs, 0)
	check(bus.MetricDeadLetters, subAttrs, 2)
	sorted := strings.Split(subAttrs, ",")
	sort.Strings(sorted)
	subKey := strings.Join(sorted, ",")
	if age, ok := m[bus.MetricOldestAge][subKey]; !ok || age != 0 {
		t.Errorf("%s = %v (observed: %t) with nothing waiting, want 0", bus.MetricOldestAge, age, ok)
	}

	n, err := sub.Redrive(ctx, 0)
	if err != nil || n != 2 {
		t.Fatalf("Redrive = %d, %v", n, err)
	}
	m = rig.collect(t)
	check(bus.MetricRedriven, subAttrs, 2)
	check(bus.MetricDeadLetters, subAttrs, 0)
	check(bus.MetricBacklog, subAttrs, 2)
	if age := m[bus.MetricOldestAge][subKey]; age <= 0 {
		t.Errorf("%s = %v with 2 redriven messages waiting, want a positive age", bus.MetricOldestAge, age)
	}

	// Failed handlers' process spans are errors, with the settlement.
	var errored int
	for _, s := range rig.spans.Ended() {
		if s.Name() == "process "+rig.topic && s.Status().Code.String() == "Error" {
			errored++
			if a := spanAttrs(s); a["payrail.bus.settlement"] != "nack" && a["payrail.bus.settlement"] != "dead_letter" {
				t.Errorf("failed process span settled %q", a["payrail.bus.settlement"])
			}
		}
	}
	if errored != 4 {
		t.Errorf("%d process spans with error status, want 4", errored)
	}

	// Closing the subscription stops its gauges.
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if got := rig.collect(t)[bus.MetricBacklog]; len(got) != 0 {
		t.Errorf("backlog observed after Close: %v", got)
	}
}

// TestWithNameAndRefusedPublish: WithName overrides the name taken from
// the URL, and a publish refused before reaching the broker (a cancelled
// context) is not counted as sent.
func TestWithNameAndRefusedPublish(t *testing.T) {
	rig := newTelRig(t)
	ctx := context.Background()
	topic, err := bus.OpenTopic(ctx, fmt.Sprintf("inmemory://tel-named-%d", telSeq.Add(1)), rig.opts[0], rig.opts[1], bus.WithName("orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer topic.Close()
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := topic.Publish(cctx, &bus.Message{Body: []byte("x")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish with a cancelled context: %v", err)
	}
	if err := topic.Publish(ctx, &bus.Message{Body: []byte("y")}); err != nil {
		t.Fatal(err)
	}
	m := rig.collect(t)
	if got := m[bus.MetricSentMessages]; len(got) != 1 || got["messaging.destination.name=orders,messaging.operation.name=publish,messaging.operation.type=send,messaging.system=inmemory"] != 1 {
		t.Errorf("sent = %v, want 1 for orders", got)
	}
}

func sys(name string, sub bool) string {
	if sub {
		return "messaging.destination.subscription.name=" + name + ",messaging.system=inmemory"
	}
	return "messaging.destination.name=" + name + ",messaging.system=inmemory"
}
