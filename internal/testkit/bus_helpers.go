package testkit

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
)

// busStopTimeout bounds how long Receive may take to return once its context
// is cancelled or its subscription closed (handlers in the suite are
// themselves bounded, so this only catches a stuck driver). Generous: under
// the race detector, with the whole CI run on 2 cores, a Service Bus peer
// settling a held session's messages took over 30 s once.
const busStopTimeout = 60 * time.Second

// busHandlerWait bounds every wait inside a handler, so that a failing case
// never leaves a handler blocked (which would block Close).
const busHandlerWait = 20 * time.Second

// busDelivery is a snapshot of a received message, safe to use after its
// handler returned.
type busDelivery struct {
	ID, Key     string
	Body        []byte
	Attrs       map[string]string
	Attempt     int
	PublishTime time.Time
	At          time.Time
	Consumer    int
}

func busSnap(m *bus.Message, consumer int) busDelivery {
	return busDelivery{
		ID: m.ID, Key: m.Key, Body: append([]byte(nil), m.Body...), Attrs: maps.Clone(m.Attributes),
		Attempt: m.DeliveryAttempt, PublishTime: m.PublishTime, At: time.Now(), Consumer: consumer,
	}
}

func (d busDelivery) String() string {
	return fmt.Sprintf("%s(key %q, attempt %d)", d.ID, d.Key, d.Attempt)
}

// newPair makes a pair and registers the topic's Close.
func (s *busSuite) newPair(t testing.TB, ctx context.Context, cfg PairConfig) BusPair {
	t.Helper()
	p, err := s.h.MakePair(ctx, t, cfg)
	if err != nil {
		t.Fatalf("MakePair(%+v): %v", cfg, err)
	}
	if p.Topic == nil || p.OpenSubscription == nil {
		t.Fatalf("MakePair returned a pair without Topic or OpenSubscription")
	}
	if cfg.FanOut && p.OpenSecondSubscription == nil {
		t.Fatalf("MakePair with FanOut returned no OpenSecondSubscription")
	}
	t.Cleanup(func() { _ = p.Topic.Close() })
	return p
}

type busOpener = func(ctx context.Context, opts ...bus.SubscriptionOption) (*bus.Subscription, error)

// busOpenSub opens a subscription and registers its Close.
func busOpenSub(t testing.TB, ctx context.Context, open busOpener, opts ...bus.SubscriptionOption) *bus.Subscription {
	t.Helper()
	sub, err := open(ctx, opts...)
	if err != nil {
		t.Fatalf("open subscription: %v", err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	return sub
}

// busStartReceive runs sub.Receive(h) in the background. stop cancels it and
// returns Receive's result once it has returned.
func busStartReceive(t testing.TB, sub *bus.Subscription, h bus.Handler) (stop func() error) {
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
			case <-time.After(busStopTimeout):
				err = fmt.Errorf("Receive did not return within %v of its context being cancelled", busStopTimeout)
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Receive: %v", err)
		}
	})
	return stop
}

// busRecorder is a handler that snapshots every delivery into a channel and
// settles it with result (nil: ack).
type busRecorder struct {
	ch     chan busDelivery
	result func(m *bus.Message) error
}

func newBusRecorder(n int, result func(m *bus.Message) error) *busRecorder {
	return &busRecorder{ch: make(chan busDelivery, n), result: result}
}

func (r *busRecorder) handler(consumer int) bus.Handler {
	return func(ctx context.Context, m *bus.Message) error {
		select {
		case r.ch <- busSnap(m, consumer):
		case <-time.After(busHandlerWait):
		}
		if r.result == nil {
			return nil
		}
		return r.result(m)
	}
}

// busNext waits for one delivery, failing the case when ctx ends first.
func busNext(t testing.TB, ctx context.Context, ch <-chan busDelivery, what string) busDelivery {
	t.Helper()
	select {
	case d := <-ch:
		return d
	case <-ctx.Done():
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// busQuiet fails the case if anything arrives on ch within d.
func busQuiet(t testing.TB, ch <-chan busDelivery, d time.Duration, why string) {
	t.Helper()
	select {
	case got := <-ch:
		t.Fatalf("unexpected busDelivery %v: %s", got, why)
	case <-time.After(d):
	}
}

// busCollectIDs receives until every id in want has been delivered at least
// once, returning every delivery in arrival order.
func busCollectIDs(t testing.TB, ctx context.Context, ch <-chan busDelivery, want map[string]bool) []busDelivery {
	t.Helper()
	missing := maps.Clone(want)
	var out []busDelivery
	for len(missing) > 0 {
		select {
		case d := <-ch:
			out = append(out, d)
			delete(missing, d.ID)
		case <-ctx.Done():
			t.Fatalf("timed out: %d of %d messages never delivered (e.g. %v)", len(missing), len(want), busFirstKeys(missing, 3))
		}
	}
	return out
}

func busFirstKeys(m map[string]bool, n int) []string {
	var out []string
	for k := range m {
		if len(out) == n {
			break
		}
		out = append(out, k)
	}
	return out
}

// busEventually polls f every 100ms until it returns nil or ctx ends, then
// fails with f's last error.
func busEventually(t testing.TB, ctx context.Context, what string, f func() error) {
	t.Helper()
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: never happened: %v", what, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// busFastRetry makes handler errors retry almost at once.
func busFastRetry() bus.SubscriptionOption {
	return bus.WithRetryBackoff(func(int) time.Duration { return 20 * time.Millisecond })
}

// busWaitReturn waits for ch to be closed or busHandlerWait to pass, inside a
// handler.
func busWaitReturn(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-time.After(busHandlerWait):
		return false
	}
}

var errBusBoom = errors.New("testkit: handler failure")
