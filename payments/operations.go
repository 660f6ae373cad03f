package payments

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/idempotency"
)

// Authorize creates a payment and, in sync mode, authorizes it (and with
// automatic capture, captures it) before returning. In async mode it returns
// the payment pending; a Worker completes it.
//
// The idempotency key is required: a retry with the same key and request
// returns the first result without charging again. When the payment is
// declined or fails, Authorize returns the payment and an error matching
// ErrDeclined or ErrGatewayUnavailable.
func (p *Processor) Authorize(ctx context.Context, req AuthorizeRequest) (*Payment, error) {
	if err := p.usable(); err != nil {
		return nil, err
	}
	o := p.authorize(ctx, &req)
	return p.sdkPayment(ctx, req.Merchant, o)
}

// Capture captures an authorized payment, fully (Amount zero) or partially.
func (p *Processor) Capture(ctx context.Context, req CaptureRequest) (*Payment, error) {
	if err := p.usable(); err != nil {
		return nil, err
	}
	o := p.capture(ctx, &req)
	return p.sdkPayment(ctx, req.Merchant, o)
}

// Void cancels an authorized, uncaptured payment.
func (p *Processor) Void(ctx context.Context, req VoidRequest) (*Payment, error) {
	if err := p.usable(); err != nil {
		return nil, err
	}
	o := p.void(ctx, &req)
	return p.sdkPayment(ctx, req.Merchant, o)
}

// Refund refunds part (Amount) or all (Amount zero) of what remains of a
// captured payment. A payment can be refunded several times until its
// captured amount is exhausted; it becomes refunded then.
func (p *Processor) Refund(ctx context.Context, req RefundRequest) (*Refund, error) {
	if err := p.usable(); err != nil {
		return nil, err
	}
	o := p.refund(ctx, &req)
	if o.err != nil {
		return nil, o.err
	}
	return o.refund, nil
}

// ErrNotInitialized is returned by the methods of a Processor that New did
// not create (a nil pointer or a zero value): use New.
var ErrNotInitialized = errors.New("payments: processor not created with New")

// usable reports ErrNotInitialized for a nil or zero Processor, which would
// otherwise panic on its first use.
func (p *Processor) usable() error {
	if p == nil || p.tel == nil {
		return ErrNotInitialized
	}
	return nil
}

// sdkPayment returns the payment and error of an outcome. For a replayed
// failure, the payment is read from the store.
func (p *Processor) sdkPayment(ctx context.Context, merchant string, o *outcome) (*Payment, error) {
	if o.replayed && o.payment == nil && o.err != nil && o.err.PaymentID != "" {
		if pay, err := p.store.Get(ctx, merchant, o.err.PaymentID); err == nil {
			o.payment = pay
		}
	}
	pay, err := o.paymentResult()
	return pay.detach(), err
}

// detach makes a payment held by one request's outcome safe to hand to an
// SDK caller. The outcome's payment is already that request's own copy
// (stores copy on write and return copies, see Store) except for its
// metadata map, which the memory store shares read-only: that is cloned.
func (p *Payment) detach() *Payment {
	if p != nil && len(p.Metadata) > 0 {
		p.Metadata = maps.Clone(p.Metadata)
	}
	return p
}

func keyError(err error) *Error {
	if errors.Is(err, idempotency.ErrKeyMissing) {
		return &Error{Code: CodeIdempotencyMissing, Detail: "the Idempotency-Key header is required"}
	}
	return &Error{Code: CodeIdempotencyInvalid, Detail: "Idempotency-Key must be 1-255 printable ASCII characters"}
}

// errShuttingDown answers operations that arrive after Shutdown or Close.
func errShuttingDown() *Error {
	return &Error{Code: CodeUnavailable, Detail: "the processor is shutting down", RetryAfter: time.Second}
}

func (p *Processor) precheck(merchant, key string, keyRequired bool) *Error {
	if e := checkID("merchant", merchant); e != nil {
		return e
	}
	if key != "" || keyRequired {
		if err := idempotency.ValidateKey(key); err != nil {
			return keyError(err)
		}
		if looksLikePAN(key) {
			return validationError(FieldError{Field: "Idempotency-Key", Code: CodeCardDataNotAllowed,
				Message: "the Idempotency-Key must not contain a card number"})
		}
	}
	return nil
}

func (p *Processor) authorize(ctx context.Context, req *AuthorizeRequest) (o *outcome) {
	start := time.Now()
	ctx, span := p.tel.start(ctx, "authorize")
	defer func() { p.tel.end(ctx, span, "authorize", start, o) }()
	if !p.enter() {
		return failed(errShuttingDown(), nil)
	}
	defer p.exit()
	if e := p.precheck(req.Merchant, req.IdempotencyKey, true); e != nil {
		return failed(e, nil)
	}
	n, verr := normalizeAuthorize(req)
	if verr != nil {
		return failed(verr, nil)
	}
	mode := n.Mode
	if mode == ModeDefault {
		mode = p.Mode()
	}
	if span.IsRecording() {
		span.SetAttributes(attrMode.String(string(mode)), attrOrigin.String(n.Origin))
	}
	var canon [256]byte
	fp := idempotency.Fingerprint(http.MethodPost, "/payments", canonicalAuthorize(canon[:0], &n))
	// The payment id and its gateway key in one allocation.
	authKey := newIDSuffixed("pay", ":"+opAuthorize)
	c, o := p.begin(ctx, n.Merchant, n.IdempotencyKey, fp, authKey[:len(authKey)-len(opAuthorize)-1])
	if o != nil {
		return o
	}
	c.authKey = authKey
	o, executed := p.createPayment(ctx, c, &n, mode)
	c.finish(ctx, o, executed)
	return o
}

// createPayment runs a claimed create-payment request. It reports whether
// the request executed (gateway attempted or command published).
func (p *Processor) createPayment(ctx context.Context, c *claim, n *AuthorizeRequest, mode Mode) (*outcome, bool) {
	id := c.resourceID
	if c.resumed {
		pay, err := p.store.Get(ctx, n.Merchant, id)
		if err == nil {
			return p.resumeCreate(ctx, pay)
		}
		if !errors.Is(err, ErrNotFound) {
			return failed(p.storeError(err, id), nil), false
		}
		// The crashed request never stored the payment: create it now.
	}
	now := p.now()
	pay := &c.pay
	*pay = Payment{
		ID: id, Merchant: n.Merchant, Amount: n.Amount, Currency: n.Currency,
		PaymentMethod: n.PaymentMethod, Origin: n.Origin, CaptureMethod: n.CaptureMethod,
		Status: StatusPending, Refunds: []Refund{}, Metadata: n.Metadata, CreatedAt: now, UpdatedAt: now,
	}
	if mode == ModeAsync {
		if e := p.admitAsync(ctx); e != nil {
			return failed(e, nil), false
		}
		if err := p.store.Create(ctx, pay); err != nil {
			return p.createFailed(ctx, pay, err)
		}
		return p.enqueue(ctx, pay)
	}
	c.route = routeRequest(pay)
	chain, err := p.router.Route(ctx, &c.route)
	if err != nil || len(chain) == 0 {
		return failed(&Error{Code: CodeGatewayUnavailable, Detail: "no gateway route for this payment", Err: err}, nil), false
	}
	pay.Status = StatusProcessing
	pay.Gateway = chain[0].Name()
	pay.AttemptUntil = now.Add(p.attemptWindow()) // the claim of this request's attempts (fencing)
	if err := p.store.Create(ctx, pay); err != nil {
		return p.createFailed(ctx, pay, err)
	}
	return p.execAuthorize(ctx, pay, chain, execOpts{attempts: p.retry.MaxAttempts, final: true,
		authKey: c.authKey, gwReq: &c.gwReq}), true
}

// createFailed answers a create request whose Store.Create failed. An
// error caused by the input stored nothing: the key is released. Any other
// error (unavailability, a cancelled context, a conflict) may have come after the store kept the payment (a connection lost
// between COMMIT and its reply): the outcome is unknown, the key stays held,
// and a retry with it after the lease resumes this very payment id —
// finding it stored, or creating it then — so that it never becomes a
// second payment charged beside the first.
func (p *Processor) createFailed(ctx context.Context, pay *Payment, err error) (*outcome, bool) {
	e := p.storeError(err, pay.ID)
	if e.HTTPStatus() < 500 {
		return failed(e, nil), false
	}
	p.log.WarnContext(ctx, "payments: storing a new payment failed; its key stays held so that a retry resumes it",
		"payment_id", pay.ID, "error", err)
	return failed(&Error{Code: CodeOutcomeUnknown, PaymentID: pay.ID, RetryAfter: 5 * time.Second,
		Detail: "the payment store did not confirm the payment; retry with the same Idempotency-Key", Err: err}, nil), false
}

func routeRequest(pay *Payment) gateway.RouteRequest {
	return gateway.RouteRequest{PaymentID: pay.ID, Merchant: pay.Merchant, Origin: pay.Origin, Currency: pay.Currency, Amount: pay.Amount}
}

// resumeCreate continues a create-payment request whose first attempt
// crashed after storing the payment.
func (p *Processor) resumeCreate(ctx context.Context, pay *Payment) (*outcome, bool) {
	switch pay.Status {
	case StatusPending:
		if err := p.publish(ctx, pay); err != nil {
			// The payment stays pending; the worker's recovery sweep republishes it.
			p.log.WarnContext(ctx, "payments: republishing resumed payment failed", "payment_id", pay.ID, "error", err)
		}
		return succeeded(http.StatusAccepted, pay, nil), true
	case StatusProcessing:
		g, ok := p.router.Gateway(pay.Gateway)
		if !ok {
			return failed(&Error{Code: CodeOutcomeUnknown, PaymentID: pay.ID, RetryAfter: 5 * time.Second,
				Detail: fmt.Sprintf("gateway %q is not configured; the payment cannot be reconciled yet", pay.Gateway)}, pay), true
		}
		return p.execAuthorize(ctx, pay, []*gateway.Gateway{g}, execOpts{attempts: p.retry.MaxAttempts, final: true, prior: true, claim: true}), true
	}
	return fromPayment(pay), true
}

// enqueue publishes the async command for a pending payment.
//
// A publish error does not prove the command was not delivered (a broker
// may append it and the acknowledgement be lost), so the payment is failed
// with a compare-and-set from pending: if that wins, a worker that gets the
// command later finds it failed and does nothing, and the key is released
// for the client's retry; if a worker already moved it on, the command was
// delivered and the answer is 202; if the store cannot say, the outcome is
// unknown and the key stays held, so that a retry resumes this payment
// rather than creating a second one.
func (p *Processor) enqueue(ctx context.Context, pay *Payment) (*outcome, bool) {
	err := p.publish(ctx, pay)
	if err == nil {
		return succeeded(http.StatusAccepted, pay, nil), true
	}
	p.log.ErrorContext(ctx, "payments: publishing payment command failed", "payment_id", pay.ID, "error", err)
	moved := false
	saved, serr := p.save(ctx, pay, func(q *Payment) error {
		if q.Status != StatusPending {
			moved = true
			return errUnchanged
		}
		q.FailureCode = string(CodeBusUnavailable)
		return q.transition(StatusFailed, p.now())
	})
	switch {
	case serr != nil:
		p.log.ErrorContext(ctx, "payments: marking unpublished payment failed", "payment_id", pay.ID, "error", serr)
		return failed(&Error{Code: CodeOutcomeUnknown, PaymentID: pay.ID, RetryAfter: 5 * time.Second,
			Detail: "the payment could not be confirmed as queued; retry with the same Idempotency-Key", Err: err}, nil), false
	case moved:
		return succeeded(http.StatusAccepted, saved, nil), true // a worker got the command despite the error
	}
	return failed(&Error{Code: CodeBusUnavailable, PaymentID: pay.ID, RetryAfter: time.Second,
		Detail: "the payment could not be queued; nothing was charged", Err: err}, saved), false
}

// gatewayKey is the idempotency key sent to the gateway for an operation on
// a payment: deterministic, so that every retry, redelivery and resumption
// of the same operation is deduplicated by the provider.
func gatewayKey(paymentID, op string) string { return paymentID + ":" + op }

// authorizeKey returns gatewayKey(paymentID, "authorize"): hint if it is
// that key already (built with the id by authorize), or a new string.
func authorizeKey(paymentID, hint string) string {
	if len(hint) == len(paymentID)+1+len(opAuthorize) && hint[:len(paymentID)] == paymentID &&
		hint[len(paymentID)] == ':' && hint[len(paymentID)+1:] == opAuthorize {
		return hint
	}
	return gatewayKey(paymentID, opAuthorize)
}

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
// may settle the payment with the gateway's answer but never fail it), or
// the outcome to return when the payment is no longer processing, or, for
// an exclusive claim, when another writer's claim is live (busy).
func (p *Processor) claimAttempt(ctx context.Context, pay *Payment, exclusive bool) (*Payment, bool, *outcome) {
	shared, busy := false, false
	saved, e := p.save(ctx, pay, func(q *Payment) error {
		busy = false
		if q.Status != StatusProcessing {
			return errUnchanged
		}
		now := p.now()
		shared = claimLive(q, now)
		if shared && exclusive {
			busy = true
			return errUnchanged
		}
		if until := now.Add(p.attemptWindow()); until.After(q.AttemptUntil) {
			q.AttemptUntil = until
		}
		q.UpdatedAt = now
		return nil
	})
	if e != nil {
		return nil, false, failed(&Error{Code: CodeOutcomeUnknown, PaymentID: pay.ID, RetryAfter: 5 * time.Second,
			Detail: "the payment could not be claimed for a new attempt; retry with the same Idempotency-Key", Err: e}, pay)
	}
	if saved.Status != StatusProcessing {
		return nil, false, fromPayment(saved)
	}
	if busy {
		return nil, false, &outcome{payment: saved, busy: true}
	}
	return saved, shared, nil
}

// releaseAttempt clears this writer's claim on a payment it leaves
// processing (a later delivery or the reconciler goes on), so that the next
// writer is not fenced off by an attempt that is over. It changes nothing if
// anyone wrote the payment since (their claim stands).
// It returns the payment as stored afterwards, or pay if that is unknown.
func (p *Processor) releaseAttempt(ctx context.Context, pay *Payment) *Payment {
	version := pay.Version
	saved, e := p.save(ctx, pay.Clone(), func(q *Payment) error {
		if q.Version != version || q.Status != StatusProcessing || q.AttemptUntil.IsZero() {
			return errUnchanged
		}
		q.AttemptUntil = time.Time{}
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
	if eo.claim {
		claimed, shared, o := p.claimAttempt(ctx, pay, eo.exclusive)
		if o != nil {
			return o
		}
		pay, fenced = claimed, !shared
	}
	o := p.attemptChain(ctx, pay, chain, eo, fenced)
	if fenced && !o.fencedOff && o.payment != nil && o.payment.Status == StatusProcessing {
		o.payment = p.releaseAttempt(ctx, o.payment)
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
		tx, ambiguous, err := p.call(ctx, g, "authorize", eo.attempts, func(ctx context.Context) (*gateway.Transaction, error) {
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

// errUnchanged, returned by a save mutation, means the payment already
// reflects the change (another request or worker stored it): save stores
// nothing and returns the payment as read.
var errUnchanged = errors.New("payments: unchanged")

// save applies mutate to the payment and stores it with optimistic
// concurrency. pay must be the caller's own copy: it is modified in place.
// On a version conflict save re-reads the payment and applies mutate again
// to the fresh state. The save is not cancelled with ctx: a gateway's answer
// must not be lost to a client disconnecting.
func (p *Processor) save(ctx context.Context, pay *Payment, mutate func(*Payment) error) (*Payment, *Error) {
	ctx = uncancelled(ctx)
	for range 8 {
		// mutate changes pay in place; if the store does not take the
		// change, pay is put back as it was, so that no caller reports a
		// state that was never stored (a "captured" payment next to
		// payment_outcome_unknown). A copy on the stack: no allocation.
		orig := *pay
		if err := mutate(pay); err != nil {
			if errors.Is(err, errUnchanged) {
				return pay, nil
			}
			*pay = orig
			return nil, asError(err)
		}
		err := p.store.Update(ctx, pay)
		if err == nil {
			return pay, nil
		}
		*pay = orig
		if !errors.Is(err, ErrStoreConflict) {
			return nil, p.storeError(err, pay.ID)
		}
		fresh, gerr := p.store.Get(ctx, pay.Merchant, pay.ID)
		if gerr != nil {
			return nil, p.storeError(gerr, pay.ID)
		}
		pay = fresh
	}
	return nil, &Error{Code: CodeStoreUnavailable, PaymentID: pay.ID, Detail: "payment updated concurrently too often", RetryAfter: time.Second}
}

// call invokes a gateway operation with retries on transient errors, each
// attempt bounded by the gateway timeout. ambiguous reports whether any
// attempt failed in a way that may have had an effect.
func (p *Processor) call(ctx context.Context, g *gateway.Gateway, op string, attempts int,
	fn func(context.Context) (*gateway.Transaction, error)) (tx *gateway.Transaction, ambiguous bool, err error) {
	// Each attempt is traced and measured by the gateway itself: a client
	// span "gateway.<op>" and payrail.gateway.request.duration.
	for a := 1; ; a++ {
		cctx := withDeadline(ctx, time.Now().Add(p.gatewayTimeout)) // context.WithTimeout, lazily
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

// followUp is the shared shape of capture, void and refund.
type followUp struct {
	op          string // capture, void, refund
	merchant    string
	paymentID   string
	key         string
	fingerprint string
	resourceID  string // for refunds: the refund id
	ifVersion   int64  // the version the payment must be at (0: any)
	run         func(ctx context.Context, pay *Payment, resumed bool, resourceID string) (*outcome, bool)
}

func (p *Processor) runFollowUp(ctx context.Context, f *followUp) (o *outcome) {
	start := time.Now()
	ctx, span := p.tel.start(ctx, f.op)
	defer func() { p.tel.end(ctx, span, f.op, start, o) }()
	if !p.enter() {
		return failed(errShuttingDown(), nil)
	}
	defer p.exit()
	if e := p.precheck(f.merchant, f.key, false); e != nil {
		return failed(e, nil)
	}
	if e := checkID("id", f.paymentID); e != nil {
		return failed(e, nil)
	}
	var c *claim
	resourceID := f.resourceID
	if f.key != "" {
		c, o = p.begin(ctx, f.merchant, f.key, f.fingerprint, f.resourceID)
		if o != nil {
			return o
		}
		resourceID = c.resourceID
	}
	pay, err := p.store.Get(ctx, f.merchant, f.paymentID)
	if err != nil {
		o = failed(p.storeError(err, f.paymentID), nil)
		c.finish(ctx, o, false)
		return o
	}
	if f.ifVersion != 0 && pay.Version != f.ifVersion && !(c != nil && c.resumed) {
		o = failed(&Error{Code: CodePreconditionFailed, PaymentID: pay.ID,
			Detail: fmt.Sprintf("the payment is at version %d, not %d: it changed since it was read; GET it again", pay.Version, f.ifVersion)}, nil)
		c.finish(ctx, o, false)
		return o
	}
	o, executed := f.run(ctx, pay, c != nil && c.resumed, resourceID)
	c.finish(ctx, o, executed)
	return o
}

func (p *Processor) capture(ctx context.Context, req *CaptureRequest) *outcome {
	if req.Amount < 0 {
		return failed(validationError(FieldError{Field: "amount", Code: CodeInvalid, Message: "amount must be a positive integer in minor units, or omitted for the full amount"}), nil)
	}
	return p.runFollowUp(ctx, &followUp{
		op: "capture", merchant: req.Merchant, paymentID: req.PaymentID, key: req.IdempotencyKey,
		fingerprint: idempotency.Fingerprint(http.MethodPost, "/payments/"+req.PaymentID+"/capture", canonicalAmount(req.Amount)),
		resourceID:  req.PaymentID, ifVersion: req.IfVersion,
		run: func(ctx context.Context, pay *Payment, resumed bool, _ string) (*outcome, bool) {
			if resumed && pay.Status == StatusCaptured {
				return succeeded(http.StatusOK, pay, nil), true
			}
			if pay.Status != StatusAuthorized {
				return failed(invalidTransition(pay, StatusCaptured), pay), false
			}
			amount := req.Amount
			if amount == 0 {
				amount = pay.Amount
			}
			if amount > pay.Amount {
				return failed(validationError(FieldError{Field: "amount", Code: CodeAmountTooLarge,
					Message: fmt.Sprintf("amount %d exceeds the authorized %d", amount, pay.Amount)}), pay), false
			}
			return p.execFollowUp(ctx, pay, "capture", gatewayKey(pay.ID, "capture"),
				func(ctx context.Context, g *gateway.Gateway) (*gateway.Transaction, error) {
					return g.Capture(ctx, &gateway.CaptureRequest{IdempotencyKey: gatewayKey(pay.ID, "capture"),
						PaymentID: pay.ID, Reference: pay.GatewayReference, Amount: amount, Currency: pay.Currency})
				},
				func(q *Payment, tx *gateway.Transaction) (*Refund, error) {
					if q.Status != StatusAuthorized {
						return nil, errUnchanged
					}
					q.AmountCaptured = amount
					if tx.AmountCaptured > 0 {
						q.AmountCaptured = tx.AmountCaptured
					}
					return nil, q.transition(StatusCaptured, p.now())
				}, http.StatusOK)
		},
	})
}

func (p *Processor) void(ctx context.Context, req *VoidRequest) *outcome {
	return p.runFollowUp(ctx, &followUp{
		op: "void", merchant: req.Merchant, paymentID: req.PaymentID, key: req.IdempotencyKey,
		fingerprint: idempotency.Fingerprint(http.MethodPost, "/payments/"+req.PaymentID+"/void", nil),
		resourceID:  req.PaymentID, ifVersion: req.IfVersion,
		run: func(ctx context.Context, pay *Payment, resumed bool, _ string) (*outcome, bool) {
			if resumed && pay.Status == StatusVoided {
				return succeeded(http.StatusOK, pay, nil), true
			}
			if pay.Status != StatusAuthorized {
				return failed(invalidTransition(pay, StatusVoided), pay), false
			}
			return p.execFollowUp(ctx, pay, "void", gatewayKey(pay.ID, "void"),
				func(ctx context.Context, g *gateway.Gateway) (*gateway.Transaction, error) {
					return g.Void(ctx, &gateway.VoidRequest{IdempotencyKey: gatewayKey(pay.ID, "void"),
						PaymentID: pay.ID, Reference: pay.GatewayReference})
				},
				func(q *Payment, _ *gateway.Transaction) (*Refund, error) {
					if q.Status != StatusAuthorized {
						return nil, errUnchanged
					}
					return nil, q.transition(StatusVoided, p.now())
				}, http.StatusOK)
		},
	})
}

func (p *Processor) refund(ctx context.Context, req *RefundRequest) *outcome {
	if req.Amount < 0 {
		return failed(validationError(FieldError{Field: "amount", Code: CodeInvalid, Message: "amount must be a positive integer in minor units, or omitted for the remaining amount"}), nil)
	}
	return p.runFollowUp(ctx, &followUp{
		op: "refund", merchant: req.Merchant, paymentID: req.PaymentID, key: req.IdempotencyKey,
		fingerprint: idempotency.Fingerprint(http.MethodPost, "/payments/"+req.PaymentID+"/refunds", canonicalAmount(req.Amount)),
		resourceID:  newID("re"), ifVersion: req.IfVersion,
		run: func(ctx context.Context, pay *Payment, resumed bool, refundID string) (*outcome, bool) {
			for i := range pay.Refunds {
				if resumed && pay.Refunds[i].ID == refundID {
					return succeeded(http.StatusCreated, pay, &pay.Refunds[i]), true
				}
			}
			if pay.Status != StatusCaptured {
				return failed(invalidTransition(pay, StatusRefunded), pay), false
			}
			remaining := pay.AmountCaptured - pay.AmountRefunded
			amount := req.Amount
			if amount == 0 {
				amount = remaining
			}
			if amount > remaining {
				return failed(validationError(FieldError{Field: "amount", Code: CodeAmountTooLarge,
					Message: fmt.Sprintf("amount %d exceeds the %d left to refund", amount, remaining)}), pay), false
			}
			return p.execFollowUp(ctx, pay, "refund", refundID,
				func(ctx context.Context, g *gateway.Gateway) (*gateway.Transaction, error) {
					return g.Refund(ctx, &gateway.RefundRequest{IdempotencyKey: refundID, PaymentID: pay.ID,
						RefundID: refundID, Reference: pay.GatewayReference, Amount: amount, Currency: pay.Currency})
				},
				func(q *Payment, tx *gateway.Transaction) (*Refund, error) {
					for i := range q.Refunds {
						if q.Refunds[i].ID == refundID {
							return &q.Refunds[i], errUnchanged // already recorded
						}
					}
					if q.AmountRefunded+amount > q.AmountCaptured {
						return nil, &Error{Code: CodeInvalidTransition, PaymentID: q.ID, Detail: "refunds exceed the captured amount"}
					}
					now := p.now()
					q.AmountRefunded += amount
					q.Refunds = append(q.Refunds, Refund{ID: refundID, PaymentID: q.ID, Amount: amount,
						Currency: q.Currency, Status: "succeeded", GatewayReference: tx.RefundReference, CreatedAt: now})
					to := StatusCaptured
					if q.AmountRefunded == q.AmountCaptured {
						to = StatusRefunded
					}
					if err := q.transition(to, now); err != nil {
						return nil, err
					}
					return &q.Refunds[len(q.Refunds)-1], nil
				}, http.StatusCreated)
		},
	})
}

// execFollowUp calls the payment's gateway for a capture, void or refund
// and applies the result. Failures that definitely had no effect are not
// stored under the idempotency key (the client may retry with it);
// ambiguous ones are reconciled by Lookup.
func (p *Processor) execFollowUp(ctx context.Context, pay *Payment, op, gwKey string,
	do func(context.Context, *gateway.Gateway) (*gateway.Transaction, error),
	apply func(*Payment, *gateway.Transaction) (*Refund, error), okStatus int) (*outcome, bool) {
	g, ok := p.router.Gateway(pay.Gateway)
	if !ok {
		return failed(&Error{Code: CodeGatewayUnavailable, PaymentID: pay.ID, RetryAfter: 5 * time.Second,
			Detail: fmt.Sprintf("gateway %q that processed the payment is not configured", pay.Gateway)}, pay), false
	}
	tx, ambiguous, err := p.call(ctx, g, op, p.retry.MaxAttempts, func(ctx context.Context) (*gateway.Transaction, error) {
		return do(ctx, g)
	})
	if err != nil && ambiguous && gateway.Retryable(err) {
		ltx, _, lerr := p.call(ctx, g, "lookup", p.retry.MaxAttempts, func(ctx context.Context) (*gateway.Transaction, error) {
			return g.Lookup(ctx, gwKey)
		})
		switch {
		case lerr == nil:
			tx, err = ltx, nil
		case errors.Is(lerr, gateway.ErrNotFound):
			ambiguous = false // the provider never processed it
		default:
			return failed(&Error{Code: CodeOutcomeUnknown, PaymentID: pay.ID, RetryAfter: 5 * time.Second,
				Detail: "the gateway's answer is not known yet; retry with the same Idempotency-Key", Err: err}, pay), true
		}
	}
	if err != nil {
		switch {
		case errors.Is(err, gateway.ErrInvalidRequest), errors.Is(err, gateway.ErrNotFound):
			return failed(&Error{Code: CodeGatewayRejected, PaymentID: pay.ID, Detail: "the gateway rejected the " + op, Err: err}, pay), true
		case errors.Is(err, gateway.ErrDeclined):
			var ge *gateway.Error
			errors.As(err, &ge)
			return failed(&Error{Code: CodeDeclined, PaymentID: pay.ID, DeclineCode: ge.DeclineCode, Detail: "the " + op + " was declined", Err: err}, pay), true
		}
		return failed(&Error{Code: CodeGatewayUnavailable, PaymentID: pay.ID, RetryAfter: time.Second,
			Detail: "the payment gateway was unavailable; nothing changed", Err: err}, pay), false
	}
	var ref *Refund
	saved, e := p.save(ctx, pay, func(q *Payment) error {
		r, err := apply(q, tx)
		ref = r
		return err
	})
	if e != nil {
		return failed(&Error{Code: CodeOutcomeUnknown, PaymentID: pay.ID, RetryAfter: 5 * time.Second,
			Detail: "the " + op + " succeeded at the gateway but could not be stored; retry with the same Idempotency-Key", Err: e}, pay), true
	}
	if ref != nil {
		for i := range saved.Refunds {
			if saved.Refunds[i].ID == ref.ID {
				ref = &saved.Refunds[i]
			}
		}
	}
	return succeeded(okStatus, saved, ref), true
}

// uncancelled is context.WithoutCancel, without its allocation for a
// context that cannot be cancelled anyway: store writes that record an
// outcome must not be abandoned halfway by a caller going away.
func uncancelled(ctx context.Context) context.Context {
	if ctx.Done() == nil {
		return ctx
	}
	return context.WithoutCancel(ctx)
}
