package payments

// What every operation shares: the processor's state checks, the request
// precheck, and save, the compare-and-set update every state change goes
// through.

import (
	"context"
	"errors"
	"maps"
	"time"

	"github.com/payrail/payrail/idempotency"
)

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
// metadata map, which a store may share read-only (Store.Get): that is
// cloned.
func (p *Payment) detach() *Payment {
	if p != nil && len(p.Metadata) > 0 {
		p.Metadata = maps.Clone(p.Metadata)
	}
	return p
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
		if p.events || len(pay.Events) > 0 {
			// The outbox: the event goes in the same write as the change. A
			// worker's event sweep finds it (EventStore.ListEventsDue).
			// Without WithEvents, the events a payment has are still kept
			// right (the state of its latest one is the payment's).
			recordEvent(&orig, pay, orig.Version+1, p.now(), p.events)
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

// uncancelled is context.WithoutCancel, without its allocation for a
// context that cannot be cancelled anyway: store writes that record an
// outcome must not be abandoned halfway by a caller going away.
func uncancelled(ctx context.Context) context.Context {
	if ctx.Done() == nil {
		return ctx
	}
	return context.WithoutCancel(ctx)
}
