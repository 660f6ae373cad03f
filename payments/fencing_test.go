package payments_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/driver"
	"github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/payments"
)

// gatedGateway is the mock gateway with hostile timing under the test's
// control: the next Authorize can be held in flight (sent, not yet
// processed by the provider) until release, and the next ambiguous calls
// time out without the provider ever processing them.
type gatedGateway struct {
	*mock.Mock
	ambiguous  atomic.Int32 // calls still to fail ambiguously, unprocessed
	lookupDown atomic.Bool
	holdNext   atomic.Bool
	held       chan struct{} // closed when a held call is in flight
	release    chan struct{} // closed to let it through
}

func newGatedGateway() *gatedGateway {
	return &gatedGateway{Mock: mock.New(), held: make(chan struct{}), release: make(chan struct{})}
}

func (g *gatedGateway) Authorize(ctx context.Context, r *driver.AuthorizeRequest) (*driver.Transaction, error) {
	if g.ambiguous.Add(-1) >= 0 {
		return nil, &driver.Error{Kind: driver.KindTransient, Code: "timeout", Message: "timed out; outcome unknown"}
	}
	if g.holdNext.CompareAndSwap(true, false) {
		close(g.held)
		<-g.release
	}
	return g.Mock.Authorize(ctx, r)
}

func (g *gatedGateway) Lookup(ctx context.Context, key string) (*driver.Transaction, error) {
	if g.lookupDown.Load() {
		return nil, &driver.Error{Kind: driver.KindTransient, Code: "unavailable", Message: "lookup unavailable"}
	}
	return g.Mock.Lookup(ctx, key)
}

type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }
func (c *fakeClock) option() payments.Option { return payments.WithClock(c.now) }

// Two writers drive one payment at once: the reconciler resumes the
// authorization (its call is in flight at the provider) while the client's
// retry resumes it too, times out ambiguously and looks it up — the
// provider has not processed the in-flight call yet, so Lookup finds
// nothing. Before fencing, the retry failed the payment ("never
// processed"), the in-flight call then charged the card, and the payment
// stayed failed while charged. The retry must see the other writer's live
// claim and leave the payment processing; the charge then settles it.
func TestFencingConcurrentResumeIsNeverFailed(t *testing.T) {
	clock := newFakeClock()
	gg := newGatedGateway()
	g, err := gateway.New("mock", gg)
	if err != nil {
		t.Fatal(err)
	}
	st := newSettleCounter()
	p, err := payments.New(payments.WithGateway(g), payments.WithStore(st), clock.option(),
		payments.WithIdempotencyLease(time.Second),
		payments.WithRetryPolicy(payments.RetryPolicy{MaxAttempts: 1, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ctx := context.Background()
	req := recReq("order-fence")

	// 1. The client's request times out ambiguously and Lookup is down:
	// the payment is left processing, its outcome unknown.
	gg.ambiguous.Store(1)
	gg.lookupDown.Store(true)
	pay, err := p.Authorize(ctx, req)
	if !errors.Is(err, payments.ErrOutcomeUnknown) || pay == nil || pay.Status != payments.StatusProcessing {
		t.Fatalf("first attempt: %+v, %v; want processing, outcome unknown", pay, err)
	}
	gg.lookupDown.Store(false)

	// 2. The reconciler finds it never processed and resumes it; its
	// authorization is held in flight.
	clock.advance(3 * time.Second)
	rec := newRec(t, p)
	gg.holdNext.Store(true)
	var wg sync.WaitGroup
	var res payments.SweepResult
	var serr error
	wg.Go(func() { res, serr = rec.Sweep(ctx) })
	select {
	case <-gg.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the reconciler never called the gateway")
	}

	// 3. The client retries after its request's lease lapsed: the resumed
	// attempt times out ambiguously and Lookup finds nothing (the other
	// call is still in flight). It must not fail the payment.
	clock.advance(3 * time.Second)
	gg.ambiguous.Store(1)
	again, err := p.Authorize(ctx, req)
	if !errors.Is(err, payments.ErrOutcomeUnknown) || again == nil || again.Status != payments.StatusProcessing {
		t.Fatalf("concurrent retry: %+v, %v; want processing, outcome unknown (another attempt is in flight)", again, err)
	}

	// 4. The in-flight call reaches the provider and charges: the payment
	// is captured, charged once, settled once.
	close(gg.release)
	wg.Wait()
	if serr != nil || res.Settled != 1 {
		t.Fatalf("sweep %+v, %v; want 1 settled", res, serr)
	}
	got, err := p.Get(ctx, payments.GetRequest{Merchant: "m", PaymentID: pay.ID})
	if err != nil || got.Status != payments.StatusCaptured {
		t.Fatalf("final payment %+v, %v; want captured", got, err)
	}
	if n := gg.Processed(pay.ID + ":authorize"); n != 1 {
		t.Fatalf("provider processed %d authorizations, want 1", n)
	}
	if n := st.settlements(pay.ID); n != 1 {
		t.Fatalf("settled %d times, want 1", n)
	}
	// And the client's next retry (after its lease lapsed) answers the
	// capture.
	clock.advance(3 * time.Second)
	final, err := p.Authorize(ctx, req)
	if err != nil || final.Status != payments.StatusCaptured || final.ID != pay.ID {
		t.Fatalf("retry after settlement: %+v, %v", final, err)
	}
}

// A writer's own claim does not fence it off: a synchronous request whose
// attempts all fail without the provider processing them, confirmed by
// Lookup, still fails the payment at once (and releases nothing it does
// not own).
func TestFencingOwnClaimStillFails(t *testing.T) {
	gg := newGatedGateway()
	g, err := gateway.New("mock", gg)
	if err != nil {
		t.Fatal(err)
	}
	p, err := payments.New(payments.WithGateway(g),
		payments.WithRetryPolicy(payments.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	gg.ambiguous.Store(2)
	pay, err := p.Authorize(context.Background(), recReq("order-own"))
	if !errors.Is(err, payments.ErrGatewayUnavailable) || pay == nil || pay.Status != payments.StatusFailed {
		t.Fatalf("%+v, %v; want failed, gateway unavailable", pay, err)
	}
	if n := gg.Processed(pay.ID + ":authorize"); n != 0 {
		t.Fatalf("processed %d", n)
	}
}

// When Lookup cannot answer, the reconciler resumes the authorization with
// the payment's own key (safe while the provider honours it): a payment
// the provider did charge is settled from the replayed answer, charged
// once, instead of being touched and retried forever.
func TestReconcilerResumesWhenLookupFails(t *testing.T) {
	p, rg, st := recSetup(t)
	ctx := context.Background()
	rg.lose.Store(true)
	rg.lookupDown.Store(true)
	pay, err := p.Authorize(ctx, recReq("order-lookup-down"))
	if !errors.Is(err, payments.ErrOutcomeUnknown) {
		t.Fatalf("%+v, %v", pay, err)
	}
	rg.lose.Store(false) // the provider answers again; its Lookup stays down
	res, err := newRec(t, p).Sweep(ctx)
	if err != nil || res.Settled != 1 {
		t.Fatalf("sweep %+v, %v", res, err)
	}
	got, _ := p.Get(ctx, payments.GetRequest{Merchant: "m", PaymentID: pay.ID})
	if got.Status != payments.StatusCaptured || rg.Processed(pay.ID+":authorize") != 1 || st.settlements(pay.ID) != 1 {
		t.Fatalf("%+v processed %d settled %d", got, rg.Processed(pay.ID+":authorize"), st.settlements(pay.ID))
	}
}

// Past the provider's idempotency window a payment whose outcome still
// cannot be established moves to requires_review with its reason, is
// counted, and is never resent nor retried again.
func TestReconcilerMovesUnknownToReviewAfterMaxAge(t *testing.T) {
	clock := newFakeClock()
	reader := sdkmetric.NewManualReader()
	p, rg, _ := recSetup(t, clock.option(),
		payments.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	ctx := context.Background()
	rg.lose.Store(true)
	rg.lookupDown.Store(true)
	pay, _ := p.Authorize(ctx, recReq("order-review"))
	rec := newRec(t, p, payments.WithReconcileMaxAge(24*time.Hour), payments.WithReconcileBackoff(time.Minute, time.Hour))
	clock.advance(time.Second)
	if res, err := rec.Sweep(ctx); err != nil || res.Unresolved != 1 {
		t.Fatalf("young: %+v %v", res, err)
	}
	clock.advance(25 * time.Hour)
	authorizations := rg.Calls("authorize")
	res, err := rec.Sweep(ctx)
	if err != nil || res.Review != 1 || res.Settled != 0 {
		t.Fatalf("old: %+v %v; want 1 moved to review", res, err)
	}
	if rg.Calls("authorize") != authorizations {
		t.Fatal("an authorization was resent past the provider's idempotency window")
	}
	got, _ := p.Get(ctx, payments.GetRequest{Merchant: "m", PaymentID: pay.ID})
	if got.Status != payments.StatusRequiresReview || got.FailureCode != payments.ReviewOutcomeUnknown {
		t.Fatalf("%+v; want requires_review with reason", got)
	}
	clock.advance(48 * time.Hour)
	lookups := rg.Calls("lookup")
	if res, err := rec.Sweep(ctx); err != nil || res != (payments.SweepResult{}) || rg.Calls("lookup") != lookups {
		t.Fatalf("a payment in review was swept again: %+v %v", res, err)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	if n := sumCounter(rm, payments.MetricReviews, attribute.String("payrail.review.reason", payments.ReviewOutcomeUnknown)); n != 1 {
		t.Fatalf("%s = %d, want 1", payments.MetricReviews, n)
	}
}

// Without a Reconciler the worker's recovery sweep cannot look a payment
// up: one processing for longer than it may be resent blind moves to
// review instead of being warned about forever.
func TestRecoveryWithoutReconcilerMovesOldProcessingToReview(t *testing.T) {
	clock := newFakeClock()
	p, rg, _ := recSetup(t, clock.option())
	ctx := context.Background()
	rg.lose.Store(true)
	rg.lookupDown.Store(true)
	pay, _ := p.Authorize(ctx, recReq("order-old"))
	w, err := payments.NewWorker(p, payments.WithRecovery(time.Hour, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	clock.advance(13 * time.Hour)
	if _, err := w.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := p.Get(ctx, payments.GetRequest{Merchant: "m", PaymentID: pay.ID})
	if got.Status != payments.StatusRequiresReview || got.FailureCode != payments.ReviewOutcomeUnknown {
		t.Fatalf("%+v; want requires_review", got)
	}
}

func sumCounter(rm metricdata.ResourceMetrics, name string, want attribute.KeyValue) int64 {
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			if d, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, dp := range d.DataPoints {
					if v, ok := dp.Attributes.Value(want.Key); ok && v == want.Value {
						n += dp.Value
					}
				}
			}
		}
	}
	return n
}

// A process that dies in the middle of a gateway call leaves its claim
// behind. Another process's Reconciler leaves the payment alone while that
// claim may be live (the call could still reach the provider) and resumes
// it once AttemptWindow has passed: settled, charged once.
func TestFencingDeadWritersClaimLapsesAfterAttemptWindow(t *testing.T) {
	clock := newFakeClock()
	gg := newGatedGateway()
	g, err := gateway.New("mock", gg)
	if err != nil {
		t.Fatal(err)
	}
	st := newSettleCounter()
	policy := payments.WithRetryPolicy(payments.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	dying, err := payments.New(payments.WithGateway(g), payments.WithStore(st), clock.option(), policy)
	if err != nil {
		t.Fatal(err)
	}
	other, err := payments.New(payments.WithGateway(g), payments.WithStore(st), clock.option(), policy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close() })
	window := other.AttemptWindow()
	if window <= 0 || window != dying.AttemptWindow() {
		t.Fatalf("AttemptWindow %v / %v; want the same positive window", window, dying.AttemptWindow())
	}
	ctx := context.Background()

	// The dying process's call is held in flight and never returns in time.
	gg.holdNext.Store(true)
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = dying.Authorize(ctx, recReq("order-dead-writer")) })
	t.Cleanup(func() { close(gg.release); wg.Wait(); _ = dying.Close() })
	select {
	case <-gg.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the first process never called the gateway")
	}
	pending, err := other.Unfinished(ctx, clock.now().Add(time.Hour), 10)
	if err != nil || len(pending) != 1 {
		t.Fatalf("unfinished %v, %v; want the one processing payment", pending, err)
	}
	id := pending[0].ID

	rec := newRec(t, other)
	calls := gg.Calls("authorize")
	clock.advance(window - time.Second)
	res, err := rec.Sweep(ctx)
	if err != nil || res.Deferred != 1 {
		t.Fatalf("inside the window: %+v, %v; want 1 deferred", res, err)
	}
	if got, _ := other.Get(ctx, payments.GetRequest{Merchant: "m", PaymentID: id}); got.Status != payments.StatusProcessing || gg.Calls("authorize") != calls || gg.Calls("lookup") != 0 {
		t.Fatalf("inside the window: %s after %d calls, %d lookups; want processing, untouched", got.Status, gg.Calls("authorize")-calls, gg.Calls("lookup"))
	}

	clock.advance(2 * time.Second)
	res, err = rec.Sweep(ctx)
	if err != nil || res.Settled != 1 {
		t.Fatalf("after the window: %+v, %v; want 1 settled", res, err)
	}
	got, _ := other.Get(ctx, payments.GetRequest{Merchant: "m", PaymentID: id})
	if got.Status != payments.StatusCaptured || gg.Processed(id+":authorize") != 1 || st.settlements(id) != 1 {
		t.Fatalf("%s processed %d settled %d; want captured once", got.Status, gg.Processed(id+":authorize"), st.settlements(id))
	}
}

// Two processes' Reconcilers sweep the same payment, which the provider
// keeps refusing, at the same moments. Sharing attempts, each extended a
// claim neither could release and neither ever failed it; claiming
// exclusively, they take turns and the payment fails after the retry
// policy's attempts.
func TestFencingConcurrentReconcilersFailARefusedPayment(t *testing.T) {
	p, rg, st := recSetup(t) // 2 attempts
	ctx := context.Background()
	rg.drop.Store(true)
	rg.lookupDown.Store(true)
	pay, err := p.Authorize(ctx, recReq("order-refused-twice"))
	if !errors.Is(err, payments.ErrOutcomeUnknown) {
		t.Fatalf("%v %+v", err, pay)
	}
	rg.drop.Store(false)
	rg.lookupDown.Store(false)
	rg.meet = make(chan struct{})
	rg.refuse.Store(true)
	recs := []*payments.Reconciler{newRec(t, p, payments.WithReconcileBackoff(time.Nanosecond, time.Nanosecond)),
		newRec(t, p, payments.WithReconcileBackoff(time.Nanosecond, time.Nanosecond))}
	for round := 0; round < 10; round++ {
		var wg sync.WaitGroup
		for _, r := range recs {
			wg.Go(func() { _, _ = r.Sweep(ctx) })
		}
		wg.Wait()
		if got, _ := p.Get(ctx, payments.GetRequest{Merchant: "m", PaymentID: pay.ID}); got.Status != payments.StatusProcessing {
			break
		}
	}
	got, _ := p.Get(ctx, payments.GetRequest{Merchant: "m", PaymentID: pay.ID})
	if got.Status != payments.StatusFailed || st.settlements(pay.ID) != 1 || rg.Processed(pay.ID+":authorize") != 0 {
		t.Fatalf("after 10 rounds of two concurrent sweeps: %s (attempts %d), settled %d; want failed once",
			got.Status, got.ReconcileAttempts, st.settlements(pay.ID))
	}
}
