package idempotency

import (
	"context"
	"testing"
	"time"

	"github.com/payrail/payrail/idempotency/driver"
)

// nopDriver is a driver.Store whose calls all succeed: the renewer's tests
// exercise the renewer, not a store.
type nopDriver struct{ driver.Store }

func (nopDriver) Extend(context.Context, driver.ExtendRequest) error { return nil }
func (nopDriver) Close() error                                       { return nil }

func (r *renewer) state() (running bool, starts int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running, r.starts
}

// waitStopped waits for r's loop to exit.
func waitStopped(t *testing.T, r *renewer, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(time.Millisecond) {
		if running, _ := r.state(); !running {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the renewer still runs %v after its last hold", within)
		}
	}
}

// A stream of short holds, one after the other as a server's requests
// take and release their leases, is served by one renewer goroutine: the
// old renewer started one per hold (its loop saw the list empty and
// exited before the next request), and on a saturated one-core server that
// goroutine churn starved the connections the runtime found ready (POST
// /payments p99 56 ms under wrk, 16 ms without it).
func TestRenewerServesShortHoldsFromOneGoroutine(t *testing.T) {
	s := New(nopDriver{})
	const n = 2000
	for i := range n {
		var h Hold
		s.Hold(context.Background(), &h, HoldRequest{Merchant: "m", Key: "k", Token: "t", Lease: time.Minute})
		h.Stop()
		if i%10 == 0 {
			time.Sleep(50 * time.Microsecond) // let the loop run between holds
		}
	}
	if running, starts := s.leases.state(); !running || starts != 1 {
		t.Fatalf("after %d holds: running=%v, %d renewer goroutines started; want one, still running", n, running, starts)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close ends the loop at once, not at its next tick (10 s here).
	waitStopped(t, &s.leases, 2*time.Second)
}

// The renewer's goroutine does not outlive its holds for long: it exits
// once it has found no hold at two ticks in a row, and the next hold
// starts it again.
func TestRenewerExitsWhenIdle(t *testing.T) {
	s := New(nopDriver{})
	defer s.Close()
	const lease = 60 * time.Millisecond // a 10 ms tick
	var h Hold
	s.Hold(context.Background(), &h, HoldRequest{Merchant: "m", Key: "k", Token: "t", Lease: lease})
	h.Stop()
	waitStopped(t, &s.leases, 50*lease)
	s.Hold(context.Background(), &h, HoldRequest{Merchant: "m", Key: "k", Token: "t", Lease: lease})
	defer h.Stop()
	if running, starts := s.leases.state(); !running || starts != 2 {
		t.Fatalf("a hold after the renewer exited: running=%v, starts=%d; want running, 2", running, starts)
	}
}
