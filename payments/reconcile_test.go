package payments_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/driver"
	"github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/payments"
)

// recGateway is the mock gateway with the failures reconciliation exists
// for: lose (the provider processes the authorization, the answer is lost:
// a timeout after sending), drop (the request fails ambiguously without
// the provider ever receiving it) and lookupDown.
type recGateway struct {
	*mock.Mock
	lose, drop, lookupDown atomic.Bool
	refuse                 atomic.Bool // fail every authorization, unprocessed
	mu                     sync.Mutex  // serialises the mock's authorizations
	// meet, when set, holds each refused authorization until a second one
	// is in flight too (or 100 ms pass): concurrent writers overlap.
	meet chan struct{}
}

func (g *recGateway) Authorize(ctx context.Context, r *driver.AuthorizeRequest) (*driver.Transaction, error) {
	if g.drop.Load() {
		return nil, &driver.Error{Kind: driver.KindTransient, Code: "timeout", Message: "timed out; outcome unknown"}
	}
	if g.refuse.Load() {
		if g.meet != nil {
			select {
			case g.meet <- struct{}{}:
			case <-g.meet:
			case <-time.After(100 * time.Millisecond):
			}
		}
		return nil, &driver.Error{Kind: driver.KindTransient, Code: "processing_error", NotProcessed: true,
			Message: "an error occurred while processing the card"}
	}
	g.mu.Lock()
	tx, err := g.Mock.Authorize(ctx, r)
	g.mu.Unlock()
	if err == nil && g.lose.Load() {
		return nil, &driver.Error{Kind: driver.KindTransient, Code: "timeout", Message: "timed out after sending; outcome unknown"}
	}
	return tx, err
}

func (g *recGateway) Lookup(ctx context.Context, key string) (*driver.Transaction, error) {
	if g.lookupDown.Load() {
		return nil, &driver.Error{Kind: driver.KindTransient, Code: "unavailable", NotProcessed: true}
	}
	return g.Mock.Lookup(ctx, key)
}

// settleCounter is the memory store counting, per payment, the updates that
// moved it out of processing: exactly-once settlement means exactly one.
type settleCounter struct {
	*payments.MemoryStore
	mu      sync.Mutex
	last    map[string]payments.Status
	settled map[string]int
}

func newSettleCounter() *settleCounter {
	return &settleCounter{MemoryStore: payments.NewMemoryStore(), last: map[string]payments.Status{}, settled: map[string]int{}}
}

func (s *settleCounter) Create(ctx context.Context, p *payments.Payment) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.MemoryStore.Create(ctx, p)
	if err == nil {
		s.last[p.ID] = p.Status
	}
	return err
}

func (s *settleCounter) Update(ctx context.Context, p *payments.Payment) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.MemoryStore.Update(ctx, p)
	if err == nil {
		if s.last[p.ID] == payments.StatusProcessing && p.Status != payments.StatusProcessing {
			s.settled[p.ID]++
		}
		s.last[p.ID] = p.Status
	}
	return err
}

func (s *settleCounter) settlements(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.settled[id]
}

func recSetup(t *testing.T, opts ...payments.Option) (*payments.Processor, *recGateway, *settleCounter) {
	t.Helper()
	rg := &recGateway{Mock: mock.New()}
	g, err := gateway.New("mock", rg)
	if err != nil {
		t.Fatal(err)
	}
	st := newSettleCounter()
	p, err := payments.New(append([]payments.Option{
		payments.WithGateway(g), payments.WithStore(st),
		payments.WithRetryPolicy(payments.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p, rg, st
}

func recReq(key string) payments.AuthorizeRequest {
	return payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: key, Amount: 4200, Currency: "EUR", PaymentMethod: "pm_card_visa"}
}

func newRec(t *testing.T, p *payments.Processor, opts ...payments.ReconcilerOption) *payments.Reconciler {
	t.Helper()
	r, err := payments.NewReconciler(p, append([]payments.ReconcilerOption{payments.WithReconcileStaleAfter(time.Nanosecond)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// A timeout after the provider charged, with Lookup down: the payment is
// left processing (outcome unknown). Three reconcilers race to settle it:
// it is captured, settled exactly once, charged exactly once, and a client
// retry with the same key then returns it.
func TestReconcilerSettlesAmbiguousTimeoutExactlyOnce(t *testing.T) {
	p, rg, st := recSetup(t, payments.WithIdempotencyLease(50*time.Millisecond))
	ctx := context.Background()
	rg.lose.Store(true)
	rg.lookupDown.Store(true)
	pay, err := p.Authorize(ctx, recReq("order-1"))
	if !errors.Is(err, payments.ErrOutcomeUnknown) || pay.Status != payments.StatusProcessing {
		t.Fatalf("%v %+v", err, pay)
	}
	if rg.Processed(pay.ID+":authorize") != 1 {
		t.Fatal("the provider should have processed the authorization once")
	}
	rg.lookupDown.Store(false)

	var settled atomic.Int64
	var wg sync.WaitGroup
	for range 3 {
		r := newRec(t, p)
		wg.Go(func() {
			res, err := r.Sweep(ctx)
			if err != nil {
				t.Error(err)
			}
			settled.Add(int64(res.Settled))
		})
	}
	wg.Wait()
	got, err := p.Get(ctx, payments.GetRequest{Merchant: "m", PaymentID: pay.ID})
	if err != nil || got.Status != payments.StatusCaptured || got.GatewayReference == "" || got.AmountCaptured != 4200 {
		t.Fatalf("after reconciliation: %v %+v", err, got)
	}
	if n := st.settlements(pay.ID); n != 1 {
		t.Fatalf("settled %d times, want exactly once", n)
	}
	if settled.Load() < 1 {
		t.Fatal("no reconciler reported the settlement")
	}
	if n := rg.Processed(pay.ID + ":"); n != 1 {
		t.Fatalf("provider processed %d operations, want 1", n)
	}
	time.Sleep(60 * time.Millisecond) // the request's idempotency lease lapses
	again, err := p.Authorize(ctx, recReq("order-1"))
	if err != nil || again.ID != pay.ID || again.Status != payments.StatusCaptured {
		t.Fatalf("client retry: %v %+v", err, again)
	}
	if n := rg.Processed(pay.ID + ":"); n != 1 || st.settlements(pay.ID) != 1 {
		t.Fatalf("retry after reconciliation charged or settled again: %d", n)
	}
}

// The request never reached the provider (but the failure was ambiguous):
// Lookup finds nothing, so the reconciler resumes the authorization with
// the same idempotency key, which charges once.
func TestReconcilerResumesWhatTheGatewayNeverProcessed(t *testing.T) {
	p, rg, st := recSetup(t)
	ctx := context.Background()
	rg.drop.Store(true)
	rg.lookupDown.Store(true)
	pay, err := p.Authorize(ctx, recReq("order-2"))
	if !errors.Is(err, payments.ErrOutcomeUnknown) {
		t.Fatalf("%v %+v", err, pay)
	}
	rg.drop.Store(false)
	rg.lookupDown.Store(false)
	res, err := newRec(t, p).Sweep(ctx)
	if err != nil || res.Settled != 1 {
		t.Fatalf("%+v %v", res, err)
	}
	got, _ := p.Get(ctx, payments.GetRequest{Merchant: "m", PaymentID: pay.ID})
	if got.Status != payments.StatusCaptured || rg.Processed(pay.ID+":authorize") != 1 || st.settlements(pay.ID) != 1 {
		t.Fatalf("%+v processed %d", got, rg.Processed(pay.ID+":authorize"))
	}
}

// A payment the provider keeps refusing (a transient error it confirms it
// never processed) is failed after the retry policy's attempts, counted
// across every Reconciler that tried it: several processes, each with its
// own Reconciler, and restarts. Counted per Reconciler in memory, the
// count restarted with every process and the payment stayed processing
// until the maximum age (the chaos soak caught it with two instances).
func TestReconcilerAttemptsAreCountedAcrossProcesses(t *testing.T) {
	p, rg, st := recSetup(t) // the retry policy allows 2 attempts
	ctx := context.Background()
	rg.drop.Store(true)
	rg.lookupDown.Store(true)
	pay, err := p.Authorize(ctx, recReq("order-refused"))
	if !errors.Is(err, payments.ErrOutcomeUnknown) {
		t.Fatalf("%v %+v", err, pay)
	}
	rg.drop.Store(false)
	rg.lookupDown.Store(false)
	rg.refuse.Store(true)

	// A first process's Reconciler tries once; the payment stays
	// processing, the attempt is stored with it.
	res, err := newRec(t, p).Sweep(ctx)
	if err != nil || res.Unresolved != 1 {
		t.Fatalf("first reconciler: %+v %v; want 1 unresolved", res, err)
	}
	got, _ := p.Get(ctx, payments.GetRequest{Merchant: "m", PaymentID: pay.ID})
	if got.Status != payments.StatusProcessing || got.ReconcileAttempts != 1 {
		t.Fatalf("after one attempt: %s, %d attempts stored; want processing, 1", got.Status, got.ReconcileAttempts)
	}
	// Another process's (or a restarted) Reconciler makes the last
	// attempt the policy allows: the refusal fails the payment.
	res, err = newRec(t, p).Sweep(ctx)
	if err != nil || res.Settled != 1 {
		t.Fatalf("second reconciler: %+v %v; want the payment failed", res, err)
	}
	got, _ = p.Get(ctx, payments.GetRequest{Merchant: "m", PaymentID: pay.ID})
	if got.Status != payments.StatusFailed || got.FailureCode != string(payments.CodeGatewayUnavailable) || st.settlements(pay.ID) != 1 {
		t.Fatalf("%s (%s), settled %d; want failed once, gateway_unavailable", got.Status, got.FailureCode, st.settlements(pay.ID))
	}
	if rg.Processed(pay.ID+":authorize") != 0 {
		t.Fatal("the provider processed a refused payment")
	}
}

// While the outcome stays unknown the payment stays processing and is
// retried only after its back-off.
func TestReconcilerBacksOffWhileUnknown(t *testing.T) {
	p, rg, _ := recSetup(t)
	ctx := context.Background()
	rg.lose.Store(true)
	rg.lookupDown.Store(true)
	pay, _ := p.Authorize(ctx, recReq("order-3"))
	r := newRec(t, p, payments.WithReconcileBackoff(time.Hour, 2*time.Hour))
	res, err := r.Sweep(ctx)
	if err != nil || res.Unresolved != 1 || res.Settled != 0 {
		t.Fatalf("first sweep %+v %v", res, err)
	}
	got, _ := p.Get(ctx, payments.GetRequest{Merchant: "m", PaymentID: pay.ID})
	if got.Status != payments.StatusProcessing || !got.UpdatedAt.After(pay.UpdatedAt) {
		t.Fatalf("unresolved payment %+v (was updated %v)", got, pay.UpdatedAt)
	}
	lookups := rg.Calls("lookup")
	res, err = r.Sweep(ctx)
	if err != nil || res.Deferred != 1 || res.Unresolved != 0 {
		t.Fatalf("second sweep %+v %v", res, err)
	}
	if rg.Calls("lookup") != lookups {
		t.Fatal("a payment in back-off was looked up")
	}
}

// A payment the gateway never processed, older than the maximum age, is
// failed rather than charged days late.
func TestReconcilerFailsOldNeverProcessed(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()).UTC() }
	p, rg, st := recSetup(t, payments.WithClock(clock))
	ctx := context.Background()
	rg.drop.Store(true)
	rg.lookupDown.Store(true)
	pay, _ := p.Authorize(ctx, recReq("order-4"))
	rg.drop.Store(false)
	rg.lookupDown.Store(false)
	now.Add(int64(25 * time.Hour))
	res, err := newRec(t, p, payments.WithReconcileMaxAge(24*time.Hour)).Sweep(ctx)
	if err != nil || res.Settled != 1 {
		t.Fatalf("%+v %v", res, err)
	}
	got, _ := p.Get(ctx, payments.GetRequest{Merchant: "m", PaymentID: pay.ID})
	if got.Status != payments.StatusFailed || rg.Processed(pay.ID) != 0 || st.settlements(pay.ID) != 1 {
		t.Fatalf("%+v", got)
	}
}

// A worker given WithReconciler runs it and leaves processing payments to
// it: the recovery sweep no longer re-sends them blind.
func TestWorkerWithReconciler(t *testing.T) {
	p, rg, st := recSetup(t)
	ctx := context.Background()
	rg.lose.Store(true)
	rg.lookupDown.Store(true)
	pay, _ := p.Authorize(ctx, recReq("order-5"))
	rec := newRec(t, p, payments.WithReconcileInterval(10*time.Millisecond), payments.WithReconcileBackoff(time.Millisecond, 5*time.Millisecond))
	w, err := payments.NewWorker(p, payments.WithReconciler(rec), payments.WithRecovery(time.Hour, time.Nanosecond))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := w.Recover(ctx); err != nil || n != 0 {
		t.Fatalf("recovery sweep republished %d processing payments (%v)", n, err)
	}
	rg.lookupDown.Store(false)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _ := p.Get(ctx, payments.GetRequest{Merchant: "m", PaymentID: pay.ID})
		if got.Status == payments.StatusCaptured {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not reconciled: %+v", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if rg.Processed(pay.ID+":authorize") != 1 || st.settlements(pay.ID) != 1 {
		t.Fatal("charged or settled more than once")
	}
}

func TestNewReconcilerValidates(t *testing.T) {
	p, _, _ := recSetup(t)
	for _, o := range []payments.ReconcilerOption{
		payments.WithReconcileInterval(0), payments.WithReconcileStaleAfter(-1), payments.WithReconcileMaxAge(0),
		payments.WithReconcileBatch(0, 1), payments.WithReconcileBatch(1, 0), payments.WithReconcileBackoff(time.Second, time.Millisecond),
	} {
		if _, err := payments.NewReconciler(p, o); err == nil {
			t.Error("invalid option accepted")
		}
	}
	if _, err := payments.NewReconciler(nil); err == nil {
		t.Error("nil processor accepted")
	}
}
