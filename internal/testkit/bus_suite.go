package testkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/payrail/payrail/bus"
)

type busSuite struct {
	h    BusHarness
	caps BusCapabilities
}

type busCase struct {
	name string
	need []string // capabilities the case needs, all of them
	run  func(s *busSuite, t *testing.T, ctx context.Context)
}

var busCases = []busCase{
	{"CapabilitiesDeclared", nil, (*busSuite).testCapabilitiesDeclared},
	{"RoundTrip", nil, (*busSuite).testRoundTrip},
	{"TraceContext", nil, (*busSuite).testTraceContext},
	{"CompetingConsumers", nil, (*busSuite).testCompetingConsumers},
	{"FanOut", []string{CapFanOut}, (*busSuite).testFanOut},
	{"AckRemoves", nil, (*busSuite).testAckRemoves},
	{"NackRedelivers", nil, (*busSuite).testNackRedelivers},
	{"NackDelay", []string{CapNackDelay}, (*busSuite).testNackDelay},
	{"AckDeadlineRedelivery", []string{CapAckDeadlineRedelivery}, (*busSuite).testAckDeadlineRedelivery},
	{"Extend", []string{CapExtend}, (*busSuite).testExtend},
	{"DeadLetter", []string{CapDeadLetter}, (*busSuite).testDeadLetter},
	{"DLQInspectRedrive", []string{CapDLQInspectRedrive}, (*busSuite).testDLQInspectRedrive},
	{"Ordering", []string{CapOrdering}, (*busSuite).testOrdering},
	{"Stats", []string{CapStats}, (*busSuite).testStats},
	{"Close", nil, (*busSuite).testClose},
	{"ShutdownHandsBack", []string{CapShutdownHandBack}, (*busSuite).testShutdownHandsBack},
	{"ShutdownCancelsHandlers", nil, (*busSuite).testShutdownCancelsHandlers},
	{"CancelUnblocksReceive", nil, (*busSuite).testCancelUnblocksReceive},
	{"MissingTopic", []string{CapMissingEntityError}, (*busSuite).testMissingTopic},
	{"MissingSubscription", []string{CapMissingEntityError}, (*busSuite).testMissingSubscription},
}

// RunBusConformance runs the bus conformance suite against the driver h
// connects to. Cases run as subtests of t: first the functional cases (in
// parallel unless BusCapabilities.Serial), then the throughput smoke test.
func RunBusConformance(t *testing.T, h BusHarness) {
	t.Helper()
	s := &busSuite{h: h, caps: h.Capabilities().withDefaults()}
	t.Run("Cases", func(t *testing.T) {
		for _, c := range busCases {
			t.Run(c.name, func(t *testing.T) {
				for _, n := range c.need {
					if !s.caps.has(n) {
						t.Skip(s.skipReason(n))
					}
				}
				if !s.caps.Serial {
					t.Parallel()
				}
				ctx, cancel := context.WithTimeout(context.Background(), s.caps.CaseTimeout)
				t.Cleanup(cancel)
				c.run(s, t, ctx)
			})
		}
	})
	t.Run("Throughput", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*s.caps.CaseTimeout)
		t.Cleanup(cancel)
		s.testThroughput(t, ctx)
	})
}

func (s *busSuite) skipReason(name string) string {
	msg := fmt.Sprintf("capability %s not declared by the driver's harness", name)
	if note := s.caps.Notes[name]; note != "" {
		msg += ": " + note
	}
	return msg
}

// testCapabilitiesDeclared checks that the subscription's own capabilities
// agree with the harness: every capability the driver advertises to package
// bus must be declared (and so tested), and every declared one that package
// bus gates on must be advertised.
func (s *busSuite) testCapabilitiesDeclared(t *testing.T, ctx context.Context) {
	p := s.newPair(t, ctx, PairConfig{AckDeadline: 2 * time.Second})
	sub := busOpenSub(t, ctx, p.OpenSubscription)
	dc := sub.Capabilities()
	check := func(name string, declared, advertised bool) {
		switch {
		case advertised && !declared:
			t.Errorf("the subscription advertises %s but the harness does not declare it, so the suite would not test it", name)
		case declared && !advertised:
			t.Errorf("the harness declares %s but the subscription's Capabilities do not advertise it, so package bus will not use it", name)
		}
	}
	check(CapFanOut, s.caps.FanOut, dc.FanOut)
	check(CapNackDelay, s.caps.NackDelay, dc.NackDelay)
	check(CapExtend, s.caps.Extend, dc.Extend)
	check(CapDLQInspectRedrive+" (DeadLetterQueue)", s.caps.DLQInspectRedrive, dc.DeadLetterQueue)
	check(CapOrdering, s.caps.Ordering, dc.Ordering)
	check(CapStats, s.caps.Stats, dc.Stats)
	if (s.caps.AckDeadlineRedelivery || s.caps.Extend) && dc.AckDeadline <= 0 {
		t.Errorf("AckDeadlineRedelivery or Extend declared but Capabilities().AckDeadline = %v", dc.AckDeadline)
	}
	if s.caps.DLQInspectRedrive && !s.caps.DeadLetter {
		t.Errorf("DLQInspectRedrive declared without DeadLetter")
	}
}

// busNonUTF8 is a body that is not valid UTF-8 and holds every byte value.
func busNonUTF8() []byte {
	b := []byte{0xff, 0xfe, 0x00, 0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1, '\n', '\r', 0x00, 0x80}
	for i := range 256 {
		b = append(b, byte(i))
	}
	return b
}

func busBody(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{'p', 'a', 'y', 'r', 'a', 'i', 'l'}).Read(b)
	return b
}

func (s *busSuite) testRoundTrip(t *testing.T, ctx context.Context) {
	p := s.newPair(t, ctx, PairConfig{})
	sub := busOpenSub(t, ctx, p.OpenSubscription, bus.WithConcurrency(4))

	run := bus.NewID()[:8]
	attrs := map[string]string{
		"tenant":        "acme",
		"unicode":       "ünïcødé ✓ 日本語",
		"empty":         "",
		"json":          `{"a":[1,2],"b":"c"}`,
		"dashed-name_1": "x.y/z",
	}
	small := &bus.Message{ID: "rt-small-" + run, Key: "key-1", Body: busNonUTF8(), Attributes: maps.Clone(attrs)}
	large := &bus.Message{ID: "rt-large-" + run, Key: "key-2", Body: busBody(s.caps.MaxBodyBytes), Attributes: map[string]string{"size": strconv.Itoa(s.caps.MaxBodyBytes)}}
	bare := &bus.Message{}
	want := map[string]*bus.Message{}
	before := time.Now()
	for _, m := range []*bus.Message{small, large, bare} {
		orig := &bus.Message{ID: m.ID, Key: m.Key, Body: bytes.Clone(m.Body), Attributes: maps.Clone(m.Attributes)}
		if err := p.Topic.Publish(ctx, m); err != nil {
			t.Fatalf("Publish(%q, %d-byte body): %v", m.ID, len(m.Body), err)
		}
		orig.ID = m.ID
		want[m.ID] = orig
		// Publish has returned: the broker holds its own copy, so the
		// publisher may reuse its buffers.
		for i := range m.Body {
			m.Body[i] = 'X'
		}
		if m.Attributes != nil {
			m.Attributes["tenant"] = "mallory"
		}
	}
	after := time.Now()
	if bare.ID == "" {
		t.Fatal("Publish did not assign an ID to a message without one")
	}

	rec := newBusRecorder(16, nil)
	busStartReceive(t, sub, rec.handler(0))
	ids := map[string]bool{}
	for id := range want {
		ids[id] = true
	}
	for _, d := range busCollectIDs(t, ctx, rec.ch, ids) {
		w := want[d.ID]
		if d.Key != w.Key {
			t.Errorf("%s: Key = %q, want %q", d.ID, d.Key, w.Key)
		}
		if !bytes.Equal(d.Body, w.Body) {
			t.Errorf("%s: Body differs: got %d bytes (busPrefix %x), want %d bytes (busPrefix %x)", d.ID, len(d.Body), busPrefix(d.Body), len(w.Body), busPrefix(w.Body))
		}
		if !maps.Equal(d.Attrs, w.Attributes) {
			t.Errorf("%s: Attributes = %q, want %q", d.ID, d.Attrs, w.Attributes)
		}
		if d.Attempt != 1 {
			t.Errorf("%s: DeliveryAttempt = %d, want 1", d.ID, d.Attempt)
		}
		if !d.PublishTime.IsZero() && (d.PublishTime.Before(before.Add(-2*time.Second)) || d.PublishTime.After(after.Add(2*time.Second))) {
			t.Errorf("%s: PublishTime = %v, want within 2s of [%v, %v]", d.ID, d.PublishTime, before, after)
		}
	}
}

func busPrefix(b []byte) []byte { return b[:min(len(b), 16)] }

func (s *busSuite) testTraceContext(t *testing.T, ctx context.Context) {
	p := s.newPair(t, ctx, PairConfig{})
	sub := busOpenSub(t, ctx, p.OpenSubscription)

	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ts, _ := trace.ParseTraceState("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true})
	attrs := map[string]string{"kind": "traced"}
	prop := propagation.TraceContext{}
	prop.Inject(trace.ContextWithSpanContext(ctx, sc), propagation.MapCarrier(attrs))
	if attrs["traceparent"] == "" {
		t.Fatal("propagator injected no traceparent")
	}
	m := &bus.Message{Key: "trace", Body: []byte("traced"), Attributes: maps.Clone(attrs)}
	if err := p.Topic.Publish(ctx, m); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	rec := newBusRecorder(4, nil)
	busStartReceive(t, sub, rec.handler(0))
	d := busNext(t, ctx, rec.ch, "the traced message")
	if d.Attrs["traceparent"] != attrs["traceparent"] || d.Attrs["tracestate"] != attrs["tracestate"] {
		t.Fatalf("trace attributes = traceparent %q tracestate %q, want %q %q",
			d.Attrs["traceparent"], d.Attrs["tracestate"], attrs["traceparent"], attrs["tracestate"])
	}
	got := trace.SpanContextFromContext(prop.Extract(context.Background(), propagation.MapCarrier(d.Attrs)))
	if got.TraceID() != tid || got.SpanID() != sid || !got.IsSampled() || got.TraceState().String() != ts.String() {
		t.Fatalf("extracted span context %v/%v sampled=%v state=%q, want %v/%v sampled state %q",
			got.TraceID(), got.SpanID(), got.IsSampled(), got.TraceState().String(), tid, sid, ts.String())
	}
}

// testCompetingConsumers runs two handles of one subscription: every
// message is acked successfully exactly once, and both handles take part.
func (s *busSuite) testCompetingConsumers(t *testing.T, ctx context.Context) {
	const n = 100
	p := s.newPair(t, ctx, PairConfig{})
	subs := []*bus.Subscription{
		busOpenSub(t, ctx, p.OpenSubscription, bus.WithConcurrency(4)),
		busOpenSub(t, ctx, p.OpenSubscription, bus.WithConcurrency(4)),
	}
	var (
		mu      sync.Mutex
		acks    = map[string]int{}
		handled [2]int
		seen    [2]atomic.Bool
		gate    = make(chan struct{})
		open    sync.Once
	)
	acked := make(chan string, 4*n)
	for i, sub := range subs {
		busStartReceive(t, sub, func(ctx context.Context, m *bus.Message) error {
			// Hold the first messages until both consumers have one (or
			// 10s passed), so that neither drains the topic alone. (On
			// brokers that rebalance, the held deliveries of a revoked
			// partition are released by the broker's drain timeout.)
			seen[i].Store(true)
			if seen[0].Load() && seen[1].Load() {
				open.Do(func() { close(gate) })
			}
			select {
			case <-gate:
			case <-time.After(10 * time.Second):
				open.Do(func() { close(gate) })
			}
			if err := m.Ack(ctx); err != nil {
				return nil // not acked: it may be redelivered; only successful acks count
			}
			mu.Lock()
			acks[m.ID]++
			handled[i]++
			mu.Unlock()
			acked <- m.ID
			return nil
		})
	}
	ms := make([]*bus.Message, n)
	want := map[string]bool{}
	for i := range ms {
		ms[i] = &bus.Message{Key: fmt.Sprintf("cc-%d", i), Body: []byte(strconv.Itoa(i))}
	}
	if err := p.Topic.PublishBatch(ctx, ms); err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
	for _, m := range ms {
		want[m.ID] = true
	}
	for len(want) > 0 {
		select {
		case id := <-acked:
			delete(want, id)
		case <-ctx.Done():
			t.Fatalf("timed out: %d of %d messages never acked", len(want), n)
		}
	}
	time.Sleep(time.Second) // let a wrongful redelivery surface
	mu.Lock()
	defer mu.Unlock()
	for id, c := range acks {
		if c != 1 {
			t.Errorf("message %s acked successfully %d times, want exactly once", id, c)
		}
	}
	if handled[0] == 0 || handled[1] == 0 {
		t.Errorf("consumers acked %d and %d messages; want both to take part", handled[0], handled[1])
	}
	t.Logf("consumers acked %d and %d messages", handled[0], handled[1])
}

func (s *busSuite) testFanOut(t *testing.T, ctx context.Context) {
	const n = 10
	p := s.newPair(t, ctx, PairConfig{FanOut: true})
	a := busOpenSub(t, ctx, p.OpenSubscription)
	b := busOpenSub(t, ctx, p.OpenSecondSubscription)
	ms := make([]*bus.Message, n)
	for i := range ms {
		ms[i] = &bus.Message{Key: fmt.Sprintf("fan-%d", i), Body: []byte{byte(i)}}
	}
	if err := p.Topic.PublishBatch(ctx, ms); err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
	want := map[string]bool{}
	for _, m := range ms {
		want[m.ID] = true
	}
	ra, rb := newBusRecorder(4*n, nil), newBusRecorder(4*n, nil)
	busStartReceive(t, a, ra.handler(0))
	busStartReceive(t, b, rb.handler(1))
	busCollectIDs(t, ctx, ra.ch, want)
	busCollectIDs(t, ctx, rb.ch, want)
}

// testAckRemoves acks a message, closes the subscription and opens it
// again: the acked message must not come back, a later one must.
func (s *busSuite) testAckRemoves(t *testing.T, ctx context.Context) {
	p := s.newPair(t, ctx, PairConfig{AckDeadline: time.Second})
	sub := busOpenSub(t, ctx, p.OpenSubscription)
	first := &bus.Message{Key: "ack", Body: []byte("first")}
	if err := p.Topic.Publish(ctx, first); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	ackErr := make(chan error, 4)
	rec := newBusRecorder(8, func(m *bus.Message) error {
		ackErr <- m.Ack(context.Background())
		return nil
	})
	stop := busStartReceive(t, sub, rec.handler(0))
	if d := busNext(t, ctx, rec.ch, "the first message"); d.ID != first.ID {
		t.Fatalf("received %v, want %s", d, first.ID)
	}
	if err := <-ackErr; err != nil {
		t.Fatalf("Ack: %v", err)
	}
	wait := time.Second
	if dl := sub.Capabilities().AckDeadline; s.caps.AckDeadlineRedelivery && dl > 0 {
		wait = dl + s.caps.NackDelayTolerance + time.Second
	}
	busQuiet(t, rec.ch, wait, "the acked message came back")
	if err := stop(); err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if err := sub.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	second := &bus.Message{Key: "ack", Body: []byte("second")}
	if err := p.Topic.Publish(ctx, second); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	again := busOpenSub(t, ctx, p.OpenSubscription)
	rec2 := newBusRecorder(8, nil)
	busStartReceive(t, again, rec2.handler(0))
	if d := busNext(t, ctx, rec2.ch, "the second message"); d.ID != second.ID {
		t.Fatalf("after reopening received %v, want only %s (the first was acked)", d, second.ID)
	}
	busQuiet(t, rec2.ch, time.Second, "only the second message was unacked")
}

func (s *busSuite) testNackRedelivers(t *testing.T, ctx context.Context) {
	p := s.newPair(t, ctx, PairConfig{})
	sub := busOpenSub(t, ctx, p.OpenSubscription)
	m := &bus.Message{Key: "nack", Body: []byte("nack me"), Attributes: map[string]string{"a": "1"}}
	if err := p.Topic.Publish(ctx, m); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	nackErr := make(chan error, 1)
	rec := newBusRecorder(8, func(m *bus.Message) error {
		if m.DeliveryAttempt == 1 {
			nackErr <- m.Nack(context.Background(), 0)
		}
		return nil
	})
	busStartReceive(t, sub, rec.handler(0))
	d1 := busNext(t, ctx, rec.ch, "the first delivery")
	if err := <-nackErr; err != nil {
		t.Fatalf("Nack: %v", err)
	}
	d2 := busNext(t, ctx, rec.ch, "the redelivery after Nack")
	if d1.Attempt != 1 || d2.Attempt != 2 {
		t.Fatalf("delivery attempts = %d, %d; want 1, 2", d1.Attempt, d2.Attempt)
	}
	if d2.ID != m.ID || d2.Key != m.Key || !bytes.Equal(d2.Body, m.Body) || !maps.Equal(d2.Attrs, m.Attributes) {
		t.Fatalf("redelivery %+v differs from the published message %+v", d2, m)
	}
	busQuiet(t, rec.ch, time.Second, "the redelivery was acked")
}

func (s *busSuite) testNackDelay(t *testing.T, ctx context.Context) {
	p := s.newPair(t, ctx, PairConfig{})
	sub := busOpenSub(t, ctx, p.OpenSubscription)
	tol := s.caps.NackDelayTolerance
	delay := max(time.Second, 4*tol)
	const sched = time.Second // scheduling allowance on a shared machine
	if err := p.Topic.Publish(ctx, &bus.Message{Key: "delay", Body: []byte("later")}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	nacked := make(chan time.Time, 1)
	nackErr := make(chan error, 1)
	rec := newBusRecorder(8, func(m *bus.Message) error {
		if m.DeliveryAttempt == 1 {
			at := time.Now()
			nackErr <- m.Nack(context.Background(), delay)
			nacked <- at
		}
		return nil
	})
	busStartReceive(t, sub, rec.handler(0))
	busNext(t, ctx, rec.ch, "the first delivery")
	if err := <-nackErr; err != nil {
		t.Fatalf("Nack(%v): %v", delay, err)
	}
	at := <-nacked
	d := busNext(t, ctx, rec.ch, "the delayed redelivery")
	got := d.At.Sub(at)
	if d.Attempt != 2 {
		t.Errorf("DeliveryAttempt = %d, want 2", d.Attempt)
	}
	if got < delay-tol || got > delay+tol+sched {
		t.Fatalf("redelivered %v after Nack(%v); want within [%v, %v]", got, delay, delay-tol, delay+tol+sched)
	}
	t.Logf("Nack(%v) redelivered after %v", delay, got)
}

func (s *busSuite) testAckDeadlineRedelivery(t *testing.T, ctx context.Context) {
	p := s.newPair(t, ctx, PairConfig{AckDeadline: time.Second})
	// Automatic extension off: the first delivery is held past its deadline.
	sub := busOpenSub(t, ctx, p.OpenSubscription, bus.WithConcurrency(2), bus.WithMaxExtension(time.Nanosecond))
	deadline := sub.Capabilities().AckDeadline
	if deadline <= 0 {
		t.Fatalf("Capabilities().AckDeadline = %v; AckDeadlineRedelivery needs a positive deadline", deadline)
	}
	tol := s.caps.NackDelayTolerance
	// No key: on ordered subscriptions package bus would queue the
	// redelivery behind the held delivery of the same key.
	if err := p.Topic.Publish(ctx, &bus.Message{Body: []byte("slow")}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	second := make(chan struct{})
	var once sync.Once
	ackErr := make(chan error, 1)
	rec := newBusRecorder(8, func(m *bus.Message) error {
		if m.DeliveryAttempt == 1 {
			busWaitReturn(second) // hold the first delivery past its deadline
			return nil            // its Ack fails or is ignored: the lease is gone
		}
		ackErr <- m.Ack(context.Background())
		once.Do(func() { close(second) })
		return nil
	})
	busStartReceive(t, sub, rec.handler(0))
	d1 := busNext(t, ctx, rec.ch, "the first delivery")
	d2 := busNext(t, ctx, rec.ch, "the redelivery after the ack deadline")
	if d1.Attempt != 1 || d2.Attempt != 2 || d2.ID != d1.ID {
		t.Fatalf("deliveries %v, %v; want the same message at attempts 1 and 2", d1, d2)
	}
	if gap := d2.At.Sub(d1.At); gap < deadline-tol {
		t.Fatalf("redelivered %v after the first delivery; the ack deadline is %v", gap, deadline)
	}
	if err := <-ackErr; err != nil {
		t.Fatalf("Ack of the redelivery: %v", err)
	}
	busQuiet(t, rec.ch, deadline+tol+time.Second, "the redelivery was acked")
}

func (s *busSuite) testExtend(t *testing.T, ctx context.Context) {
	p := s.newPair(t, ctx, PairConfig{AckDeadline: time.Second})
	sub := busOpenSub(t, ctx, p.OpenSubscription, bus.WithConcurrency(2))
	deadline := sub.Capabilities().AckDeadline
	if deadline <= 0 {
		t.Fatalf("Capabilities().AckDeadline = %v; Extend needs a positive deadline", deadline)
	}
	if err := p.Topic.Publish(ctx, &bus.Message{Key: "extend", Body: []byte("long")}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	extendErr, ackErr := make(chan error, 1), make(chan error, 1)
	rec := newBusRecorder(8, func(m *bus.Message) error {
		if m.DeliveryAttempt != 1 {
			return nil
		}
		extendErr <- m.Extend(context.Background(), 2*deadline)
		time.Sleep(3 * deadline) // well past the deadline: automatic extension keeps it
		ackErr <- m.Ack(context.Background())
		return nil
	})
	busStartReceive(t, sub, rec.handler(0))
	d := busNext(t, ctx, rec.ch, "the delivery")
	if d.Attempt != 1 {
		t.Fatalf("first delivery attempt %d", d.Attempt)
	}
	if err := <-extendErr; err != nil {
		t.Fatalf("Extend: %v", err)
	}
	select {
	case d := <-rec.ch:
		t.Fatalf("redelivered %v while its handler was running and extending", d)
	case err := <-ackErr:
		if err != nil {
			t.Fatalf("Ack after a handler of %v (ack deadline %v): %v", 3*deadline, deadline, err)
		}
	case <-ctx.Done():
		t.Fatal("timed out waiting for the long handler")
	}
	busQuiet(t, rec.ch, deadline+s.caps.NackDelayTolerance+time.Second, "the long handler acked it")
}

// deadLetters reads the pair's dead letters with the hook or the
// subscription.
func (s *busSuite) deadLetters(ctx context.Context, p BusPair, sub *bus.Subscription) ([]*bus.DeadLetter, error) {
	if p.DeadLetters != nil {
		return p.DeadLetters(ctx, 0)
	}
	return sub.DeadLetters(ctx, 0)
}

func (s *busSuite) testDeadLetter(t *testing.T, ctx context.Context) {
	const maxAttempts = 3
	p := s.newPair(t, ctx, PairConfig{})
	if !s.caps.DLQInspectRedrive && p.DeadLetters == nil {
		t.Fatal("DeadLetter declared without DLQInspectRedrive and without BusPair.DeadLetters: dead letters cannot be verified")
	}
	sub := busOpenSub(t, ctx, p.OpenSubscription, bus.WithMaxAttempts(maxAttempts), busFastRetry())
	attrs := map[string]string{"tenant": "acme", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	failing := &bus.Message{Key: "dlq-1", Body: busNonUTF8(), Attributes: maps.Clone(attrs)}
	poison := &bus.Message{Key: "dlq-2", Body: []byte("poison"), Attributes: map[string]string{"kind": "poison"}}
	if err := p.Topic.PublishBatch(ctx, []*bus.Message{failing, poison}); err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
	rec := newBusRecorder(32, func(m *bus.Message) error {
		if m.ID == poison.ID {
			return bus.Permanent(errors.New("testkit: permanent failure"))
		}
		return errBusBoom
	})
	busStartReceive(t, sub, rec.handler(0))
	attempts := map[string][]int{}
	for len(attempts[failing.ID]) < maxAttempts || len(attempts[poison.ID]) < 1 {
		d := busNext(t, ctx, rec.ch, fmt.Sprintf("deliveries (so far %v)", attempts))
		attempts[d.ID] = append(attempts[d.ID], d.Attempt)
	}
	var dls []*bus.DeadLetter
	busEventually(t, ctx, "both messages in the dead-letter queue", func() error {
		var err error
		if dls, err = s.deadLetters(ctx, p, sub); err != nil {
			return err
		}
		if len(dls) < 2 {
			return fmt.Errorf("%d dead letters", len(dls))
		}
		return nil
	})
	busQuiet(t, rec.ch, time.Second, "dead-lettered messages must not be delivered again")
	if got := attempts[failing.ID]; fmt.Sprint(got) != "[1 2 3]" {
		t.Errorf("failing message delivered at attempts %v, want [1 2 3]", got)
	}
	if got := attempts[poison.ID]; fmt.Sprint(got) != "[1]" {
		t.Errorf("permanently failing message delivered at attempts %v, want [1]", got)
	}
	if len(dls) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dls))
	}
	byID := map[string]*bus.DeadLetter{}
	for _, dl := range dls {
		byID[dl.Message.ID] = dl
	}
	for _, c := range []struct {
		m      *bus.Message
		reason string
	}{{failing, errBusBoom.Error()}, {poison, "testkit: permanent failure"}} {
		dl := byID[c.m.ID]
		if dl == nil {
			t.Errorf("message %s is not among the dead letters", c.m.ID)
			continue
		}
		if !strings.Contains(dl.Reason, c.reason) {
			t.Errorf("%s: dead-letter reason %q does not contain the handler's error %q", c.m.ID, dl.Reason, c.reason)
		}
		if dl.Message.Key != c.m.Key || !bytes.Equal(dl.Message.Body, c.m.Body) || !maps.Equal(dl.Message.Attributes, c.m.Attributes) {
			t.Errorf("%s: dead letter key %q body %x attrs %v; want the original %q %x %v",
				c.m.ID, dl.Message.Key, busPrefix(dl.Message.Body), dl.Message.Attributes, c.m.Key, busPrefix(c.m.Body), c.m.Attributes)
		}
	}
}

func (s *busSuite) testDLQInspectRedrive(t *testing.T, ctx context.Context) {
	p := s.newPair(t, ctx, PairConfig{})
	sub := busOpenSub(t, ctx, p.OpenSubscription, bus.WithConcurrency(4))
	ms := []*bus.Message{
		{Key: "redrive-1", Body: []byte("one"), Attributes: map[string]string{"n": "1"}},
		{Key: "redrive-2", Body: []byte("two"), Attributes: map[string]string{"n": "2"}},
	}
	if err := p.Topic.PublishBatch(ctx, ms); err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
	byID := map[string]*bus.Message{ms[0].ID: ms[0], ms[1].ID: ms[1]}
	var redriven atomic.Bool
	rec := newBusRecorder(32, func(m *bus.Message) error {
		if !redriven.Load() {
			return bus.Permanent(errors.New("testkit: to the DLQ"))
		}
		return nil
	})
	busStartReceive(t, sub, rec.handler(0))
	busCollectIDs(t, ctx, rec.ch, map[string]bool{ms[0].ID: true, ms[1].ID: true})

	busEventually(t, ctx, "two dead letters", func() error {
		dls, err := sub.DeadLetters(ctx, 0)
		if err != nil {
			return err
		}
		if len(dls) != 2 {
			return fmt.Errorf("%d dead letters", len(dls))
		}
		return nil
	})
	if s.caps.Stats {
		busEventually(t, ctx, "Stats.DeadLetters = 2", func() error { return busStatIs(ctx, sub, "DeadLetters", 2) })
	}
	// Peeking does not remove, and max bounds the result.
	for range 2 {
		dls, err := sub.DeadLetters(ctx, 0)
		if err != nil || len(dls) != 2 {
			t.Fatalf("DeadLetters(0) = %d, %v; want the same 2 again", len(dls), err)
		}
		for _, dl := range dls {
			m := byID[dl.Message.ID]
			if m == nil || !maps.Equal(dl.Message.Attributes, m.Attributes) || !bytes.Equal(dl.Message.Body, m.Body) || dl.Message.Key != m.Key {
				t.Fatalf("dead letter %+v does not match a published message", dl.Message)
			}
			if !strings.Contains(dl.Reason, "testkit: to the DLQ") {
				t.Errorf("reason %q", dl.Reason)
			}
		}
	}
	if dls, err := sub.DeadLetters(ctx, 1); err != nil || len(dls) != 1 {
		t.Fatalf("DeadLetters(1) = %d, %v; want 1", len(dls), err)
	}

	redriven.Store(true)
	n1, err := sub.Redrive(ctx, 1)
	if err != nil || n1 != 1 {
		t.Fatalf("Redrive(1) = %d, %v; want 1", n1, err)
	}
	n2, err := sub.Redrive(ctx, 0)
	if err != nil || n2 != 1 {
		t.Fatalf("Redrive(0) after Redrive(1) = %d, %v; want the remaining 1", n2, err)
	}
	for _, d := range busCollectIDs(t, ctx, rec.ch, map[string]bool{ms[0].ID: true, ms[1].ID: true}) {
		m := byID[d.ID]
		if d.Attempt != 1 {
			t.Errorf("redriven %s delivered at attempt %d, want 1", d.ID, d.Attempt)
		}
		if !maps.Equal(d.Attrs, m.Attributes) || !bytes.Equal(d.Body, m.Body) || d.Key != m.Key {
			t.Errorf("redriven %s = key %q body %q attrs %v; want %q %q %v", d.ID, d.Key, d.Body, d.Attrs, m.Key, m.Body, m.Attributes)
		}
	}
	busEventually(t, ctx, "an empty dead-letter queue after redrive", func() error {
		dls, err := sub.DeadLetters(ctx, 0)
		if err != nil {
			return err
		}
		if len(dls) != 0 {
			return fmt.Errorf("%d dead letters", len(dls))
		}
		return nil
	})
	if n, err := sub.Redrive(ctx, 0); err != nil || n != 0 {
		t.Fatalf("Redrive of an empty queue = %d, %v; want 0, nil", n, err)
	}
	busQuiet(t, rec.ch, time.Second, "redriven messages were acked")
}

func busStatIs(ctx context.Context, sub *bus.Subscription, field string, want int64) error {
	st, err := sub.Stats(ctx)
	if err != nil {
		return err
	}
	var got int64
	switch field {
	case "Backlog":
		got = st.Backlog
	case "InFlight":
		got = st.InFlight
	case "DeadLetters":
		got = st.DeadLetters
	}
	if got == -1 {
		return nil // the driver documents that it cannot read this field
	}
	if got != want {
		return fmt.Errorf("Stats = %+v, want %s = %d", st, field, want)
	}
	return nil
}

// testOrdering publishes interleaved keys and checks that each key's
// messages are handled one at a time, in order, also when one is nacked.
func (s *busSuite) testOrdering(t *testing.T, ctx context.Context) {
	const perKey = 8
	keys := []string{"ord-a", "ord-b", "ord-c"}
	p := s.newPair(t, ctx, PairConfig{})
	sub := busOpenSub(t, ctx, p.OpenSubscription, bus.WithConcurrency(8),
		bus.WithRetryBackoff(func(int) time.Duration { return 50 * time.Millisecond }))
	var ms []*bus.Message
	for i := range perKey {
		for _, k := range keys {
			ms = append(ms, &bus.Message{Key: k, Body: []byte(strconv.Itoa(i)), Attributes: map[string]string{"seq": strconv.Itoa(i)}})
		}
	}
	if err := p.Topic.PublishBatch(ctx, ms); err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
	var (
		mu        sync.Mutex
		active    = map[string]int{}
		overlap   []string
		delivered = map[string][]int{}
		handled   = map[string][]int{}
		failedA0  bool
		done      = make(chan struct{})
		remaining = len(ms)
	)
	busStartReceive(t, sub, func(ctx context.Context, m *bus.Message) error {
		seq, _ := strconv.Atoi(m.Attributes["seq"])
		mu.Lock()
		active[m.Key]++
		if active[m.Key] > 1 {
			overlap = append(overlap, fmt.Sprintf("%s#%d", m.Key, seq))
		}
		delivered[m.Key] = append(delivered[m.Key], seq)
		fail := m.Key == keys[0] && seq == 0 && !failedA0
		failedA0 = failedA0 || fail
		mu.Unlock()
		time.Sleep(5 * time.Millisecond) // give a wrongly concurrent delivery time to overlap
		mu.Lock()
		defer mu.Unlock()
		active[m.Key]--
		if fail {
			return errBusBoom
		}
		handled[m.Key] = append(handled[m.Key], seq)
		if remaining--; remaining == 0 {
			close(done)
		}
		return nil
	})
	select {
	case <-done:
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("timed out; handled %v", handled)
	}
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(overlap) > 0 {
		t.Errorf("messages handled concurrently with an earlier one of their key: %v", overlap)
	}
	for _, k := range keys {
		want := make([]int, perKey)
		for i := range want {
			want[i] = i
		}
		if fmt.Sprint(handled[k]) != fmt.Sprint(want) {
			t.Errorf("key %s handled in order %v, want %v", k, handled[k], want)
		}
		d := delivered[k]
		for i := 1; i < len(d); i++ {
			if d[i] < d[i-1] {
				t.Errorf("key %s delivered out of order: %v", k, d)
				break
			}
		}
	}
	if d := delivered[keys[0]]; len(d) < 2 || d[0] != 0 || d[1] != 0 {
		t.Errorf("key %s deliveries %v: the nacked first message must be redelivered before the next", keys[0], d)
	}
}

func (s *busSuite) testStats(t *testing.T, ctx context.Context) {
	p := s.newPair(t, ctx, PairConfig{})
	sub := busOpenSub(t, ctx, p.OpenSubscription, bus.WithConcurrency(1))
	ms := []*bus.Message{{Key: "st-1"}, {Key: "st-2"}, {Key: "st-3"}}
	if err := p.Topic.PublishBatch(ctx, ms); err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
	busEventually(t, ctx, "Backlog = 3 before receiving", func() error { return busStatIs(ctx, sub, "Backlog", 3) })
	release := make(chan struct{})
	var once sync.Once
	rec := newBusRecorder(8, func(m *bus.Message) error {
		once.Do(func() { busWaitReturn(release) })
		return nil
	})
	busStartReceive(t, sub, rec.handler(0))
	busNext(t, ctx, rec.ch, "the first message")
	busEventually(t, ctx, "InFlight = 1 while a handler runs", func() error { return busStatIs(ctx, sub, "InFlight", 1) })
	close(release)
	busNext(t, ctx, rec.ch, "the second message")
	busNext(t, ctx, rec.ch, "the third message")
	busEventually(t, ctx, "Backlog = 0 and InFlight = 0 once all are acked", func() error {
		if err := busStatIs(ctx, sub, "Backlog", 0); err != nil {
			return err
		}
		return busStatIs(ctx, sub, "InFlight", 0)
	})
}

func (s *busSuite) testClose(t *testing.T, ctx context.Context) {
	p := s.newPair(t, ctx, PairConfig{})
	sub := busOpenSub(t, ctx, p.OpenSubscription)

	if err := p.Topic.Close(); err != nil {
		t.Fatalf("Topic.Close: %v", err)
	}
	if err := p.Topic.Close(); err != nil {
		t.Errorf("second Topic.Close = %v, want nil (idempotent)", err)
	}
	if err := p.Topic.Shutdown(ctx); err != nil {
		t.Errorf("Topic.Shutdown after Close = %v, want nil (idempotent)", err)
	}
	if err := p.Topic.Publish(ctx, &bus.Message{Body: []byte("x")}); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
	if err := p.Topic.Ping(ctx); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Topic.Ping after Close = %v, want ErrClosed", err)
	}

	done := make(chan error, 1)
	go func() {
		done <- sub.Receive(context.Background(), func(context.Context, *bus.Message) error { return nil })
	}()
	time.Sleep(200 * time.Millisecond) // let Receive block
	closed := time.Now()
	if err := sub.Close(); err != nil {
		t.Fatalf("Subscription.Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, bus.ErrClosed) {
			t.Errorf("blocked Receive returned %v after Close, want ErrClosed", err)
		}
		t.Logf("Receive returned %v after Close", time.Since(closed))
	case <-time.After(busStopTimeout):
		t.Fatal("Receive still blocked after Close")
	}
	if err := sub.Receive(ctx, func(context.Context, *bus.Message) error { return nil }); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Receive after Close = %v, want ErrClosed", err)
	}
	if err := sub.Close(); err != nil {
		t.Errorf("second Subscription.Close = %v, want nil (idempotent)", err)
	}
	if err := sub.Shutdown(ctx); err != nil {
		t.Errorf("Subscription.Shutdown after Close = %v, want nil (idempotent)", err)
	}
	if err := sub.Ping(ctx); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Subscription.Ping after Close = %v, want ErrClosed", err)
	}
	if s.caps.DLQInspectRedrive {
		if _, err := sub.DeadLetters(ctx, 0); !errors.Is(err, bus.ErrClosed) {
			t.Errorf("DeadLetters after Close = %v, want ErrClosed", err)
		}
		if _, err := sub.Redrive(ctx, 0); !errors.Is(err, bus.ErrClosed) {
			t.Errorf("Redrive after Close = %v, want ErrClosed", err)
		}
	}
	if s.caps.Stats {
		if _, err := sub.Stats(ctx); !errors.Is(err, bus.ErrClosed) {
			t.Errorf("Stats after Close = %v, want ErrClosed", err)
		}
	}
}

func (s *busSuite) testCancelUnblocksReceive(t *testing.T, ctx context.Context) {
	p := s.newPair(t, ctx, PairConfig{})
	sub := busOpenSub(t, ctx, p.OpenSubscription)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- sub.Receive(rctx, func(context.Context, *bus.Message) error { return nil })
	}()
	time.Sleep(300 * time.Millisecond) // let Receive block on an empty subscription
	cancelled := time.Now()
	cancel()
	const prompt = 2 * time.Second
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Receive returned %v after its context was cancelled, want nil", err)
		}
		if took := time.Since(cancelled); took > prompt {
			t.Errorf("Receive took %v to return after cancellation, want under %v", took, prompt)
		}
	case <-time.After(busStopTimeout):
		t.Fatal("Receive still blocked after its context was cancelled")
	}
	// The subscription stays usable after a cancelled Receive.
	if err := p.Topic.Publish(ctx, &bus.Message{Key: "after-cancel", Body: []byte("still here")}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	rec := newBusRecorder(4, nil)
	busStartReceive(t, sub, rec.handler(0))
	if d := busNext(t, ctx, rec.ch, "a message after a cancelled Receive"); string(d.Body) != "still here" {
		t.Fatalf("got %q", d.Body)
	}
}

func (s *busSuite) testMissingTopic(t *testing.T, ctx context.Context) {
	octx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	topic, err := s.h.OpenMissingTopic(octx)
	if err != nil {
		if !errors.Is(err, bus.ErrNotFound) {
			t.Fatalf("OpenMissingTopic = %v, want an error wrapping bus.ErrNotFound", err)
		}
		return
	}
	defer topic.Close()
	err = topic.Publish(octx, &bus.Message{Body: []byte("nowhere")})
	if !errors.Is(err, bus.ErrNotFound) {
		t.Fatalf("Publish to a missing topic = %v, want an error wrapping bus.ErrNotFound", err)
	}
}

func (s *busSuite) testMissingSubscription(t *testing.T, ctx context.Context) {
	octx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	sub, err := s.h.OpenMissingSubscription(octx)
	if err != nil {
		if !errors.Is(err, bus.ErrNotFound) {
			t.Fatalf("OpenMissingSubscription = %v, want an error wrapping bus.ErrNotFound", err)
		}
		return
	}
	defer sub.Close()
	err = sub.Receive(octx, func(context.Context, *bus.Message) error { return nil })
	if !errors.Is(err, bus.ErrNotFound) {
		t.Fatalf("Receive from a missing subscription = %v, want an error wrapping bus.ErrNotFound", err)
	}
}

// testThroughput pushes ThroughputMessages through one subscription while
// publishing, and checks each arrives.
func (s *busSuite) testThroughput(t *testing.T, ctx context.Context) {
	n := s.caps.ThroughputMessages
	p := s.newPair(t, ctx, PairConfig{})
	sub := busOpenSub(t, ctx, p.OpenSubscription, bus.WithConcurrency(32))
	var (
		mu   sync.Mutex
		seen = make(map[string]bool, n)
		dups int
		done = make(chan struct{})
	)
	start := time.Now()
	busStartReceive(t, sub, func(ctx context.Context, m *bus.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if seen[m.ID] {
			dups++
			return nil
		}
		seen[m.ID] = true
		if len(seen) == n {
			close(done)
		}
		return nil
	})
	body := busBody(256)
	const batch = 100
	for sent := 0; sent < n; sent += batch {
		ms := make([]*bus.Message, min(batch, n-sent))
		for i := range ms {
			ms[i] = &bus.Message{Key: strconv.Itoa(sent + i), Body: body}
		}
		if err := p.Topic.PublishBatch(ctx, ms); err != nil {
			t.Fatalf("PublishBatch at %d: %v", sent, err)
		}
	}
	published := time.Since(start)
	select {
	case <-done:
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("timed out: %d of %d messages received", len(seen), n)
	}
	took := time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d messages: published in %v, all received in %v (%.0f msgs/s end to end), %d duplicate deliveries",
		n, published, took, float64(n)/took.Seconds(), dups)
}
