package payments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/gateway"
)

// Message attributes set on payment commands.
const (
	// AttrCommand names the command ("authorize").
	AttrCommand = "payrail.command"
	// AttrMerchant is the merchant the payment belongs to.
	AttrMerchant = "payrail.merchant"
	// AttrPaymentID is the payment the command is for.
	AttrPaymentID = "payrail.payment_id"
)

const opAuthorize = "authorize"

// publish sends the authorize command for a pending payment. The message
// ID is deterministic so brokers with deduplication drop republished copies;
// the Key orders commands per payment.
func (p *Processor) publish(ctx context.Context, pay *Payment) error {
	return p.publishCommand(ctx, pay, opAuthorize, pay.ID+":"+opAuthorize)
}

// publishCommand publishes command op for pay as message id, keyed by the
// payment so that its commands stay in order.
func (p *Processor) publishCommand(ctx context.Context, pay *Payment, op, id string) error {
	return p.topic.Publish(ctx, &bus.Message{
		ID:         id,
		Key:        pay.ID,
		Body:       encodeCommand(op, pay.ID, pay.Merchant),
		Attributes: map[string]string{AttrCommand: op, AttrMerchant: pay.Merchant, AttrPaymentID: pay.ID},
	})
}

// Worker consumes payment commands from a subscription and completes async
// payments: it calls the gateway with a deterministic idempotency key,
// stores the outcome, and only then acknowledges the message. Transient
// gateway failures are retried by redelivery with exponential back-off; after
// the retry policy's attempts the payment is marked failed
// (FailureRetriesExhausted) and the message dead-lettered with the reason. A
// duplicated or redelivered command never charges twice.
//
// Redriving dead letters (bus.Subscription.Redrive) reprocesses them: a
// command for a payment that failed with FailureRetriesExhausted reopens it
// and authorizes it again with the same gateway idempotency key, looking an
// ambiguous earlier attempt up rather than charging twice; a command for a
// payment with a final outcome (see Redrivable) is acknowledged without a
// gateway call. Both are counted by MetricRedrives.
//
// The worker also runs a recovery sweep that republishes commands for
// payments left pending or processing (a lost publish, a crash between
// steps), so no accepted payment is forgotten.
type Worker struct {
	p   *Processor
	sub *bus.Subscription
	log *slog.Logger

	sweepEvery time.Duration
	staleAfter time.Duration
	rec        *Reconciler // WithReconciler (reconcile.go)
	drain      bool        // Shutdown drains the subscription (WithDrainOnShutdown)
	hooks      *Webhooks   // WithWebhooks (eventdelivery.go)
	deliver    *deliverer  // built from hooks by NewWorker

	runMu  sync.Mutex
	stop   context.CancelFunc // cancels the running Run, if any
	runEnd chan struct{}      // closed when that Run returned
}

// WorkerOption configures a Worker.
type WorkerOption func(*Worker)

// WithSubscription consumes commands from s. Without it the worker consumes
// the processor's default in-memory bus (only when New created it).
func WithSubscription(s *bus.Subscription) WorkerOption { return func(w *Worker) { w.sub = s } }

// WithWorkerLogger sets the worker's logger (default: the processor's).
func WithWorkerLogger(l *slog.Logger) WorkerOption { return func(w *Worker) { w.log = l } }

// WithRecovery sets how often the recovery sweep runs and how long a
// payment must have stayed pending or processing before it is republished
// (defaults: the processor's RecoveryPolicy, 30s and 2m; every <= 0
// disables the sweep).
func WithRecovery(every, staleAfter time.Duration) WorkerOption {
	return func(w *Worker) { w.sweepEvery, w.staleAfter = every, staleAfter }
}

// WithDrainOnShutdown makes Shutdown wait until the subscription holds
// nothing queued or in flight before stopping — for a bus whose queue does
// not outlive the process. It is on by default for the processor's own
// in-memory bus and off otherwise (a durable bus keeps its queue for the
// next worker).
func WithDrainOnShutdown(drain bool) WorkerOption { return func(w *Worker) { w.drain = drain } }

// NewWorker returns a worker for p.
func NewWorker(p *Processor, opts ...WorkerOption) (*Worker, error) {
	if err := p.usable(); err != nil {
		return nil, fmt.Errorf("payments: NewWorker: %w", err)
	}
	w := &Worker{p: p, log: p.log, sweepEvery: p.recovery.SweepInterval, staleAfter: p.recovery.StaleAfter}
	for _, o := range opts {
		o(w)
	}
	if w.sub == nil {
		w.sub = p.localSub
		w.drain = true
	}
	if w.sub == nil {
		return nil, errors.New("payments: NewWorker needs WithSubscription when the processor was given its own topic")
	}
	if w.staleAfter <= 0 {
		w.staleAfter = p.recovery.StaleAfter
	}
	if w.hooks != nil {
		if err := w.initWebhooks(); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// Subscription returns the subscription the worker consumes.
func (w *Worker) Subscription() *bus.Subscription { return w.sub }

// Run consumes commands until ctx is done, then waits for in-flight
// commands to finish and be acknowledged before returning nil. It returns
// an error if the subscription fails permanently.
func (w *Worker) Run(ctx context.Context) error {
	ctx, stop := context.WithCancel(ctx)
	end := make(chan struct{})
	defer func() { stop(); close(end) }()
	w.runMu.Lock()
	w.stop, w.runEnd = stop, end
	w.runMu.Unlock()
	var wg sync.WaitGroup
	if w.sweepEvery > 0 {
		wg.Go(func() { w.sweepLoop(ctx) })
	}
	if w.rec != nil {
		wg.Go(func() { _ = w.rec.Run(ctx) })
	}
	if w.deliver != nil {
		wg.Go(func() { w.eventSweepLoop(ctx) })
	}
	err := w.sub.Receive(ctx, w.Handle)
	wg.Wait()
	return err
}

func (w *Worker) sweepLoop(ctx context.Context) {
	every(ctx, w.sweepEvery, func() {
		if n, err := w.Recover(ctx); err != nil {
			w.log.WarnContext(ctx, "payments: recovery sweep failed", "error", err)
		} else if n > 0 {
			w.log.InfoContext(ctx, "payments: recovery sweep republished payments", "count", n)
		}
	})
}

// every calls f every d until ctx is done.
func every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// Recover republishes commands for payments that stayed pending or
// processing longer than the stale threshold, and returns how many.
func (w *Worker) Recover(ctx context.Context) (int, error) {
	statuses := []Status{StatusPending, StatusProcessing}
	if w.rec != nil {
		statuses = statuses[:1] // the reconciler settles processing payments through Lookup
	}
	stale, err := w.p.store.ListStale(ctx, statuses, w.p.now().Add(-w.staleAfter), 500)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, pay := range stale {
		if pay.Status == StatusProcessing && w.p.now().Sub(pay.CreatedAt) > maxBlindRetryAge {
			// Providers forget idempotency keys after about a day (Stripe:
			// 24h); re-sending the authorization then could charge twice,
			// and without a Reconciler nothing can look it up: an operator
			// settles it (never an endless loop).
			w.p.reviewPayment(ctx, pay, ReviewOutcomeUnknown,
				fmt.Errorf("processing for longer than %v without a Reconciler to look it up", maxBlindRetryAge))
			continue
		}
		if err := w.p.publish(ctx, pay); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// Shutdown stops the worker gracefully. When it consumes the processor's
// default in-memory bus — a queue that dies with the process — or was given
// WithDrainOnShutdown(true), it first waits until every accepted command
// in it has been processed (nothing
// queued, delayed for a retry or in flight); then it stops Run and waits
// for the commands in flight to be settled. On a durable bus it only does
// the latter: what is queued there stays for the next worker. It returns
// nil when done, or, if ctx ends first, an error saying how many commands
// were left (see Processor.Unfinished for the payments they belong to);
// then it also shuts the subscription down (bus.Subscription.Shutdown),
// cancelling the contexts of the commands still in flight.
func (w *Worker) Shutdown(ctx context.Context) error {
	var drainErr error
	if w.drain {
		drainErr = w.drainQueue(ctx)
	}
	w.runMu.Lock()
	stop, end := w.stop, w.runEnd
	w.runMu.Unlock()
	if stop == nil {
		return drainErr
	}
	stop()
	select {
	case <-end:
		return drainErr
	case <-ctx.Done():
		// The grace is over: shut the subscription down, which cancels the
		// running handlers' contexts (context.Cause is bus.ErrClosed) so
		// that their gateway calls stop; their commands are nacked and
		// redelivered.
		_ = w.sub.Shutdown(ctx)
		return errors.Join(drainErr, fmt.Errorf("payments: worker shutdown: commands still in flight: %w", ctx.Err()))
	}
}

// drainQueue waits until the subscription holds nothing queued or in flight.
func (w *Worker) drainQueue(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		st, err := w.sub.Stats(ctx)
		if err != nil {
			return fmt.Errorf("payments: worker shutdown: reading the queue: %w", err)
		}
		if st.Backlog == 0 && st.InFlight == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("payments: worker shutdown: %d commands queued and %d in flight were not processed: %w",
				st.Backlog, st.InFlight, ctx.Err())
		case <-t.C:
		}
	}
}

// maxBlindRetryAge bounds how old a processing payment may be for the
// recovery sweep to republish its command without a Lookup.
const maxBlindRetryAge = 12 * time.Hour

// Handle processes one command message; Run calls it for each delivery. It
// settles the message itself.
func (w *Worker) Handle(ctx context.Context, m *bus.Message) error {
	start := time.Now()
	if w.sub == w.p.localSub {
		defer func() { w.p.observeProcessing(time.Since(start)) }()
	}
	ctx, span := w.p.tel.start(ctx, "process")
	ended := false
	defer func() {
		if !ended { // tel.end ends it on the main path
			span.End()
		}
	}()
	cmd, err := decodeCommand(m.Body, m.Attributes)
	if err != nil {
		// Never executed with defaults: a poisoned or forged command goes to
		// the dead-letter queue with the reason, for an operator.
		w.log.ErrorContext(ctx, "payments: malformed command dead-lettered", "message_id", m.ID, "reason", err.Error())
		return m.DeadLetter(ctx, "malformed payment command: "+err.Error())
	}
	span.SetAttributes(attrPaymentID.String(cmd.PaymentID))
	if cmd.Op == opEvents {
		span.SetName("payrail.deliver_events")
		return w.handleEvents(ctx, m, cmd)
	}
	maxAttempts := w.p.retry.MaxAttempts
	if c := w.sub.Capabilities().MaxAttempts; c > 0 && c < maxAttempts {
		maxAttempts = c
	}
	final := m.DeliveryAttempt >= maxAttempts

	pay, err := w.p.store.Get(ctx, cmd.Merchant, cmd.PaymentID)
	if err != nil {
		if final {
			return m.DeadLetter(ctx, fmt.Sprintf("payment %s unreadable after %d attempts: %v", cmd.PaymentID, m.DeliveryAttempt, err))
		}
		return m.Nack(ctx, w.p.retry.Backoff(m.DeliveryAttempt))
	}
	if pay.Status != StatusPending && pay.Status != StatusProcessing {
		// The payment already ended: a redriven dead letter or a duplicate.
		// Only a retryable failure is reopened (redrive.go).
		reopened, ok, e := w.reopen(ctx, pay)
		if e != nil {
			if final {
				return m.DeadLetter(ctx, "reopening the failed payment for a redrive failed: "+e.Error())
			}
			return m.Nack(ctx, w.p.retry.Backoff(m.DeliveryAttempt))
		}
		if !ok {
			w.p.tel.redriven(ctx, RedriveSkipped)
			_, why := RedrivePlan(reopened)
			w.log.DebugContext(ctx, "payments: command for an ended payment skipped", "payment_id", pay.ID, "reason", why)
			return m.Ack(ctx)
		}
		w.p.tel.redriven(ctx, RedriveReprocessed)
		w.log.InfoContext(ctx, "payments: redriven command reopened a payment that failed retryably",
			"payment_id", pay.ID, "gateway", reopened.Gateway, "status", string(reopened.Status))
		pay = reopened
	}
	var chain []*gateway.Gateway
	prior := pay.Status == StatusProcessing // an earlier delivery or request reached the gateway step
	switch pay.Status {
	case StatusPending:
		chain, err = w.p.router.Route(ctx, new(routeRequest(pay)))
		if err != nil || len(chain) == 0 {
			return w.retryOrFail(ctx, m, pay, final, fmt.Errorf("no gateway route: %w", err))
		}
		moved, e := w.p.save(ctx, pay, func(q *Payment) error {
			if q.Status != StatusPending {
				return errUnchanged
			}
			q.Gateway = chain[0].Name()
			now := w.p.now()
			q.AttemptUntil = now.Add(w.p.attemptWindow()) // this delivery's claim (fencing)
			return q.transition(StatusProcessing, now)
		})
		if e != nil {
			if final {
				return m.DeadLetter(ctx, "storing processing state failed: "+e.Error())
			}
			return m.Nack(ctx, w.p.retry.Backoff(m.DeliveryAttempt))
		}
		if moved.Status != StatusProcessing {
			return m.Ack(ctx) // another worker got there first
		}
		pay = moved
	case StatusProcessing:
		g, ok := w.p.router.Gateway(pay.Gateway)
		if !ok {
			return w.retryOrFail(ctx, m, pay, final, fmt.Errorf("gateway %q is not configured", pay.Gateway))
		}
		chain = []*gateway.Gateway{g}
	default:
		return m.Ack(ctx) // settled meanwhile (another delivery or request)
	}

	// One gateway attempt per delivery: retries happen by redelivery, with
	// back-off, so a worker never blocks on a failing gateway. A transient
	// failure on the last delivery is settled by exhausted (redrive.go),
	// which marks a payment it fails as FailureRetriesExhausted: the mark
	// that lets a redrive of its dead letter reopen it.
	// A payment already processing was moved there by an earlier delivery
	// or request: claim the attempt first (fencing, attempt.go).
	claim := prior
	prior = m.DeliveryAttempt > 1 || prior
	o := w.p.execAuthorize(ctx, pay, chain, execOpts{attempts: 1, prior: prior, claim: claim})
	if o.retry && final {
		o = w.exhausted(ctx, o.payment, o.err.Err, prior)
	}
	w.p.tel.end(ctx, span, "process", start, o)
	ended = true
	switch {
	case o.retry:
		return m.Nack(ctx, w.p.retry.Backoff(m.DeliveryAttempt))
	case o.err != nil && o.err.Code == CodeOutcomeUnknown:
		if final {
			return m.DeadLetter(ctx, fmt.Sprintf("payment %s outcome unknown after %d attempts; left processing for reconciliation", pay.ID, m.DeliveryAttempt))
		}
		return m.Nack(ctx, w.p.retry.Backoff(m.DeliveryAttempt))
	case o.payment != nil && o.payment.Status == StatusFailed && o.err != nil && o.err.Code == CodeGatewayUnavailable:
		return m.DeadLetter(ctx, fmt.Sprintf("payment %s failed after %d attempts: %v", pay.ID, m.DeliveryAttempt, o.err))
	}
	return m.Ack(ctx)
}

// retryOrFail nacks for a later attempt, or on the final attempt marks the
// payment failed and dead-letters the message.
func (w *Worker) retryOrFail(ctx context.Context, m *bus.Message, pay *Payment, final bool, cause error) error {
	if final {
		w.p.failPayment(ctx, pay, false, codeRetriesExhausted, cause)
		return m.DeadLetter(ctx, fmt.Sprintf("payment %s failed after %d attempts: %v", pay.ID, m.DeliveryAttempt, cause))
	}
	return m.Nack(ctx, w.p.retry.Backoff(m.DeliveryAttempt))
}
