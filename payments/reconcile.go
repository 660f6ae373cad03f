package payments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/payrail/payrail/gateway"
)

// Reconciler settles payments left processing with an unknown outcome — a
// gateway call that timed out after the request was sent, a 5xx of unknown
// effect, a crash between calling the gateway and storing its answer — in
// the background, through the gateway's Lookup with the payment's own
// idempotency key:
//
//   - Lookup finds the authorization: the payment is settled with the
//     gateway's answer (authorized, captured or declined).
//   - Lookup says the gateway never processed the key: the authorization is
//     resumed at the same gateway with the same idempotency key, exactly as
//     a client retry would, so that a concurrent retry, redelivery or
//     second reconciler can never make the provider charge twice. Payments
//     older than the maximum age (default 24h, the usual lifetime of a
//     provider's idempotency keys) are failed instead: nothing was charged.
//   - Lookup cannot answer (any other error): the authorization is resumed
//     with the same key too — safe for the same reason — and a failure
//     leaves the payment processing, retried with exponential back-off.
//   - Past the maximum age, when the provider may have forgotten the key,
//     nothing is resent: a payment Lookup still cannot answer for moves to
//     StatusRequiresReview (reason ReviewOutcomeUnknown, metric
//     MetricReviews, alert PayrailPaymentsNeedReview), never an endless
//     loop.
//
// Settlement is exactly once: the payment store's optimistic concurrency
// lets only the first of concurrent settlements move the payment out of
// processing; the others find it settled and change nothing. Several
// reconcilers (one per replica) may run at once.
//
// Only payments that have not changed for the stale threshold are touched,
// so that requests and workers still working on a payment are left alone;
// the default threshold exceeds the longest a synchronous request can spend
// on the gateway (attempts × (gateway timeout + back-off), twice).
type Reconciler struct {
	p           *Processor
	log         *slog.Logger
	every       time.Duration
	staleAfter  time.Duration
	maxAge      time.Duration
	batch       int
	concurrency int
	backoff     RetryPolicy

	mu    sync.Mutex
	tries map[string]*reconcileTry // by payment id, for back-off
}

type reconcileTry struct {
	attempts int
	next     time.Time // not before
	last     time.Time // last listed or attempted
}

// ReconcilerOption configures a Reconciler.
type ReconcilerOption func(*Reconciler)

// WithReconcileInterval sets how often Run sweeps (default: the processor's
// RecoveryPolicy, 30s).
func WithReconcileInterval(d time.Duration) ReconcilerOption {
	return func(r *Reconciler) { r.every = d }
}

// WithReconcileStaleAfter sets how long a payment must have stayed
// processing, unchanged, before the reconciler touches it (default:
// 2 × attempts × (gateway timeout + maximum back-off) + 30s, at least 2m).
func WithReconcileStaleAfter(d time.Duration) ReconcilerOption {
	return func(r *Reconciler) { r.staleAfter = d }
}

// WithReconcileMaxAge sets the age (since creation) after which a payment
// is no longer resumed with its gateway idempotency key: the gateway never
// processed it, it is failed; its outcome is still unknown, it moves to
// review (default: the processor's RecoveryPolicy.MaxAge, 24h).
func WithReconcileMaxAge(d time.Duration) ReconcilerOption {
	return func(r *Reconciler) { r.maxAge = d }
}

// WithReconcileBackoff sets the back-off between attempts on the same
// payment: initial, doubling up to max (defaults 30s and 30m).
func WithReconcileBackoff(initial, max time.Duration) ReconcilerOption {
	return func(r *Reconciler) { r.backoff.InitialBackoff, r.backoff.MaxBackoff = initial, max }
}

// WithReconcileBatch sets how many stale payments a sweep examines, oldest
// first (default 500), and how many it reconciles at once (default 4).
func WithReconcileBatch(batch, concurrency int) ReconcilerOption {
	return func(r *Reconciler) { r.batch, r.concurrency = batch, concurrency }
}

// WithReconcileLogger sets the reconciler's logger (default: the processor's).
func WithReconcileLogger(l *slog.Logger) ReconcilerOption {
	return func(r *Reconciler) { r.log = l }
}

// NewReconciler returns a reconciler for p's payments.
func NewReconciler(p *Processor, opts ...ReconcilerOption) (*Reconciler, error) {
	if err := p.usable(); err != nil {
		return nil, fmt.Errorf("payments: NewReconciler: %w", err)
	}
	r := &Reconciler{
		p: p, log: p.log, every: p.recovery.ReconcileInterval, staleAfter: p.recovery.ReconcileStaleAfter,
		maxAge: p.recovery.MaxAge, batch: 500, concurrency: 4,
		backoff: RetryPolicy{InitialBackoff: 30 * time.Second, MaxBackoff: 30 * time.Minute, Multiplier: 2, Jitter: 0.2},
		tries:   map[string]*reconcileTry{},
	}
	for _, o := range opts {
		o(r)
	}
	switch {
	case r.every <= 0, r.staleAfter <= 0, r.maxAge <= 0:
		return nil, errors.New("payments: reconciler interval, stale threshold and maximum age must be positive")
	case r.batch <= 0, r.concurrency <= 0:
		return nil, errors.New("payments: reconciler batch and concurrency must be positive")
	case r.backoff.InitialBackoff <= 0 || r.backoff.MaxBackoff < r.backoff.InitialBackoff:
		return nil, errors.New("payments: reconciler back-off must be positive, max at least initial")
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r, nil
}

// WithReconciler makes the worker run r alongside it (Run starts and stops
// it) and leaves processing payments to r: the recovery sweep then only
// republishes pending payments, so stale processing payments are settled by
// Lookup rather than by re-sending the authorization blind.
func WithReconciler(r *Reconciler) WorkerOption { return func(w *Worker) { w.rec = r } }

// Run sweeps at once and then at every interval until ctx is done, and
// returns nil. Errors are logged and retried at the next sweep.
func (r *Reconciler) Run(ctx context.Context) error {
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		res, err := r.Sweep(ctx)
		switch {
		case errors.Is(err, ErrUnavailable) && r.p.closed.Load():
			// Shutting down: no new gateway work; payments left processing
			// are reconciled by the next process.
		case err != nil && ctx.Err() == nil:
			r.log.WarnContext(ctx, "payments: reconciliation sweep failed", "error", err)
		case res.Settled > 0 || res.Unresolved > 0 || res.Review > 0:
			r.log.InfoContext(ctx, "payments: reconciliation sweep", "settled", res.Settled, "unresolved", res.Unresolved, "review", res.Review)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// SweepResult counts what one sweep did.
type SweepResult struct {
	// Settled payments left processing: authorized, captured, declined or
	// failed.
	Settled int
	// Unresolved payments are still processing (gateway or Lookup failing);
	// they are retried after their back-off.
	Unresolved int
	// Deferred payments were skipped because their back-off has not
	// passed, or because another writer's gateway attempt on them may still
	// be in flight (its claim is live; see Processor.AttemptWindow).
	Deferred int
	// Review payments were moved to StatusRequiresReview: their outcome
	// stayed unknown past the maximum age.
	Review int
}

// Sweep reconciles, once, the payments that have stayed processing longer
// than the stale threshold (oldest first, up to the batch size), skipping
// those still in back-off.
func (r *Reconciler) Sweep(ctx context.Context) (SweepResult, error) {
	var res SweepResult
	if r.p.closed.Load() {
		return res, ErrUnavailable
	}
	now := r.p.now()
	stale, err := r.p.store.ListStale(ctx, []Status{StatusProcessing}, now.Add(-r.staleAfter), r.batch)
	if err != nil {
		return res, fmt.Errorf("payments: listing processing payments: %w", err)
	}
	r.mu.Lock()
	due := stale[:0]
	for _, pay := range stale {
		t := r.tries[pay.ID]
		if t == nil {
			t = &reconcileTry{}
			r.tries[pay.ID] = t
		}
		t.last = now
		if now.Before(t.next) {
			res.Deferred++
			continue
		}
		due = append(due, pay)
	}
	r.mu.Unlock()

	var mu sync.Mutex
	sem := make(chan struct{}, r.concurrency)
	var wg sync.WaitGroup
	for _, pay := range due {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			done := r.reconcile(ctx, pay)
			mu.Lock()
			switch done {
			case reconcileSettled:
				res.Settled++
			case reconcileReview:
				res.Review++
			case reconcileBusy:
				res.Deferred++
			default:
				res.Unresolved++
			}
			mu.Unlock()
		})
	}
	wg.Wait()

	// Forget payments not seen for longer than any back-off (settled by
	// someone else), bounding the map.
	r.mu.Lock()
	forget := now.Add(-(r.staleAfter + r.backoff.MaxBackoff + 2*r.every))
	for id, t := range r.tries {
		if t.last.Before(forget) {
			delete(r.tries, id)
		}
	}
	r.mu.Unlock()
	return res, ctx.Err()
}

// reconcile settles one processing payment if it can, moves it to review
// when its outcome cannot be established within the maximum age, and
// reports which.
func (r *Reconciler) reconcile(ctx context.Context, pay *Payment) reconcileResult {
	o, cause := r.attempt(ctx, pay)
	if o != nil && o.busy {
		// Not an attempt: nothing is counted or touched, and the next
		// sweep looks again (a check of the listed payment, no call).
		return reconcileBusy
	}
	if o != nil && o.payment != nil && o.payment.Status == StatusRequiresReview {
		r.mu.Lock()
		delete(r.tries, pay.ID)
		r.mu.Unlock()
		return reconcileReview
	}
	if o != nil && o.payment != nil && o.payment.Status != StatusProcessing {
		r.log.InfoContext(ctx, "payments: reconciled payment", "payment_id", pay.ID, "gateway", pay.Gateway,
			"status", string(o.payment.Status))
		r.mu.Lock()
		delete(r.tries, pay.ID)
		r.mu.Unlock()
		return reconcileSettled
	}
	if cause == nil && o != nil && o.err != nil {
		cause = o.err
	}
	// Count the attempt with the payment (every process's Reconciler
	// shares the count, and a restart keeps it) and move the payment to
	// the back of the stale list so that others get their turn.
	attempts := r.attempts(pay) + 1
	if saved, e := r.p.save(ctx, pay, func(q *Payment) error {
		if q.Status != StatusProcessing {
			return errUnchanged
		}
		q.ReconcileAttempts = max(q.ReconcileAttempts+1, attempts)
		q.UpdatedAt = r.p.now()
		return nil
	}); e != nil {
		r.log.WarnContext(ctx, "payments: recording an unresolved reconciliation failed", "payment_id", pay.ID, "error", e)
	} else if saved.Status == StatusProcessing {
		attempts = saved.ReconcileAttempts
	}
	r.mu.Lock()
	t := r.tries[pay.ID]
	if t == nil {
		t = &reconcileTry{}
		r.tries[pay.ID] = t
	}
	t.attempts = attempts
	delay := r.backoff.Backoff(attempts)
	t.last = r.p.now()
	t.next = t.last.Add(delay)
	r.mu.Unlock()
	r.log.WarnContext(ctx, "payments: payment outcome still unknown; will retry reconciliation",
		"payment_id", pay.ID, "gateway", pay.Gateway, "attempts", attempts, "retry_in", delay.String(), "error", cause)
	return reconcileUnresolved
}

// attempts returns how many reconciliation attempts have already left pay
// processing: the count stored with the payment, or this Reconciler's own
// if higher (a store that does not persist the count).
func (r *Reconciler) attempts(pay *Payment) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := pay.ReconcileAttempts
	if t := r.tries[pay.ID]; t != nil && t.attempts > n {
		n = t.attempts
	}
	return n
}

// reconcileResult is what reconcile did with one payment.
type reconcileResult int

const (
	reconcileUnresolved reconcileResult = iota
	reconcileSettled
	reconcileReview
	reconcileBusy
)

// attempt runs one reconciliation step: Lookup, then settle, resume, fail
// or move to review.
//
// While the payment is younger than the maximum age (the provider's
// idempotency window), resending the authorization with the payment's own
// idempotency key is safe by construction: the provider answers a key it
// processed with the original result and processes a key it never saw. So
// when Lookup cannot answer (any error but not-found: a provider outage, a
// lookup window the provider could not scan) the authorization is resumed
// exactly like a not-found one, and only past the maximum age, when the
// provider may have forgotten the key, does the payment move to
// StatusRequiresReview for an operator instead of being retried forever.
func (r *Reconciler) attempt(ctx context.Context, pay *Payment) (*outcome, error) {
	if claimLive(pay, r.p.now()) {
		// Another writer (a request, a delivery, another process's
		// Reconciler, or a process that died mid-call) may have a gateway
		// call in flight: leave the payment to it until its claim lapses.
		return &outcome{payment: pay, busy: true}, nil
	}
	young := r.p.now().Sub(pay.CreatedAt) <= r.maxAge
	g, ok := r.p.router.Gateway(pay.Gateway)
	if !ok {
		cause := fmt.Errorf("gateway %q that processed the payment is not configured", pay.Gateway)
		if young {
			return nil, cause
		}
		return r.p.reviewPayment(ctx, pay, ReviewOutcomeUnknown, cause), cause
	}
	key := gatewayKey(pay.ID, opAuthorize)
	tx, _, err := r.p.call(ctx, g, "lookup", 1, func(ctx context.Context) (*gateway.Transaction, error) {
		return g.Lookup(ctx, key)
	})
	switch {
	case err == nil:
		return r.p.settleAuthorization(ctx, pay, tx), nil
	case errors.Is(err, gateway.ErrNotFound) && !young:
		// No claim of another writer can be live on a payment this stale
		// unless it wrote since it was listed: failPayment re-checks.
		return r.p.failPayment(ctx, pay, false, CodeGatewayUnavailable,
			fmt.Errorf("the gateway never processed the payment; reconciliation stopped resuming it after %v", r.maxAge)), nil
	case !young:
		return r.p.reviewPayment(ctx, pay, ReviewOutcomeUnknown, fmt.Errorf("lookup: %w", err)), fmt.Errorf("lookup: %w", err)
	}
	// Resume with the same idempotency key. Before the last of the retry
	// policy's attempts a failure leaves the payment processing for the
	// next sweep; on the last, a failure the provider confirms (Lookup
	// finds nothing, no other writer's attempt is live) fails the payment,
	// so that a payment the provider keeps refusing is not retried for a
	// whole day.
	final := r.attempts(pay)+1 >= r.p.retry.MaxAttempts
	o := r.p.execAuthorize(ctx, pay, []*gateway.Gateway{g}, execOpts{attempts: 1, prior: true, claim: true, exclusive: true, final: final})
	if o.busy {
		return o, nil
	}
	if err != nil && !errors.Is(err, gateway.ErrNotFound) && o.payment != nil && o.payment.Status == StatusProcessing {
		return o, fmt.Errorf("lookup: %w; resumed authorization: %v", err, o.err)
	}
	return o, nil
}
