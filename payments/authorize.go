package payments

// Authorize, top to bottom: the request is checked, its idempotency key
// claimed (claim.go), the payment created, then authorized now (sync: one
// gateway attempt chain, attempt.go) or queued for the worker (async), and
// the outcome recorded under the key.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"time"

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
	if len(req.Metadata) > 0 {
		// authorize keeps the map: the caller's later changes must not
		// reach the payment.
		req.Metadata = maps.Clone(req.Metadata)
	}
	o := p.authorize(ctx, &req)
	return p.sdkPayment(ctx, req.Merchant, o)
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
	// The payment id, its gateway key, the request's fingerprint and its
	// idempotency token in one allocation.
	var canon [256]byte
	var buf [160]byte
	b := appendID(buf[:0], "pay", ":"+opAuthorize)
	keyEnd := len(b)
	b = idempotency.AppendFingerprint(b, http.MethodPost, "/payments", canonicalAuthorize(canon[:0], &n))
	fpEnd := len(b)
	all := string(idempotency.AppendToken(b))
	authKey := all[:keyEnd]
	c, o := p.begin(ctx, n.Merchant, n.IdempotencyKey, all[keyEnd:fpEnd], authKey[:len(authKey)-len(opAuthorize)-1], all[fpEnd:])
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
	now := c.begin.Now // when the request claimed its key, a moment ago
	if c.resumed {
		now = p.now()
	}
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
		authKey: c.authKey, gwReq: &c.gwReq, deadline: &c.gwCtx}), true
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

func routeRequest(pay *Payment) gateway.RouteRequest {
	return gateway.RouteRequest{PaymentID: pay.ID, Merchant: pay.Merchant, Origin: pay.Origin, Currency: pay.Currency, Amount: pay.Amount}
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
