package payments

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/mock"
)

// A writer died in the middle of a gateway call, leaving its claim on the
// payment. Client retries resume the payment meanwhile, sharing that claim;
// the provider refuses each attempt without processing it, but none may
// fail the payment while the dead writer's call could still land. Each
// used to extend the claim, so for as long as retries came (every 2 s in
// the soak test) the claim never lapsed and the client got
// payment_outcome_unknown for a minute. A shared attempt now gives the
// other claim back as it was: the first retry after it lapses fails the
// payment, a definite answer.
func TestFencingSharedAttemptsLetADeadClaimLapse(t *testing.T) {
	var ns atomic.Int64
	ns.Store(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, ns.Load()).UTC() }
	advance := func(d time.Duration) { ns.Add(int64(d)) }
	g, err := gateway.New("mock", mock.New())
	if err != nil {
		t.Fatal(err)
	}
	store := NewMemoryStore()
	p, err := New(WithGateway(g), WithStore(store), WithClock(now),
		WithRetryPolicy(RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ctx := context.Background()

	// The payment as the dead writer left it: processing on the mock, its
	// claim live for the attempt window.
	deadUntil := now().Add(p.AttemptWindow())
	pay := &Payment{ID: "pay_deadwriter", Merchant: "m", Amount: 1000, Currency: "EUR", PaymentMethod: "pm_card_processingError",
		CaptureMethod: CaptureAutomatic, Status: StatusProcessing, Gateway: "mock", Refunds: []Refund{},
		CreatedAt: now(), UpdatedAt: now(), AttemptUntil: deadUntil}
	if err := store.Create(ctx, pay); err != nil {
		t.Fatal(err)
	}
	resume := func() *Payment {
		t.Helper()
		cur, err := store.Get(ctx, "m", pay.ID)
		if err != nil {
			t.Fatal(err)
		}
		o, _ := p.resumeCreate(ctx, cur)
		if o.payment == nil {
			t.Fatalf("resume: no payment in %+v", o)
		}
		got, err := store.Get(ctx, "m", pay.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	// Retries every 2 s until the dead claim lapses: each leaves the
	// payment processing and the claim where the dead writer left it.
	for now().Before(deadUntil) {
		got := resume()
		if got.Status != StatusProcessing {
			t.Fatalf("a retry inside the dead writer's claim made the payment %s; want processing (its call could still land)", got.Status)
		}
		if !got.AttemptUntil.Equal(deadUntil) {
			t.Fatalf("a retry left the claim until %v; want the dead writer's %v (given back)", got.AttemptUntil, deadUntil)
		}
		advance(2 * time.Second)
	}
	if got := resume(); got.Status != StatusFailed {
		t.Fatalf("the first retry after the dead claim lapsed left the payment %s; want failed (never processed)", got.Status)
	}
}
