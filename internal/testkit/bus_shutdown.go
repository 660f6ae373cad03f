package testkit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
)

// shutdownBound is how soon after a Shutdown another consumer must receive
// what the shut-down one handed back or nacked.
func (s *busSuite) shutdownBound(ackDeadline time.Duration) time.Duration {
	switch {
	case s.caps.ShutdownRedelivery > 0:
		return s.caps.ShutdownRedelivery
	case ackDeadline > 0:
		return ackDeadline / 3
	}
	return 10 * time.Second
}

// busReceiveAsync runs sub.Receive(ctx, h) in the background and returns
// its result on the channel.
func busReceiveAsync(ctx context.Context, sub *bus.Subscription, h bus.Handler) <-chan error {
	done := make(chan error, 1)
	go func() { done <- sub.Receive(ctx, h) }()
	return done
}

// testShutdownHandsBack checks a graceful Shutdown: it waits for the running
// handler and settles its message; it stops fetching at once, so that a
// message published during the shutdown never reaches the shut-down
// consumer's handler; what the consumer had fetched but not started
// (a long poll's catch, messages queued behind an ordering key) is handed
// back, so that another consumer receives it within the bound (for ack
// deadlines, a third of the deadline: not after a lapsed lease); and on
// ordered subscriptions the held key's later messages continue, in order,
// on the other consumer. The redelivery latency is logged.
func (s *busSuite) testShutdownHandsBack(t *testing.T, ctx context.Context) {
	p := s.newPair(t, ctx, PairConfig{AckDeadline: 30 * time.Second})
	a := busOpenSub(t, ctx, p.OpenSubscription, bus.WithConcurrency(2))
	bound := s.shutdownBound(a.Capabilities().AckDeadline)

	release := make(chan struct{})
	aGot := make(chan busDelivery, 64)
	rctx, cancelA := context.WithCancel(ctx)
	defer cancelA()
	aDone := busReceiveAsync(rctx, a, func(_ context.Context, m *bus.Message) error {
		select {
		case aGot <- busSnap(m, 0):
		default:
		}
		if m.Attributes["hold"] == "1" && !busWaitReturn(release) {
			return errors.New("testkit: never released")
		}
		return nil
	})

	run := bus.NewID()
	held := &bus.Message{ID: "held-" + run, Key: "k1-" + run, Body: []byte("held"), Attributes: map[string]string{"hold": "1"}}
	if err := p.Topic.Publish(ctx, held); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if d := busNext(t, ctx, aGot, "the held message at the first consumer"); d.ID != held.ID {
		t.Fatalf("first consumer got %v, want %s", d, held.ID)
	}
	var behind []string // same key as held: queued behind it
	if s.caps.Ordering {
		for i := range 2 {
			m := &bus.Message{ID: fmt.Sprintf("behind%d-%s", i, run), Key: held.Key, Body: []byte("behind")}
			if err := p.Topic.Publish(ctx, m); err != nil {
				t.Fatalf("Publish: %v", err)
			}
			behind = append(behind, m.ID)
		}
	}
	time.Sleep(300 * time.Millisecond) // the free slot is receiving (an SQS long poll is in flight)

	shutdown := make(chan error, 1)
	sctx, cancelS := context.WithTimeout(ctx, busStopTimeout)
	defer cancelS()
	go func() { shutdown <- a.Shutdown(sctx) }()
	time.Sleep(100 * time.Millisecond)
	late := &bus.Message{ID: "late-" + run, Key: "k2-" + run, Body: []byte("published during the shutdown")}
	if err := p.Topic.Publish(ctx, late); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned %v while a handler was still running", err)
	default:
	}
	released := time.Now()
	close(release)
	// Published while the driver is being released: a long poll still in
	// flight may catch it, and must hand it back.
	last := &bus.Message{ID: "last-" + run, Key: "k3-" + run, Body: []byte("published as the handler returned")}
	if err := p.Topic.Publish(ctx, last); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	var shutDown time.Time
	select {
	case err := <-shutdown:
		shutDown = time.Now()
		if err != nil {
			t.Fatalf("Shutdown = %v, want nil", err)
		}
	case <-time.After(busStopTimeout):
		t.Fatalf("Shutdown did not return within %v of the handler returning", busStopTimeout)
	}
	t.Logf("Shutdown returned %v after the last handler was released", shutDown.Sub(released).Round(time.Millisecond))
	select {
	case err := <-aDone:
		if !errors.Is(err, bus.ErrClosed) {
			t.Errorf("Receive on the shut-down subscription = %v, want ErrClosed", err)
		}
	case <-time.After(busStopTimeout):
		t.Fatal("Receive did not return after Shutdown")
	}
	close(aGot)
	for d := range aGot {
		t.Errorf("the shut-down consumer's handler got %v after Shutdown began", d)
	}

	b := busOpenSub(t, ctx, p.OpenSubscription, bus.WithConcurrency(4))
	rec := newBusRecorder(64, nil)
	stopB := busStartReceive(t, b, rec.handler(1))
	defer stopB() //nolint:errcheck // checked by busStartReceive's cleanup
	want := map[string]bool{late.ID: true, last.ID: true}
	for _, id := range behind {
		want[id] = true
	}
	bctx, cancelB := context.WithTimeout(ctx, max(3*bound, 20*time.Second))
	defer cancelB()
	var order []string
	for len(want) > 0 {
		d := busNext(t, bctx, rec.ch, fmt.Sprintf("the handed-back messages %v at the second consumer", busFirstKeys(want, 3)))
		if !want[d.ID] {
			continue // e.g. the held message again, on drivers that redeliver what a rebalance revoked
		}
		delete(want, d.ID)
		lat := d.At.Sub(shutDown)
		t.Logf("redelivery after Shutdown: %s at the second consumer %v after Shutdown returned (attempt %d)", d.ID, lat.Round(time.Millisecond), d.Attempt)
		if lat > bound {
			t.Errorf("%s reached the second consumer %v after Shutdown returned, want within %v (handed back, not left to its ack deadline)", d.ID, lat, bound)
		}
		if d.Key == held.Key {
			order = append(order, d.ID)
		}
	}
	for i := range order {
		if order[i] != behind[i] {
			t.Errorf("the held key continued out of order on the second consumer: %v, want %v", order, behind)
			break
		}
	}
}

// testShutdownCancelsHandlers checks that when Shutdown's context ends
// before a handler returns, Shutdown returns the context's error, the
// handler's context is cancelled with cause bus.ErrClosed, the message it
// then fails is nacked all the same (another consumer receives it again
// soon, not after its ack deadline), and that Shutdown and Close are
// idempotent on subscriptions and topics.
func (s *busSuite) testShutdownCancelsHandlers(t *testing.T, ctx context.Context) {
	p := s.newPair(t, ctx, PairConfig{AckDeadline: 30 * time.Second})
	a := busOpenSub(t, ctx, p.OpenSubscription, bus.WithConcurrency(1), busFastRetry())
	bound := s.shutdownBound(a.Capabilities().AckDeadline)

	started := make(chan busDelivery, 1)
	causes := make(chan error, 1)
	rctx, cancelA := context.WithCancel(ctx)
	defer cancelA()
	aDone := busReceiveAsync(rctx, a, func(hctx context.Context, m *bus.Message) error {
		started <- busSnap(m, 0)
		select {
		case <-hctx.Done():
			causes <- context.Cause(hctx)
			return fmt.Errorf("testkit: handler stopped: %w", hctx.Err())
		case <-time.After(busHandlerWait):
			causes <- errors.New("the handler's context was never cancelled")
			return nil
		}
	})
	m := &bus.Message{ID: "long-" + bus.NewID(), Body: []byte("long handler")}
	if err := p.Topic.Publish(ctx, m); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	busNext(t, ctx, started, "the message at the first consumer")

	const grace = 500 * time.Millisecond
	sctx, cancelS := context.WithTimeout(ctx, grace)
	defer cancelS()
	t0 := time.Now()
	if err := a.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a handler outliving the grace = %v, want context.DeadlineExceeded", err)
	}
	if el := time.Since(t0); el < grace-50*time.Millisecond {
		t.Errorf("Shutdown returned after %v, before its grace of %v ended", el, grace)
	}
	select {
	case cause := <-causes:
		if !errors.Is(cause, bus.ErrClosed) {
			t.Errorf("the handler's context cause = %v, want bus.ErrClosed", cause)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler's context was not cancelled within 5s of the grace ending")
	}
	if err := a.Close(); err != nil {
		t.Errorf("Close after a Shutdown whose grace ended = %v, want nil", err)
	}
	closed := time.Now()
	if err := a.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown after Close = %v, want nil", err)
	}
	if err := a.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	select {
	case err := <-aDone:
		if !errors.Is(err, bus.ErrClosed) {
			t.Errorf("Receive on the shut-down subscription = %v, want ErrClosed", err)
		}
	case <-time.After(busStopTimeout):
		t.Fatal("Receive did not return after Close")
	}

	if !s.caps.ShutdownHandBack {
		t.Logf("not checking how soon the nacked message is redelivered: %s", s.skipReason(CapShutdownHandBack))
		busCheckTopicShutdown(t, ctx, p.Topic)
		return
	}
	b := busOpenSub(t, ctx, p.OpenSubscription)
	rec := newBusRecorder(16, nil)
	stopB := busStartReceive(t, b, rec.handler(1))
	defer stopB() //nolint:errcheck // checked by busStartReceive's cleanup
	bctx, cancelB := context.WithTimeout(ctx, max(3*bound, 20*time.Second))
	defer cancelB()
	for {
		d := busNext(t, bctx, rec.ch, "the nacked message at the second consumer")
		if d.ID != m.ID {
			continue
		}
		lat := d.At.Sub(closed)
		t.Logf("the message its cancelled handler failed reached the second consumer %v after Close (attempt %d)", lat.Round(time.Millisecond), d.Attempt)
		if d.Attempt < 2 {
			t.Errorf("redelivered with attempt %d, want at least 2: the failed delivery was not settled", d.Attempt)
		}
		if lat > bound {
			t.Errorf("redelivered %v after Close, want within %v (nacked, not left to its ack deadline)", lat, bound)
		}
		break
	}
	busCheckTopicShutdown(t, ctx, p.Topic)
}

// busCheckTopicShutdown checks that Topic.Shutdown and Close are idempotent.
func busCheckTopicShutdown(t *testing.T, ctx context.Context, topic *bus.Topic) {
	t.Helper()
	if err := topic.Shutdown(ctx); err != nil {
		t.Errorf("Topic.Shutdown = %v", err)
	}
	if err := topic.Shutdown(ctx); err != nil {
		t.Errorf("second Topic.Shutdown = %v, want nil", err)
	}
	if err := topic.Close(); err != nil {
		t.Errorf("Topic.Close after Shutdown = %v, want nil", err)
	}
	if err := topic.Publish(ctx, &bus.Message{Body: []byte("x")}); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Publish after Shutdown = %v, want ErrClosed", err)
	}
}

// BenchShutdownRedelivery measures, b.N times on a fresh pair each, how
// soon after a consumer's Shutdown another consumer receives a message
// published while the first was shutting down (a long poll in flight may
// have caught it, and must hand it back). It reports the mean in
// ms/redelivery; the timer runs only from Shutdown's return to the
// delivery.
func BenchShutdownRedelivery(b *testing.B, h BusHarness) {
	ctx := context.Background()
	var total time.Duration
	b.StopTimer()
	for i := range b.N {
		p, err := h.MakePair(ctx, b, PairConfig{AckDeadline: 30 * time.Second})
		if err != nil {
			b.Fatalf("MakePair: %v", err)
		}
		a, err := p.OpenSubscription(ctx, bus.WithConcurrency(2))
		if err != nil {
			b.Fatalf("open subscription: %v", err)
		}
		aDone := busReceiveAsync(ctx, a, func(context.Context, *bus.Message) error { return nil })
		time.Sleep(200 * time.Millisecond) // a receive (long poll) is in flight
		shut := make(chan error, 1)
		go func() { shut <- a.Shutdown(ctx) }()
		time.Sleep(50 * time.Millisecond) // the shutdown has begun: the first consumer fetches no more
		m := &bus.Message{ID: fmt.Sprintf("shutdown-%d-%s", i, bus.NewID()), Body: []byte("x")}
		if err := p.Topic.Publish(ctx, m); err != nil {
			b.Fatalf("Publish: %v", err)
		}
		if err := <-shut; err != nil {
			b.Fatalf("Shutdown: %v", err)
		}
		<-aDone
		b.StartTimer()
		t0 := time.Now()
		sub, err := p.OpenSubscription(ctx)
		if err != nil {
			b.Fatalf("open subscription: %v", err)
		}
		got := make(chan struct{})
		var once sync.Once
		rctx, cancel := context.WithCancel(ctx)
		bDone := busReceiveAsync(rctx, sub, func(_ context.Context, d *bus.Message) error {
			if d.ID == m.ID {
				once.Do(func() { close(got) })
			}
			return nil
		})
		select {
		case <-got:
		case <-time.After(2 * time.Minute):
			b.Fatalf("the message published during the shutdown never reached the other consumer")
		}
		total += time.Since(t0)
		b.StopTimer()
		cancel()
		<-bDone
		_ = sub.Close()
		_ = p.Topic.Close()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/redelivery")
}
