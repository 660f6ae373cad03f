package idempotency_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/idempotency/memory"
)

const testLease = 60 * time.Millisecond

func begin(t *testing.T, s *idempotency.Store, key string) *idempotency.BeginResult {
	t.Helper()
	res, err := s.Begin(context.Background(), &idempotency.BeginRequest{
		Merchant: "m", Key: key, Fingerprint: "fp", ResourceID: "r", Lease: testLease,
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// A held lease outlives its nominal length; once stopped, it lapses and a
// retry takes the key over.
func TestHoldKeepsLeaseAlive(t *testing.T) {
	s := idempotency.New(memory.New())
	defer s.Close()
	first := begin(t, s, "k")
	if first.Outcome != idempotency.Acquired {
		t.Fatalf("first Begin: %v", first.Outcome)
	}
	var h idempotency.Hold
	s.Hold(context.Background(), &h, idempotency.HoldRequest{Merchant: "m", Key: "k", Token: first.Record.Token, Lease: testLease, OnError: func(_ context.Context, err error) {
		t.Errorf("renewal failed: %v", err)
	}})
	for range 5 { // 5 × lease/1.5: well past the lease without renewals
		time.Sleep(testLease * 2 / 3)
		if got := begin(t, s, "k").Outcome; got != idempotency.InProgress {
			t.Fatalf("while held: %v, want InProgress", got)
		}
	}
	h.Stop()
	h.Stop() // idempotent
	time.Sleep(testLease * 3 / 2)
	if got := begin(t, s, "k").Outcome; got != idempotency.Reacquired {
		t.Fatalf("after Stop and the lease: %v, want Reacquired", got)
	}
}

// When the record is taken away from the holder, the renewal error is
// reported once, with the holder's context, and renewals stop.
func TestHoldReportsLostLease(t *testing.T) {
	s := idempotency.New(memory.New())
	defer s.Close()
	res := begin(t, s, "k")
	type ctxKey struct{}
	ctx := context.WithValue(context.Background(), ctxKey{}, "holder")
	var mu sync.Mutex
	var errs []error
	var h idempotency.Hold
	s.Hold(ctx, &h, idempotency.HoldRequest{Merchant: "m", Key: "k", Token: res.Record.Token, Lease: testLease, Now: time.Now, OnError: func(c context.Context, err error) {
		if c.Value(ctxKey{}) != "holder" {
			t.Error("onErr did not get the holder's context")
		}
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}})
	defer h.Stop()
	if err := s.Release(context.Background(), "m", "k", res.Record.Token); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * testLease)
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 1 || !errors.Is(errs[0], idempotency.ErrLeaseLost) {
		t.Fatalf("reported %v, want one ErrLeaseLost", errs)
	}
}

// KeepAlive is Hold with a stop function; many concurrent holds are each
// renewed, and stopping some leaves the others held.
func TestKeepAliveMany(t *testing.T) {
	s := idempotency.New(memory.New())
	defer s.Close()
	const n = 50
	stops := make([]func(), n)
	for i := range n {
		key := string(rune('A' + i))
		res := begin(t, s, key)
		stops[i] = s.KeepAlive(context.Background(), idempotency.HoldRequest{Merchant: "m", Key: key, Token: res.Record.Token, Lease: testLease, OnError: func(_ context.Context, err error) {
			t.Errorf("renewal of %s failed: %v", key, err)
		}})
	}
	for i := 0; i < n; i += 2 {
		stops[i]()
	}
	time.Sleep(3 * testLease)
	for i := range n {
		got := begin(t, s, string(rune('A'+i))).Outcome
		want := idempotency.InProgress
		if i%2 == 0 {
			want = idempotency.Reacquired
		}
		if got != want {
			t.Errorf("key %d: %v, want %v", i, got, want)
		}
	}
	for i := 1; i < n; i += 2 {
		stops[i]()
	}
}
