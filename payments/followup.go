package payments

// Capture, Void and Refund, top to bottom: each checks its request, claims
// its idempotency key (claim.go), reads the payment, and runs one gateway
// operation on it (execFollowUp) whose result is saved with the payment.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/idempotency"
)

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
		c, o = p.begin(ctx, f.merchant, f.key, f.fingerprint, f.resourceID, "")
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
