package inmemory_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/driver"
	"github.com/payrail/payrail/bus/inmemory"
)

// waitTimeout bounds every wait on an event that should happen promptly.
const waitTimeout = 5 * time.Second

var nameSeq atomic.Int64

// uniqueName returns a topic name no other test uses, derived from the test
// name so that failures are easy to attribute.
func uniqueName(t testing.TB) string {
	var b strings.Builder
	for _, r := range strings.ToLower(t.Name()) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	fmt.Fprintf(&b, "-%d", nameSeq.Add(1))
	return b.String()
}

func openTopic(t testing.TB, rawURL string) *bus.Topic {
	t.Helper()
	topic, err := bus.OpenTopic(context.Background(), rawURL)
	if err != nil {
		t.Fatalf("OpenTopic(%q): %v", rawURL, err)
	}
	t.Cleanup(func() { _ = topic.Close() })
	return topic
}

func openSub(t testing.TB, rawURL string, opts ...bus.SubscriptionOption) *bus.Subscription {
	t.Helper()
	sub, err := bus.OpenSubscription(context.Background(), rawURL, opts...)
	if err != nil {
		t.Fatalf("OpenSubscription(%q): %v", rawURL, err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	return sub
}

func publish(t testing.TB, topic *bus.Topic, ms ...*bus.Message) {
	t.Helper()
	if err := topic.PublishBatch(context.Background(), ms); err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
}

// startReceive runs sub.Receive(h) in the background. The returned stop
// cancels it and returns Receive's result once it has returned, which is
// after every handler returned and its message was settled.
func startReceive(t testing.TB, sub *bus.Subscription, h bus.Handler) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Receive(ctx, h) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(waitTimeout):
				err = errors.New("Receive did not return after its context was cancelled")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// await receives from ch or fails the test after waitTimeout.
func await[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// within receives from ch in a handler, giving up after waitTimeout so that
// a failing test cannot leave a handler blocked (which would block Close).
func within[T any](ch <-chan T) (T, bool) {
	select {
	case v := <-ch:
		return v, true
	case <-time.After(waitTimeout):
		var zero T
		return zero, false
	}
}

func stats(t testing.TB, sub *bus.Subscription) bus.Stats {
	t.Helper()
	st, err := sub.Stats(context.Background())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return st
}

// wantStats checks the counts of Stats, and that OldestAge is positive
// exactly when a message is waiting or in flight.
func wantStats(t testing.TB, sub *bus.Subscription, want bus.Stats) {
	t.Helper()
	if got := stats(t, sub); !sameCounts(got, want) {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
}

// sameCounts reports whether got has want's counts and an OldestAge that
// is positive exactly when got counts a message waiting or in flight.
func sameCounts(got, want driver.Stats) bool {
	busy := got.Backlog+got.InFlight > 0
	return got.Backlog == want.Backlog && got.InFlight == want.InFlight && got.DeadLetters == want.DeadLetters &&
		(got.OldestAge > 0) == busy && got.OldestAge >= 0
}

// received is a snapshot of a received message, safe to use after its
// handler returned.
type received struct {
	ID, Key     string
	Body        []byte
	Attributes  map[string]string
	Attempt     int
	PublishTime time.Time
}

func snapshot(m *bus.Message) received {
	return received{
		ID: m.ID, Key: m.Key, Body: append([]byte(nil), m.Body...), Attributes: m.Attributes,
		Attempt: m.DeliveryAttempt, PublishTime: m.PublishTime,
	}
}

// collect receives n messages from sub, acking each, and returns them in
// handling order (concurrency 1 keeps delivery order).
func collect(t testing.TB, sub *bus.Subscription, n int) []received {
	t.Helper()
	ch := make(chan received, n)
	stop := startReceive(t, sub, func(_ context.Context, m *bus.Message) error {
		ch <- snapshot(m)
		return nil
	})
	out := make([]received, 0, n)
	for range n {
		out = append(out, await(t, ch, fmt.Sprintf("message %d of %d", len(out)+1, n)))
	}
	if err := stop(); err != nil {
		t.Fatalf("Receive: %v", err)
	}
	select {
	case m := <-ch:
		t.Fatalf("unexpected extra delivery %+v", m)
	default:
	}
	return out
}

// driverSub opens a driver-level subscription on b, for the rules the
// portable layer does not expose (it settles every message it delivers).
func driverSub(t testing.TB, b *inmemory.Broker, rawURL string) driver.Subscription {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	s, err := b.OpenSubscription(context.Background(), u)
	if err != nil {
		t.Fatalf("OpenSubscription(%q): %v", rawURL, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func driverTopic(t testing.TB, b *inmemory.Broker, rawURL string) driver.Topic {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := b.OpenTopic(context.Background(), u)
	if err != nil {
		t.Fatalf("OpenTopic(%q): %v", rawURL, err)
	}
	t.Cleanup(func() { _ = tp.Close() })
	return tp
}

// receiveBatch calls ReceiveBatch with a bounded wait.
func receiveBatch(t testing.TB, s driver.Subscription, max int) []*driver.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	ms, err := s.ReceiveBatch(ctx, max)
	if err != nil {
		t.Fatalf("ReceiveBatch: %v", err)
	}
	return ms
}

func ids(ms []*driver.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = fmt.Sprintf("%s#%d", m.ID, m.DeliveryAttempt)
	}
	return out
}
