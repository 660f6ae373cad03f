package payments

// The idempotency claim every mutating request takes first (begin) and
// settles last (finish): a replay returns the stored outcome, a concurrent
// request with the same key waits or is refused, and the outcome is stored
// only when it is final.

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/idempotency"
)

// claim is ownership of an idempotency key for the duration of a request.
type claim struct {
	p          *Processor
	token      string
	resourceID string // the resource this key creates or acts on
	resumed    bool   // took over a crashed request's lease
	hold       idempotency.Hold

	// Per-request storage allocated with the claim rather than one by one
	// (a claim stays within 1 KiB: one size class up would cost 128 bytes).
	begin   idempotency.BeginRequest // also the claim's merchant and key
	route   gateway.RouteRequest
	authKey string  // a new payment's gatewayKey(id, "authorize"), sharing the id's string
	pay     Payment // a new payment (handed to the caller: it keeps the claim alive, no more)
	gwReq   gateway.AuthorizeRequest
	gwCtx   deadlineCtx          // the first gateway attempt's context
	resp    idempotency.Response // the stored response (stores copy it or encode it)
}

// begin claims the key or returns the outcome to answer with instead
// (replay, conflict, store failure). fingerprint covers method, path and
// canonical body; resourceID is the id a new request will use; token, if
// set, is the new token of the key's lease (empty: the store makes one).
func (p *Processor) begin(ctx context.Context, merchant, key, fingerprint, resourceID, token string) (*claim, *outcome) {
	now := p.now()
	c := &claim{p: p}
	c.begin = idempotency.BeginRequest{
		Merchant: merchant, Key: key, Fingerprint: fingerprint, ResourceID: resourceID, Token: token,
		Lease: p.lease, TTL: p.idemTTL, Now: now,
	}
	res, err := p.idem.Begin(ctx, &c.begin)
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, failed(&Error{Code: CodeUnavailable, Detail: "request cancelled", Err: err}, nil)
		}
		if errors.Is(err, idempotency.ErrInvalidInput) {
			return nil, failed(&Error{Code: CodeValidation, Detail: storeInvalidDetail, Err: err}, nil)
		}
		if errors.Is(err, idempotency.ErrFull) {
			if p.tel.storeFull(ctx, now) {
				p.log.WarnContext(ctx, "payments: idempotency store full; refusing new keys (503 idempotency_store_full) until records expire: "+
					"raise its max_entries or use a shared store (one line every 10s)", "error", err)
			}
			return nil, failed(&Error{Code: CodeIdempotencyStoreFull, RetryAfter: storeFullRetryAfter, Err: err,
				Detail: "the idempotency store cannot take a new key right now; retry later with the same Idempotency-Key"}, nil)
		}
		p.log.ErrorContext(ctx, "payments: idempotency store failed", "error", err)
		return nil, failed(&Error{Code: CodeStoreUnavailable, Detail: "idempotency store unavailable", RetryAfter: time.Second, Err: err}, nil)
	}
	p.tel.idem.Add(ctx, 1, p.tel.cached([4]string{"\x00idem", res.Outcome.String()}, func() []attribute.KeyValue {
		return []attribute.KeyValue{attrIdemOut.String(res.Outcome.String())}
	}).add...)
	rec := res.Record
	switch res.Outcome {
	case idempotency.Replay:
		return nil, replayed(rec.Response)
	case idempotency.Mismatch:
		return nil, failed(&Error{Code: CodeIdempotencyReused,
			Detail: "this Idempotency-Key was already used with a different request; use a new key"}, nil)
	case idempotency.InProgress:
		wait := max(rec.LeaseExpiresAt.Sub(now), time.Second)
		return nil, failed(&Error{Code: CodeIdempotencyInUse, RetryAfter: wait,
			Detail: "a request with this Idempotency-Key is still being processed; retry later"}, nil)
	}
	c.token, c.resourceID, c.resumed = rec.Token, rec.ResourceID, res.Outcome == idempotency.Reacquired
	p.idem.Hold(ctx, &c.hold, idempotency.HoldRequest{Merchant: merchant, Key: key, Token: c.token,
		Lease: p.lease, Now: p.now, OnError: p.onLeaseErr})
	return c, nil
}

// leaseRenewalFailed logs a failed renewal of a claim's lease.
func (p *Processor) leaseRenewalFailed(ctx context.Context, err error) {
	p.log.WarnContext(ctx, "payments: renewing idempotency lease failed", "error", err)
}

// finish settles the claim according to the outcome: stored if the
// operation executed (the gateway was attempted or the command published);
// left in progress if the gateway's answer is unknown, so that a retry after
// the lease resumes the same payment; released otherwise.
func (c *claim) finish(ctx context.Context, o *outcome, executed bool) {
	if c == nil {
		return
	}
	c.hold.Stop()
	ctx = uncancelled(ctx)
	switch {
	case o.err != nil && o.err.Code == CodeOutcomeUnknown:
		// Keep the record in progress; its lease lapses and a retry resumes.
	case c.resumed && !executed && o.status >= 500:
		// A resumed request that could not even read what the crashed one
		// left (a store error) proves nothing about it: releasing the key
		// would let a retry create a second payment (or refund) beside the
		// first. Keep it in progress; a retry resumes the same resource.
		c.p.log.WarnContext(ctx, "payments: resumed request failed before it could tell what its predecessor did; its key stays held",
			"resource_id", c.resourceID, "status", o.status)
	case executed:
		if err := c.p.idem.Complete(ctx, idempotency.CompleteRequest{Merchant: c.begin.Merchant, Key: c.begin.Key, Token: c.token,
			Response: o.response(&c.resp), Now: c.p.now(), TTL: c.p.idemTTL}); err != nil {
			c.p.log.ErrorContext(ctx, "payments: storing idempotent response failed; a retry will resume the payment", "error", err)
		}
	default:
		if err := c.p.idem.Release(ctx, c.begin.Merchant, c.begin.Key, c.token); err != nil {
			c.p.log.WarnContext(ctx, "payments: releasing idempotency key failed", "error", err)
		}
	}
}
