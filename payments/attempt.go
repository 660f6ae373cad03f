package payments

// One authorization attempt on a payment, shared by Authorize, the worker,
// redrives and the Reconciler: the attempt is claimed in the payment's
// compare-and-set update (fencing), the gateways of the route are tried in
// order (call), and the answer settles the payment (settleAuthorization),
// fails it only when no attempt can have been processed (failPayment), or
// leaves it processing for Lookup (reconcileAuthorization, reviewPayment).

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/payrail/payrail/gateway"
)

// execOpts tunes execAuthorize.
type execOpts struct {
	// attempts is the number of in-process gateway attempts per gateway.
	attempts int
	// final: no later attempt will follow (sync requests, the worker's last
	// delivery). When false, a transient failure leaves the payment
	// processing and the outcome has retry set.
	final bool
	// prior: earlier attempts of this authorization may have reached the
	// gateway (a resumed request, a redelivered command), so a failure is
	// confirmed by Lookup before the payment is marked failed.
	prior bool
	// claim: the caller did not itself just move the payment to processing
	// (with its AttemptUntil set), so execAuthorize first claims the attempt
	// with a compare-and-set update (see claimAttempt).
	claim bool
	// exclusive: with claim, give up (an outcome with busy set, no gateway
	// call) when another writer's claim is live, instead of sharing the
	// attempt. Background sweeps claim exclusively: two of them sharing
	// attempts on one payment would keep extending a claim neither can
	// release, and neither could ever fail a payment the provider refuses.
	exclusive bool
	// authKey, if set, may hold gatewayKey(pay.ID, "authorize") already
	// (see authorizeKey); gwReq, if set, is storage for the first gateway
	// request. Both save an allocation on the create path.
	authKey string
	gwReq   *gateway.AuthorizeRequest
	// deadline, if set, is unused storage for the first gateway attempt's
	// context (see withDeadlineIn).
	deadline *deadlineCtx
}

// Fencing. Several writers may drive one processing payment at once: a
// resumed request, a redelivered or republished command, a reconciler. Two
// gateway attempts with the same idempotency key are harmless (the provider
// deduplicates them), and storing the provider's answer is always right. The
// one decision that is not safe while another writer's call may still be in
// flight is "the provider never processed it" (failing the payment after a
// not-processed error or a Lookup that finds nothing): the other call could
// charge a moment later. So:
//
//   - every gateway attempt is preceded by a claim stored with the
//     payment's compare-and-set version: Payment.AttemptUntil, the instant
//     by which the attempt is certainly over (attemptWindow);
//   - a writer clears its claim when it stores the outcome or gives up for
//     now, and never clears another writer's;
//   - a payment is failed only if no claim is live, or the only live claim
//     is the deciding writer's own and nothing was written since it was
//     made (the stored version is still the writer's). A writer that loses
//     that compare-and-set re-reads the payment and re-decides; with a live
//     claim of another writer it leaves the payment processing, and that
//     writer (or the reconciler, later) settles it.

// AttemptWindow is how long one writer's claim on a processing payment
// lasts (see the fencing rules above): every gateway attempt timing out
// after its back-off, twice, plus a 30 s margin for clock skew between
// processes. A process that dies in the middle of a gateway call leaves
// its claim behind: the Reconciler resumes that payment only once the
// claim has lapsed, up to this long after the crash. It is 0 for a
// Processor not created with New.
func (p *Processor) AttemptWindow() time.Duration {
	if p.usable() != nil {
		return 0
	}
	return p.attemptWindow()
}

// attemptWindow bounds how long one writer's gateway attempts on a payment
// may take, Lookup included: every attempt timing out after its back-off,
// twice, plus a margin.
func (p *Processor) attemptWindow() time.Duration {
	return 2*time.Duration(p.retry.MaxAttempts)*(p.gatewayTimeout+p.retry.MaxBackoff) + 30*time.Second
}

// claimLive reports whether a gateway attempt may be in flight on q.
func claimLive(q *Payment, now time.Time) bool {
	return q.Status == StatusProcessing && now.Before(q.AttemptUntil)
}

// claimAttempt records, before a resumed gateway attempt, that this writer
// is about to call the gateway. It returns the payment as stored, whether
// another writer's claim was live (the attempt is then shared: this writer
// may settle the payment with the gateway's answer but never fail it) and,
// if so, until when (what releaseAttempt gives back), or the outcome to
// return when the payment is no longer processing, or, for an exclusive
// claim, when another writer's claim is live (busy).
func (p *Processor) claimAttempt(ctx context.Context, pay *Payment, exclusive bool) (*Payment, bool, time.Time, *outcome) {
	shared, busy := false, false
	var theirs time.Time
	saved, e := p.save(ctx, pay, func(q *Payment) error {
		busy, theirs = false, time.Time{}
		if q.Status != StatusProcessing {
			return errUnchanged
		}
		now := p.now()
		shared = claimLive(q, now)
		if shared && exclusive {
			busy = true
			return errUnchanged
		}
		if shared {
			theirs = q.AttemptUntil
		}
		if until := now.Add(p.attemptWindow()); until.After(q.AttemptUntil) {
			q.AttemptUntil = until
		}
		q.UpdatedAt = now
		return nil
	})
	if e != nil {
		return nil, false, time.Time{}, failed(&Error{Code: CodeOutcomeUnknown, PaymentID: pay.ID, RetryAfter: 5 * time.Second,
			Detail: "the payment could not be claimed for a new attempt; retry with the same Idempotency-Key", Err: e}, pay)
	}
	if saved.Status != StatusProcessing {
		return nil, false, time.Time{}, fromPayment(saved)
	}
	if busy {
		return nil, false, time.Time{}, &outcome{payment: saved, busy: true}
	}
	return saved, shared, theirs, nil
}

// releaseAttempt ends this writer's claim on a payment it leaves processing
// (a later delivery or the reconciler goes on): an exclusive claim is
// cleared (theirs zero), so that the next writer is not fenced off by an
// attempt that is over; a shared one gives the other writer's claim back as
// it was (theirs), so that a writer that died in a gateway call is not kept
// alive by every retry sharing its claim (each one extended it, and none
// could fail a payment the provider refuses for as long as retries came).
// It changes nothing if anyone wrote the payment since (their claim
// stands). It returns the payment as stored afterwards, or pay if that is
// unknown.
func (p *Processor) releaseAttempt(ctx context.Context, pay *Payment, theirs time.Time) *Payment {
	version := pay.Version
	saved, e := p.save(ctx, pay.Clone(), func(q *Payment) error {
		if q.Version != version || q.Status != StatusProcessing || q.AttemptUntil.IsZero() || !theirs.Before(q.AttemptUntil) {
			return errUnchanged
		}
		q.AttemptUntil = theirs
		return nil
	})
	if e != nil {
		p.log.WarnContext(ctx, "payments: releasing a gateway attempt claim failed; it lapses on its own",
			"payment_id", pay.ID, "error", e)
		return pay
	}
	return saved
}

// execAuthorize calls the gateway chain for a processing payment and
// stores the result. It cascades to the next gateway only when an attempt
// definitely did not process; ambiguous failures are reconciled by Lookup.
func (p *Processor) execAuthorize(ctx context.Context, pay *Payment, chain []*gateway.Gateway, eo execOpts) *outcome {
	fenced := true // pay.Version is this writer's own claim (see Fencing)
	var theirs time.Time
	if eo.claim {
		claimed, shared, until, o := p.claimAttempt(ctx, pay, eo.exclusive)
		if o != nil {
			return o
		}
		pay, fenced, theirs = claimed, !shared, until
	}
	o := p.attemptChain(ctx, pay, chain, eo, fenced)
	switch {
	case o.payment == nil || o.payment.Status != StatusProcessing:
	case fenced && !o.fencedOff:
		o.payment = p.releaseAttempt(ctx, o.payment, time.Time{})
	case !fenced && o.fencedOff:
		// A shared attempt the provider definitely did not process: the
		// payment would have failed but for the other writer's claim.
		// Give that claim back as it was; its writer may be dead.
		o.payment = p.releaseAttempt(ctx, o.payment, theirs)
	}
	return o
}

// attemptChain is execAuthorize after the claim: fenced reports whether the
// claim on pay is this writer's alone.
func (p *Processor) attemptChain(ctx context.Context, pay *Payment, chain []*gateway.Gateway, eo execOpts, fenced bool) *outcome {
	for i, g := range chain {
		if i > 0 {
			// Record the gateway about to be called before calling it, so
			// that a crash leaves the payment reconcilable.
			saved, e := p.save(ctx, pay, func(q *Payment) error {
				if q.Status != StatusProcessing {
					return errUnchanged
				}
				q.Gateway = g.Name()
				q.UpdatedAt = p.now()
				return nil
			})
			if e != nil {
				return failed(e, pay)
			}
			if saved.Status != StatusProcessing {
				return fromPayment(saved)
			}
			pay = saved
		}
		req := eo.gwReq
		if i > 0 || req == nil {
			req = new(gateway.AuthorizeRequest) // a gateway may not retain its request, but never reuse one across gateways
		}
		*req = gateway.AuthorizeRequest{
			IdempotencyKey: authorizeKey(pay.ID, eo.authKey), PaymentID: pay.ID, Merchant: pay.Merchant,
			Amount: pay.Amount, Currency: pay.Currency, PaymentMethod: pay.PaymentMethod,
			CaptureMethod: gateway.CaptureMethod(pay.CaptureMethod), Origin: pay.Origin, Metadata: pay.Metadata,
		}
		dl := eo.deadline
		eo.deadline = nil // a driver may keep an attempt's context: never reuse it
		tx, ambiguous, err := p.callIn(ctx, dl, g, "authorize", eo.attempts, func(ctx context.Context) (*gateway.Transaction, error) {
			return g.Authorize(ctx, req)
		})
		if err == nil {
			return p.settleAuthorization(ctx, pay, tx)
		}
		var ge *gateway.Error
		errors.As(err, &ge)
		switch {
		case errors.Is(err, gateway.ErrDeclined):
			next, o := p.cascadeSoftDecline(ctx, pay, g, ge, !eo.prior && i+1 < len(chain))
			if o != nil {
				return o
			}
			if next != nil {
				pay = next // a soft decline the policy retries on the next gateway (routing.go)
				continue
			}
			return p.settleAuthorization(ctx, pay, &gateway.Transaction{Status: gateway.StatusDeclined, DeclineCode: ge.DeclineCode})
		case !ambiguous && !eo.prior && i+1 < len(chain):
			p.log.WarnContext(ctx, "payments: gateway did not process the payment; trying the next",
				"payment_id", pay.ID, "gateway", g.Name(), "error", err)
			continue
		case errors.Is(err, gateway.ErrInvalidRequest) || errors.Is(err, gateway.ErrAuthentication):
			return p.failPayment(ctx, pay, fenced, CodeGatewayRejected, err)
		case !eo.final:
			return &outcome{status: http.StatusServiceUnavailable, payment: pay, retry: true,
				err: &Error{Code: CodeGatewayUnavailable, PaymentID: pay.ID, Detail: "transient gateway failure", Err: err}}
		case !ambiguous && !eo.prior:
			return p.failPayment(ctx, pay, fenced, CodeGatewayUnavailable, err)
		}
		return p.reconcileAuthorization(ctx, pay, fenced, g, CodeGatewayUnavailable, err)
	}
	return p.failPayment(ctx, pay, fenced, CodeGatewayUnavailable, errors.New("no gateway left to try"))
}

// call invokes a gateway operation with retries on transient errors, each
// attempt bounded by the gateway timeout. ambiguous reports whether any
// attempt failed in a way that may have had an effect.
func (p *Processor) call(ctx context.Context, g *gateway.Gateway, op string, attempts int,
	fn func(context.Context) (*gateway.Transaction, error)) (tx *gateway.Transaction, ambiguous bool, err error) {
	return p.callIn(ctx, nil, g, op, attempts, fn)
}

// callIn is call with storage for the first attempt's context (nil: none).
func (p *Processor) callIn(ctx context.Context, first *deadlineCtx, g *gateway.Gateway, op string, attempts int,
	fn func(context.Context) (*gateway.Transaction, error)) (tx *gateway.Transaction, ambiguous bool, err error) {
	// Each attempt is traced and measured by the gateway itself: a client
	// span "gateway.<op>" and payrail.gateway.request.duration.
	for a := 1; ; a++ {
		cctx := withDeadlineIn(first, ctx, time.Now().Add(p.gatewayTimeout)) // context.WithTimeout, lazily
		first = nil
		tx, err = fn(cctx)
		cctx.stop()
		if err == nil {
			break
		}
		ge, isGE := errors.AsType[*gateway.Error](err)
		if !isGE || (!ge.NotProcessed && ge.Kind != gateway.KindDeclined && ge.Kind != gateway.KindNotFound) {
			ambiguous = true
		}
		if !gateway.Retryable(err) || a >= attempts || ctx.Err() != nil {
			break
		}
		delay := p.retry.Backoff(a)
		if isGE && ge.RetryAfter > delay {
			delay = min(ge.RetryAfter, p.retry.MaxBackoff)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < delay {
			break
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	return tx, ambiguous, err
}

// settleAuthorization stores the gateway's answer for a processing payment.
func (p *Processor) settleAuthorization(ctx context.Context, pay *Payment, tx *gateway.Transaction) *outcome {
	saved, e := p.save(ctx, pay, func(q *Payment) error {
		if q.Status != StatusProcessing && q.Status != StatusRequiresReview {
			return errUnchanged // settled by another worker or request
		}
		q.GatewayReference = tx.Reference
		q.AttemptUntil = time.Time{}
		q.DeclineCode = "" // a soft decline at an earlier gateway no longer applies
		switch tx.Status {
		case gateway.StatusDeclined:
			q.DeclineCode = tx.DeclineCode
			return q.transition(StatusDeclined, p.now())
		case gateway.StatusCaptured:
			q.AmountCaptured = tx.AmountCaptured
			return q.transition(StatusCaptured, p.now())
		case gateway.StatusAuthorized:
			return q.transition(StatusAuthorized, p.now())
		}
		return fmt.Errorf("gateway %s returned unexpected status %q for an authorization", q.Gateway, tx.Status)
	})
	if e != nil {
		// The gateway answered but the answer could not be stored: the
		// payment stays processing and a retry (same key) resumes it.
		return failed(&Error{Code: CodeOutcomeUnknown, PaymentID: pay.ID, RetryAfter: 5 * time.Second,
			Detail: "the payment could not be stored; retry with the same Idempotency-Key", Err: e}, pay)
	}
	return fromPayment(saved)
}

// reconcileAuthorization resolves an ambiguous authorization with Lookup.
// A payment Lookup does not find is failed with code (as its FailureCode).
func (p *Processor) reconcileAuthorization(ctx context.Context, pay *Payment, fenced bool, g *gateway.Gateway, code Code, cause error) *outcome {
	tx, _, err := p.call(ctx, g, "lookup", p.retry.MaxAttempts, func(ctx context.Context) (*gateway.Transaction, error) {
		return g.Lookup(ctx, gatewayKey(pay.ID, opAuthorize))
	})
	switch {
	case err == nil:
		return p.settleAuthorization(ctx, pay, tx)
	case errors.Is(err, gateway.ErrNotFound):
		return p.failPayment(ctx, pay, fenced, code, cause)
	}
	p.log.WarnContext(ctx, "payments: authorization outcome unknown; left processing for reconciliation",
		"payment_id", pay.ID, "gateway", g.Name(), "error", cause, "lookup_error", err)
	return fromPayment(pay) // processing → payment_outcome_unknown
}

// failPayment marks a payment that was definitely not charged as failed,
// unless another writer's gateway attempt may be in flight (see Fencing):
// fenced reports whether pay.Version is the caller's own live claim; a
// caller without one (fenced false) may fail the payment only when no claim
// is live. A fenced-off failure leaves the payment processing.
func (p *Processor) failPayment(ctx context.Context, pay *Payment, fenced bool, code Code, cause error) *outcome {
	if !fenced && claimLive(pay, p.now()) {
		// The caller's copy may predate the claim's release: decide on the
		// payment as stored.
		if fresh, err := p.store.Get(context.WithoutCancel(ctx), pay.Merchant, pay.ID); err == nil {
			pay = fresh
		}
	}
	version := pay.Version
	fencedOff := false
	saved, e := p.save(ctx, pay, func(q *Payment) error {
		if q.Status != StatusProcessing && q.Status != StatusPending {
			return errUnchanged
		}
		if claimLive(q, p.now()) && !(fenced && q.Version == version) {
			fencedOff = true
			return errUnchanged
		}
		q.AttemptUntil = time.Time{}
		if q.Status == StatusProcessing && q.DeclineCode != "" {
			// An earlier gateway soft-declined it (routing.go) and no later
			// one charged it: the payment ends declined.
			return q.transition(StatusDeclined, p.now())
		}
		q.FailureCode = string(code)
		return q.transition(StatusFailed, p.now())
	})
	if e != nil {
		return failed(&Error{Code: CodeOutcomeUnknown, PaymentID: pay.ID, RetryAfter: 5 * time.Second,
			Detail: "the payment could not be stored; retry with the same Idempotency-Key", Err: e}, pay)
	}
	if fencedOff {
		p.log.InfoContext(ctx, "payments: not failing the payment: another gateway attempt on it may be in flight",
			"payment_id", pay.ID, "gateway", pay.Gateway, "code", string(code), "error", cause)
	} else if saved.Status == StatusFailed || saved.Status == StatusDeclined {
		p.log.WarnContext(ctx, "payments: payment failed", "payment_id", pay.ID, "gateway", pay.Gateway, "code", string(code), "error", cause)
	}
	o := fromPayment(saved)
	o.fencedOff = fencedOff
	if o.err != nil {
		o.err.Err = cause
	}
	return o
}

// reviewPayment moves a processing payment whose gateway outcome could not
// be established to StatusRequiresReview with reason, counts it and logs
// it for an operator. It never charges, fails or retries anything.
func (p *Processor) reviewPayment(ctx context.Context, pay *Payment, reason string, cause error) *outcome {
	moved := false
	saved, e := p.save(ctx, pay, func(q *Payment) error {
		if q.Status != StatusProcessing {
			return errUnchanged
		}
		moved = true
		q.FailureCode = reason
		q.AttemptUntil = time.Time{}
		return q.transition(StatusRequiresReview, p.now())
	})
	if e != nil {
		return failed(e, pay)
	}
	if moved {
		p.tel.reviews.Add(ctx, 1, metric.WithAttributes(attrReason.String(reason)))
		p.log.ErrorContext(ctx, "payments: payment needs review: its gateway outcome is unknown and payrail stopped acting on it",
			"payment_id", saved.ID, "merchant", saved.Merchant, "gateway", saved.Gateway, "reason", reason,
			"created_at", saved.CreatedAt, "error", cause, "runbook", "docs/runbooks.md#incident-payments-in-review")
	}
	return fromPayment(saved)
}
