package inmemory_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/driver"
	"github.com/payrail/payrail/bus/inmemory"
)

// noAutoExtend stops package bus from extending leases while a handler
// runs, so that a slow handler lets its lease expire.
var noAutoExtend = bus.WithMaxExtension(time.Nanosecond)

func fastRetry() bus.SubscriptionOption {
	return bus.WithRetryBackoff(func(int) time.Duration { return time.Millisecond })
}

// An unsettled delivery becomes visible again after the ack deadline, as
// attempt 2; the first delivery's late Ack is refused and does not remove
// the newer delivery.
func TestAckDeadlineRedeliveryAndStaleAck(t *testing.T) {
	t.Parallel()
	const deadline = 150 * time.Millisecond
	name := uniqueName(t)
	topic := openTopic(t, "inmemory://"+name)
	sub := openSub(t, "inmemory://"+name+"?ack_deadline=150ms", noAutoExtend, bus.WithConcurrency(2))

	type delivery struct {
		m  received
		at time.Time
	}
	first, second := make(chan delivery, 1), make(chan delivery, 1)
	staleAck := make(chan error, 1)
	newerAck := make(chan error, 1)
	inFlightAfterStale := make(chan int64, 1)
	var calls atomic.Int32
	stop := startReceive(t, sub, func(ctx context.Context, m *bus.Message) error {
		calls.Add(1)
		d := delivery{snapshot(m), time.Now()}
		switch m.DeliveryAttempt {
		case 1:
			first <- d
			// Hold the first delivery until it has been redelivered.
			if _, ok := within(second); !ok {
				t.Error("no redelivery while the first delivery's lease had expired")
			}
			staleAck <- m.Ack(ctx)
		case 2:
			second <- d
			second <- d // once for the first handler, once for the test
			// Wait for the stale ack, then check this delivery survived it.
			within(inFlightAfterStale)
			newerAck <- m.Ack(ctx)
		default:
			t.Errorf("unexpected delivery attempt %d", m.DeliveryAttempt)
		}
		return nil
	})
	// No key: on ordered subscriptions package bus queues a redelivery behind
	// a still-running handler for the same key.
	publish(t, topic, &bus.Message{ID: "slow"})

	d1 := await(t, first, "first delivery")
	if err := await(t, staleAck, "stale ack"); !errors.Is(err, inmemory.ErrLeaseExpired) {
		t.Errorf("Ack of the expired delivery = %v, want ErrLeaseExpired", err)
	}
	st := stats(t, sub)
	inFlightAfterStale <- st.InFlight
	if st.InFlight != 1 {
		t.Errorf("after the stale ack Stats = %+v, want the redelivery still in flight", st)
	}
	d2 := await(t, second, "redelivery")
	if err := await(t, newerAck, "ack of the redelivery"); err != nil {
		t.Errorf("Ack of the current delivery: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	if d2.m.ID != d1.m.ID || d2.m.Attempt != 2 || !d2.m.PublishTime.Equal(d1.m.PublishTime) {
		t.Errorf("redelivery = %+v, want %q attempt 2 with the same publish time", d2.m, d1.m.ID)
	}
	// The first delivery happened after publishing, so the redelivery must
	// come at least one ack deadline after the publish time.
	if gap := d2.at.Sub(d1.m.PublishTime); gap < deadline {
		t.Errorf("redelivered %v after publishing, before the %v ack deadline", gap, deadline)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("handler called %d times, want 2", n)
	}
	wantStats(t, sub, bus.Stats{})
}

// Every settlement of a stale receipt is refused, at the driver level.
func TestStaleReceiptRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := inmemory.NewBroker()
	tp := driverTopic(t, b, "inmemory://t")
	s := driverSub(t, b, "inmemory://t?ack_deadline=50ms")
	if err := tp.SendBatch(ctx, []*driver.Message{{ID: "m"}}); err != nil {
		t.Fatal(err)
	}
	old := receiveBatch(t, s, 1)[0]
	cur := receiveBatch(t, s, 1)[0] // blocks until the lease expires
	if cur.ID != "m" || cur.DeliveryAttempt != 2 || cur.AckID == old.AckID {
		t.Fatalf("redelivery = %s with AckID %v, want m#2 with a new receipt", ids([]*driver.Message{cur}), cur.AckID)
	}
	ext := s.(driver.Extender)
	for name, err := range map[string]error{
		"Ack":        s.Ack(ctx, old),
		"Nack":       s.Nack(ctx, old, 0),
		"DeadLetter": s.DeadLetter(ctx, old, "x"),
		"Extend":     ext.Extend(ctx, old, time.Minute),
	} {
		if !errors.Is(err, inmemory.ErrLeaseExpired) {
			t.Errorf("%s of the stale receipt = %v, want ErrLeaseExpired", name, err)
		}
	}
	if st, _ := s.(driver.Stater).Stats(ctx); !sameCounts(st, driver.Stats{InFlight: 1}) {
		t.Errorf("Stats = %+v, want the current delivery still in flight", st)
	}
	if err := s.Ack(ctx, cur); err != nil {
		t.Fatalf("Ack of the current receipt: %v", err)
	}
	if err := s.Ack(ctx, cur); !errors.Is(err, driver.ErrAlreadySettled) {
		t.Errorf("second Ack = %v, want ErrAlreadySettled", err)
	}
	foreign := &driver.Message{ID: "m", AckID: "forged"}
	if err := s.Ack(ctx, foreign); err == nil {
		t.Error("Ack of a message with a forged AckID succeeded")
	}
	if st, _ := s.(driver.Stater).Stats(ctx); !sameCounts(st, driver.Stats{}) {
		t.Errorf("Stats = %+v, want empty", st)
	}
}

func TestNackDelay(t *testing.T) {
	t.Parallel()
	const delay = 250 * time.Millisecond
	name := uniqueName(t)
	topic := openTopic(t, "inmemory://"+name)
	sub := openSub(t, "inmemory://"+name)
	publish(t, topic, &bus.Message{ID: "n"})

	nacked := make(chan time.Time, 1)
	redelivered := make(chan received, 1)
	var redeliveredAt time.Time
	stop := startReceive(t, sub, func(ctx context.Context, m *bus.Message) error {
		if m.DeliveryAttempt == 1 {
			at := time.Now()
			if err := m.Nack(ctx, delay); err != nil {
				t.Errorf("Nack: %v", err)
			}
			nacked <- at
			return nil
		}
		redeliveredAt = time.Now()
		redelivered <- snapshot(m)
		return nil
	})
	at := await(t, nacked, "nack")
	if st := stats(t, sub); !sameCounts(st, bus.Stats{Backlog: 1}) && time.Since(at) < delay {
		t.Errorf("during the nack delay Stats = %+v, want Backlog 1", st)
	}
	r := await(t, redelivered, "redelivery")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if r.Attempt != 2 {
		t.Errorf("redelivery attempt = %d, want 2", r.Attempt)
	}
	if gap := redeliveredAt.Sub(at); gap < delay || gap > delay+2*time.Second {
		t.Errorf("redelivered %v after Nack(%v)", gap, delay)
	}
}

func TestExtend(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		query  string
		opts   []bus.SubscriptionOption
		extend bool // the handler calls Message.Extend itself
		work   time.Duration
	}{
		// Package bus extends at 2/3 of the deadline while the handler runs.
		{name: "automatic", query: "?ack_deadline=300ms", work: 800 * time.Millisecond},
		{name: "explicit", query: "?ack_deadline=100ms", opts: []bus.SubscriptionOption{noAutoExtend}, extend: true, work: 350 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name := uniqueName(t)
			topic := openTopic(t, "inmemory://"+name)
			sub := openSub(t, "inmemory://"+name+tc.query, append(tc.opts, bus.WithConcurrency(2))...)
			var calls atomic.Int32
			acked := make(chan error, 1)
			stop := startReceive(t, sub, func(ctx context.Context, m *bus.Message) error {
				if calls.Add(1) > 1 {
					t.Errorf("message redelivered (attempt %d) while its handler was running", m.DeliveryAttempt)
					return nil
				}
				if tc.extend {
					if err := m.Extend(ctx, 2*time.Second); err != nil {
						t.Errorf("Extend: %v", err)
					}
				}
				time.Sleep(tc.work) // a long-running handler, several ack deadlines
				acked <- m.Ack(ctx)
				return nil
			})
			publish(t, topic, &bus.Message{ID: "long"})
			if err := await(t, acked, "ack"); err != nil {
				t.Errorf("Ack after a long handler: %v", err)
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if n := calls.Load(); n != 1 {
				t.Errorf("handler called %d times, want 1", n)
			}
			wantStats(t, sub, bus.Stats{})
		})
	}
}

func TestMaxAttemptsDeadLetterPeekRedrive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	name := uniqueName(t)
	topic := openTopic(t, "inmemory://"+name)
	// Package bus would allow 10 attempts; the broker's own limit is 2.
	sub := openSub(t, "inmemory://"+name+"?max_attempts=2", bus.WithMaxAttempts(10), fastRetry())
	attrs := map[string]string{"tenant": "acme", "trace": "t-1"}
	body := []byte{0xde, 0xad, 0x00, 0xbe, 0xef}
	before := time.Now()
	publish(t, topic, &bus.Message{ID: "poison", Key: "acct", Body: body, Attributes: maps.Clone(attrs)})

	attempts := make(chan int, 10)
	stop := startReceive(t, sub, func(_ context.Context, m *bus.Message) error {
		attempts <- m.DeliveryAttempt
		return errors.New("cannot process")
	})
	await(t, attempts, "attempt 1")
	await(t, attempts, "attempt 2")
	if err := stop(); err != nil { // returns once attempt 2 was nacked
		t.Fatal(err)
	}
	if len(attempts) != 0 {
		t.Fatalf("delivered beyond max_attempts: attempt %d", <-attempts)
	}
	wantStats(t, sub, bus.Stats{DeadLetters: 1})

	dls, err := sub.DeadLetters(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 {
		t.Fatalf("DeadLetters returned %d, want 1", len(dls))
	}
	dl := dls[0]
	if m := dl.Message; m.ID != "poison" || m.Key != "acct" || !bytes.Equal(m.Body, body) || !maps.Equal(m.Attributes, attrs) || m.DeliveryAttempt != 2 {
		t.Errorf("dead letter = %+v, want the original message after 2 attempts", m)
	}
	if !strings.Contains(dl.Reason, "max delivery attempts (2) exceeded") {
		t.Errorf("Reason = %q", dl.Reason)
	}
	if dl.DeadLetteredAt.Before(before) || dl.DeadLetteredAt.After(time.Now()) {
		t.Errorf("DeadLetteredAt = %v", dl.DeadLetteredAt)
	}
	// Peeking does not remove.
	if again, _ := sub.DeadLetters(ctx, 0); len(again) != 1 {
		t.Errorf("second peek returned %d dead letters, want 1", len(again))
	}

	n, err := sub.Redrive(ctx, 0)
	if err != nil || n != 1 {
		t.Fatalf("Redrive = %d, %v; want 1", n, err)
	}
	wantStats(t, sub, bus.Stats{Backlog: 1})
	r := collect(t, sub, 1)[0]
	if r.ID != "poison" || r.Attempt != 1 || !bytes.Equal(r.Body, body) || !maps.Equal(r.Attributes, attrs) || r.Key != "acct" {
		t.Errorf("redriven message = %+v, want the original at attempt 1", r)
	}
	wantStats(t, sub, bus.Stats{})
}

// A lease that expires on the last allowed attempt dead-letters the message.
func TestMaxAttemptsOnLeaseExpiry(t *testing.T) {
	t.Parallel()
	name := uniqueName(t)
	topic := openTopic(t, "inmemory://"+name)
	sub := openSub(t, "inmemory://"+name+"?max_attempts=1&ack_deadline=100ms", noAutoExtend)
	publish(t, topic, &bus.Message{ID: "slow", Attributes: map[string]string{"a": "b"}})
	ackErr := make(chan error, 1)
	stop := startReceive(t, sub, func(ctx context.Context, m *bus.Message) error {
		time.Sleep(250 * time.Millisecond) // outlive the lease
		ackErr <- m.Ack(ctx)
		return nil
	})
	if err := await(t, ackErr, "late ack"); !errors.Is(err, inmemory.ErrLeaseExpired) {
		t.Errorf("late Ack = %v, want ErrLeaseExpired", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	wantStats(t, sub, bus.Stats{DeadLetters: 1})
	dls, err := sub.DeadLetters(context.Background(), 1)
	if err != nil || len(dls) != 1 {
		t.Fatalf("DeadLetters = %v, %v", dls, err)
	}
	if dls[0].Message.ID != "slow" || dls[0].Message.Attributes["a"] != "b" || dls[0].Reason != "max delivery attempts (1) exceeded" {
		t.Errorf("dead letter = %+v (reason %q)", dls[0].Message, dls[0].Reason)
	}
}

func TestDeadLetterOrderAndPartialRedrive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	name := uniqueName(t)
	topic := openTopic(t, "inmemory://"+name)
	sub := openSub(t, "inmemory://"+name, bus.WithConcurrency(1))
	publish(t, topic,
		&bus.Message{ID: "m0", Attributes: map[string]string{"n": "0"}},
		&bus.Message{ID: "m1", Attributes: map[string]string{"n": "1"}},
		&bus.Message{ID: "m2", Attributes: map[string]string{"n": "2"}})
	done := make(chan struct{}, 3)
	stop := startReceive(t, sub, func(ctx context.Context, m *bus.Message) error {
		defer func() { done <- struct{}{} }()
		return m.DeadLetter(ctx, "rejected "+m.ID)
	})
	for range 3 {
		await(t, done, "dead-lettering")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	dls, err := sub.DeadLetters(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, dl := range dls {
		got = append(got, fmt.Sprintf("%s:%s:%s", dl.Message.ID, dl.Message.Attributes["n"], dl.Reason))
	}
	if want := []string{"m0:0:rejected m0", "m1:1:rejected m1", "m2:2:rejected m2"}; !slices.Equal(got, want) {
		t.Fatalf("DeadLetters = %v, want %v", got, want)
	}
	if two, _ := sub.DeadLetters(ctx, 2); len(two) != 2 || two[0].Message.ID != "m0" {
		t.Errorf("DeadLetters(2) returned %d, first %q", len(two), two[0].Message.ID)
	}
	if n, err := sub.Redrive(ctx, 2); err != nil || n != 2 {
		t.Fatalf("Redrive(2) = %d, %v", n, err)
	}
	wantStats(t, sub, bus.Stats{Backlog: 2, DeadLetters: 1})
	r := collect(t, sub, 2)
	if r[0].ID != "m0" || r[1].ID != "m1" || r[0].Attempt != 1 || r[1].Attributes["n"] != "1" {
		t.Errorf("redriven = %+v, want m0 then m1 at attempt 1 with attributes", r)
	}
	if rest, _ := sub.DeadLetters(ctx, 0); len(rest) != 1 || rest[0].Message.ID != "m2" {
		t.Errorf("remaining dead letters = %v, want m2", rest)
	}
	if n, err := sub.Redrive(ctx, 0); err != nil || n != 1 {
		t.Errorf("Redrive(0) = %d, %v; want 1", n, err)
	}
}

// Messages with the same key are handled one at a time in publish order,
// even by two handles running eight handlers each, and a failed message is
// retried before any later message with its key.
func TestPerKeyOrdering(t *testing.T) {
	t.Parallel()
	const keys, perKey = 20, 50
	name := uniqueName(t)
	topic := openTopic(t, "inmemory://"+name)
	subs := []*bus.Subscription{
		openSub(t, "inmemory://"+name, bus.WithConcurrency(8), fastRetry()),
		openSub(t, "inmemory://"+name, bus.WithConcurrency(8), fastRetry()),
	}
	if !subs[0].Capabilities().Ordering {
		t.Fatal("Capabilities().Ordering = false by default")
	}

	type invocation struct {
		seq, attempt int
		acked        bool
	}
	var mu sync.Mutex
	history := make([][]invocation, keys)
	var busy [keys]atomic.Bool
	var acked atomic.Int64
	done := make(chan struct{})
	// The first messages of different keys must be able to run at once: the
	// first seq-0 handler waits until a second one has started.
	var firstsStarted atomic.Int32
	twoKeysRunning := make(chan struct{})
	h := func(ctx context.Context, m *bus.Message) error {
		k, _ := strconv.Atoi(strings.TrimPrefix(m.Key, "key-"))
		seq, _ := strconv.Atoi(string(m.Body))
		if !busy[k].CompareAndSwap(false, true) {
			t.Errorf("two messages with key %s handled at once", m.Key)
			return nil
		}
		if seq == 0 && m.DeliveryAttempt == 1 {
			if firstsStarted.Add(1) == 2 {
				close(twoKeysRunning)
			}
			if _, ok := within(twoKeysRunning); !ok {
				t.Error("messages with different keys were not handled concurrently")
			}
		}
		inv := invocation{seq: seq, attempt: m.DeliveryAttempt}
		var err error
		switch {
		case m.DeliveryAttempt == 1 && seq%10 == 3:
			err = errors.New("transient") // package bus nacks with fastRetry
		case m.DeliveryAttempt == 1 && seq%10 == 7:
			err = m.Nack(ctx, 20*time.Millisecond)
			if err == nil {
				err = errors.New("nacked")
			}
		default:
			inv.acked = true
		}
		mu.Lock()
		history[k] = append(history[k], inv)
		mu.Unlock()
		busy[k].Store(false) // before settlement: the broker must still hold the next one back
		if inv.acked && acked.Add(1) == keys*perKey {
			close(done)
		}
		if inv.acked {
			return nil
		}
		if m.Settled() {
			return nil
		}
		return err
	}
	for _, s := range subs {
		startReceive(t, s, h)
	}

	var wg sync.WaitGroup
	for k := range keys {
		wg.Go(func() { // one publisher per key, all concurrent
			for seq := range perKey {
				m := &bus.Message{ID: fmt.Sprintf("k%d-s%d", k, seq), Key: fmt.Sprintf("key-%02d", k), Body: []byte(strconv.Itoa(seq))}
				if err := topic.Publish(context.Background(), m); err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	await(t, done, "every message acked")
	for _, s := range subs {
		_ = s.Close()
	}

	for k, invs := range history {
		next := 0
		for _, inv := range invs {
			if inv.seq != next {
				t.Fatalf("key %d: handled seq %d (attempt %d) when %d was due; history %v", k, inv.seq, inv.attempt, next, invs)
			}
			if inv.acked {
				next++
			}
		}
		if next != perKey {
			t.Errorf("key %d: %d messages acked, want %d", k, next, perKey)
		}
	}
}

// Driver-level view of key blocking: the second message of a key is not
// delivered while the first is in flight, delayed or redelivered.
func TestKeyHeldUntilSettled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := inmemory.NewBroker()
	tp := driverTopic(t, b, "inmemory://t")
	s := driverSub(t, b, "inmemory://t")
	err := tp.SendBatch(ctx, []*driver.Message{{ID: "a1", Key: "a"}, {ID: "a2", Key: "a"}, {ID: "b1", Key: "b"}, {ID: "u1"}})
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := s.(driver.Stater).Stats(ctx); st.Backlog != 4 {
		t.Errorf("Backlog = %d, want 4 including the held message", st.Backlog)
	}
	ms := receiveBatch(t, s, 10)
	if got := ids(ms); !slices.Equal(got, []string{"a1#1", "b1#1", "u1#1"}) {
		t.Fatalf("first batch = %v, want a1, b1, u1 (a2 held behind a1)", got)
	}
	if err := s.Nack(ctx, ms[0], 0); err != nil {
		t.Fatal(err)
	}
	again := receiveBatch(t, s, 10)
	if got := ids(again); !slices.Equal(got, []string{"a1#2"}) {
		t.Fatalf("after nacking a1: %v, want only a1#2", got)
	}
	if err := s.Ack(ctx, again[0]); err != nil {
		t.Fatal(err)
	}
	if got := ids(receiveBatch(t, s, 10)); !slices.Equal(got, []string{"a2#1"}) {
		t.Fatalf("after acking a1: %v, want a2#1", got)
	}
}

func TestUnordered(t *testing.T) {
	t.Parallel()
	name := uniqueName(t)
	topic := openTopic(t, "inmemory://"+name)
	sub := openSub(t, "inmemory://"+name+"?ordered=false", bus.WithConcurrency(2))
	if sub.Capabilities().Ordering {
		t.Fatal("ordered=false: Capabilities().Ordering = true")
	}
	publish(t, topic, &bus.Message{ID: "1", Key: "same"}, &bus.Message{ID: "2", Key: "same"})
	var arrived sync.WaitGroup
	arrived.Add(2)
	both := make(chan struct{})
	go func() { arrived.Wait(); close(both) }()
	stop := startReceive(t, sub, func(context.Context, *bus.Message) error {
		arrived.Done()
		select { // both messages of the key must be in handlers at once
		case <-both:
			return nil
		case <-time.After(waitTimeout):
			return errors.New("same-key message was held back on an unordered subscription")
		}
	})
	await(t, both, "both same-key messages in flight together")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	wantStats(t, sub, bus.Stats{})
}

func TestClose(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("portable", func(t *testing.T) {
		name := uniqueName(t)
		topic := openTopic(t, "inmemory://"+name)
		sub := openSub(t, "inmemory://"+name)
		result := make(chan error, 1)
		go func() { result <- sub.Receive(ctx, func(context.Context, *bus.Message) error { return nil }) }()
		time.Sleep(20 * time.Millisecond) // let Receive block in the driver
		if err := sub.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := await(t, result, "Receive to return"); !errors.Is(err, bus.ErrClosed) {
			t.Errorf("Receive after Close = %v, want ErrClosed", err)
		}
		if err := sub.Close(); err != nil {
			t.Errorf("second Close = %v, want nil (idempotent)", err)
		}
		if _, err := sub.Stats(ctx); !errors.Is(err, bus.ErrClosed) {
			t.Errorf("Stats after Close = %v, want ErrClosed", err)
		}
		if err := topic.Close(); err != nil {
			t.Fatal(err)
		}
		if err := topic.Publish(ctx, &bus.Message{}); !errors.Is(err, bus.ErrClosed) {
			t.Errorf("Publish after Close = %v, want ErrClosed", err)
		}
	})

	t.Run("driver", func(t *testing.T) {
		b := inmemory.NewBroker()
		tp := driverTopic(t, b, "inmemory://t")
		if err := tp.SendBatch(ctx, []*driver.Message{{ID: "held"}}); err != nil {
			t.Fatal(err)
		}
		s1 := driverSub(t, b, "inmemory://t")
		m := receiveBatch(t, s1, 5)[0]
		blocked := make(chan error, 1)
		go func() {
			_, err := s1.ReceiveBatch(ctx, 1)
			blocked <- err
		}()
		time.Sleep(20 * time.Millisecond) // let it block
		if err := s1.Close(); err != nil {
			t.Fatal(err)
		}
		if err := await(t, blocked, "blocked ReceiveBatch"); !errors.Is(err, driver.ErrClosed) {
			t.Errorf("blocked ReceiveBatch after Close = %v, want ErrClosed", err)
		}
		if _, err := s1.ReceiveBatch(ctx, 1); !errors.Is(err, driver.ErrClosed) {
			t.Errorf("ReceiveBatch after Close = %v, want ErrClosed", err)
		}
		if err := s1.Ack(ctx, m); !errors.Is(err, driver.ErrClosed) {
			t.Errorf("Ack after Close = %v, want ErrClosed", err)
		}
		if err := s1.Nack(ctx, m, 0); !errors.Is(err, driver.ErrClosed) {
			t.Errorf("Nack after Close = %v, want ErrClosed", err)
		}
		// The broker kept the subscription and the returned delivery.
		s2 := driverSub(t, b, "inmemory://t?create=false")
		got := receiveBatch(t, s2, 5)
		if ids(got)[0] != "held#2" || len(got) != 1 {
			t.Fatalf("after reopening: %v, want held#2", ids(got))
		}
		if err := s2.Ack(ctx, got[0]); err != nil {
			t.Fatal(err)
		}
		if err := tp.Close(); err != nil {
			t.Fatal(err)
		}
		if err := tp.SendBatch(ctx, []*driver.Message{{ID: "late"}}); !errors.Is(err, driver.ErrClosed) {
			t.Errorf("SendBatch after Close = %v, want ErrClosed", err)
		}
	})
}

func TestContextCancelUnblocksReceive(t *testing.T) {
	t.Parallel()
	name := uniqueName(t)
	sub := openSub(t, "inmemory://"+name)

	ctx, cancel := context.WithCancel(context.Background())
	result := make(chan error, 1)
	go func() { result <- sub.Receive(ctx, func(context.Context, *bus.Message) error { return nil }) }()
	time.Sleep(20 * time.Millisecond) // let Receive block in the driver
	cancelled := time.Now()
	cancel()
	if err := await(t, result, "Receive to return"); err != nil {
		t.Errorf("Receive after cancel = %v, want nil", err)
	}
	if d := time.Since(cancelled); d > 200*time.Millisecond {
		t.Errorf("Receive returned %v after cancel, want < 200ms", d)
	}

	// The driver returns ctx.Err() itself.
	s := driverSub(t, inmemory.NewBroker(), "inmemory://t")
	dctx, dcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer dcancel()
	start := time.Now()
	if _, err := s.ReceiveBatch(dctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ReceiveBatch = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("ReceiveBatch returned %v after a 50ms deadline", d)
	}
}

// Switching ordering off releases held messages; switching it back on makes
// new messages wait for every circulating message with their key.
func TestToggleOrdering(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := inmemory.NewBroker()
	tp := driverTopic(t, b, "inmemory://t")
	s := driverSub(t, b, "inmemory://t")
	send := func(ids ...string) {
		t.Helper()
		var ms []*driver.Message
		for _, id := range ids {
			ms = append(ms, &driver.Message{ID: id, Key: "k"})
		}
		if err := tp.SendBatch(ctx, ms); err != nil {
			t.Fatal(err)
		}
	}
	send("a1", "a2")
	a1 := receiveBatch(t, s, 10)
	if got := ids(a1); !slices.Equal(got, []string{"a1#1"}) {
		t.Fatalf("ordered: %v, want a1#1 only", got)
	}
	driverSub(t, b, "inmemory://t?ordered=false")
	if s.Capabilities().Ordering {
		t.Fatal("Capabilities().Ordering still true after ordered=false")
	}
	a2 := receiveBatch(t, s, 10)
	if got := ids(a2); !slices.Equal(got, []string{"a2#1"}) {
		t.Fatalf("after ordered=false: %v, want the held a2#1", got)
	}
	driverSub(t, b, "inmemory://t?ordered=true")
	send("a3")
	st := s.(driver.Stater)
	if got, _ := st.Stats(ctx); !sameCounts(got, driver.Stats{Backlog: 1, InFlight: 2}) {
		t.Fatalf("Stats = %+v, want a3 held behind a1 and a2", got)
	}
	if err := s.Ack(ctx, a1[0]); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if ms, err := s.ReceiveBatch(short, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a3 delivered while a2 is in flight: %v, %v", ids(ms), err)
	}
	if err := s.Ack(ctx, a2[0]); err != nil {
		t.Fatal(err)
	}
	if got := ids(receiveBatch(t, s, 10)); !slices.Equal(got, []string{"a3#1"}) {
		t.Fatalf("after acking a1 and a2: %v, want a3#1", got)
	}
}

// Lowering max_attempts applies to messages already queued.
func TestLoweredMaxAttempts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := inmemory.NewBroker()
	tp := driverTopic(t, b, "inmemory://t")
	s := driverSub(t, b, "inmemory://t")
	if err := tp.SendBatch(ctx, []*driver.Message{{ID: "x"}, {ID: "y"}}); err != nil {
		t.Fatal(err)
	}
	ms := receiveBatch(t, s, 1)
	for range 2 { // three deliveries of x
		if err := s.Nack(ctx, ms[0], 0); err != nil {
			t.Fatal(err)
		}
		ms = receiveBatch(t, s, 1)
		if ms[0].ID == "y" {
			if err := s.Ack(ctx, ms[0]); err != nil {
				t.Fatal(err)
			}
			ms = receiveBatch(t, s, 1)
		}
	}
	if got := ids(ms); !slices.Equal(got, []string{"x#3"}) {
		t.Fatalf("got %v, want x#3", got)
	}
	if err := s.Nack(ctx, ms[0], 0); err != nil {
		t.Fatal(err)
	}
	driverSub(t, b, "inmemory://t?max_attempts=2")
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if ms, err := s.ReceiveBatch(short, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("delivered beyond the lowered max_attempts: %v, %v", ids(ms), err)
	}
	dls, err := s.(driver.DeadLetterQueue).PeekDeadLetters(ctx, 0)
	if err != nil || len(dls) != 1 || dls[0].Message.ID != "x" || dls[0].Reason != "max delivery attempts (2) exceeded" {
		t.Fatalf("dead letters = %+v, %v; want x for max attempts (2)", dls, err)
	}
}
