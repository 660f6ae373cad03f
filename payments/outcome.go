package payments

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/idempotency"
)

// ProblemTypeBase prefixes every problem "type" URI; the fragment is the code.
const ProblemTypeBase = "https://github.com/payrail/payrail/blob/main/docs/problems.md#"

// outcome is the result of an operation: what the SDK returns and what the
// HTTP API writes, rendered once and stored for idempotent replay.
type outcome struct {
	status   int
	header   map[string]string
	body     []byte
	payment  *Payment
	refund   *Refund
	err      *Error
	replayed bool
	// retry: a transient failure left the payment processing for a later
	// attempt (worker deliveries before the last).
	retry bool
	// fencedOff: the payment was left processing because another writer's
	// gateway attempt may be in flight (see Fencing); payment is its state as
	// that writer stored it.
	fencedOff bool
	// busy: an exclusive claim (the Reconciler's) found another writer's
	// claim live, and nothing was done; payment is the payment as read.
	busy bool
}

// problem is the RFC 9457 problem document.
type problem struct {
	Type        string       `json:"type"`
	Title       string       `json:"title"`
	Status      int          `json:"status"`
	Detail      string       `json:"detail,omitempty"`
	Code        Code         `json:"code"`
	PaymentID   string       `json:"payment_id,omitempty"`
	DeclineCode string       `json:"decline_code,omitempty"`
	Errors      []FieldError `json:"errors,omitempty"`
}

const (
	contentJSON    = "application/json"
	contentProblem = "application/problem+json"
)

// jsonHeader is the stored header set of every success outcome. It is
// shared and must never be modified.
var jsonHeader = map[string]string{"Content-Type": contentJSON}

// marshal encodes v like encoding/json but without HTML escaping, so stored
// bodies are what a client would expect to read.
func marshal(v any) []byte {
	buf := bytes.NewBuffer(make([]byte, 0, 768))
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return []byte(`{"code":"internal_error"}`)
	}
	return buf.Bytes() // ends with a newline, as is customary for JSON APIs
}

func problemBody(e *Error) []byte {
	return marshal(problem{
		Type: ProblemTypeBase + string(e.Code), Title: e.Code.Title(), Status: e.HTTPStatus(),
		Detail: e.Detail, Code: e.Code, PaymentID: e.PaymentID, DeclineCode: e.DeclineCode, Errors: e.Fields,
	})
}

// failed builds an error outcome. pay may be nil.
func failed(e *Error, pay *Payment) *outcome {
	h := map[string]string{"Content-Type": contentProblem}
	if e.RetryAfter > 0 {
		h["Retry-After"] = strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds())))
	}
	return &outcome{status: e.HTTPStatus(), header: h, body: problemBody(e), err: e, payment: pay}
}

// succeeded builds a success outcome with the payment (or refund) as body.
func succeeded(status int, pay *Payment, ref *Refund) *outcome {
	// Encode on the stack and keep an exact-size copy: the body is retained
	// by the idempotency store for the key's lifetime.
	var buf [1024]byte
	var b []byte
	if ref != nil {
		b = ref.appendJSON(buf[:0])
	} else {
		b = pay.appendJSON(buf[:0])
	}
	body := append(make([]byte, 0, len(b)+1), b...)
	body = append(body, '\n')
	return &outcome{status: status, header: jsonHeader, body: body, payment: pay, refund: ref}
}

// fromPayment renders the outcome a create-payment request has given the
// payment's current state, used after execution and when resuming.
func fromPayment(pay *Payment) *outcome {
	switch pay.Status {
	case StatusPending, StatusRequiresReview: // accepted, not final
		return succeeded(http.StatusAccepted, pay, nil)
	case StatusDeclined:
		return failed(&Error{Code: CodeDeclined, PaymentID: pay.ID, DeclineCode: pay.DeclineCode,
			Detail: "the payment was declined: " + pay.DeclineCode}, pay)
	case StatusFailed:
		code := CodeGatewayUnavailable
		detail := "the payment gateway was unavailable; nothing was charged"
		if pay.FailureCode == string(CodeGatewayRejected) {
			code, detail = CodeGatewayRejected, "the gateway rejected the payment request"
		}
		return failed(&Error{Code: code, PaymentID: pay.ID, Detail: detail}, pay)
	case StatusProcessing:
		return failed(&Error{Code: CodeOutcomeUnknown, PaymentID: pay.ID, RetryAfter: 5 * time.Second,
			Detail: "the gateway's answer is not known yet; retry with the same Idempotency-Key or GET the payment"}, pay)
	}
	return succeeded(http.StatusCreated, pay, nil)
}

func (o *outcome) outcomeLabel() string {
	switch {
	case o.err != nil && o.err.Code == CodeDeclined:
		return "declined"
	case o.err != nil && o.payment != nil && o.payment.Status == StatusFailed:
		return "failed"
	case o.err != nil:
		return string(o.err.Code)
	case o.refund != nil:
		return "refunded"
	case o.payment != nil:
		return string(o.payment.Status)
	}
	return "ok"
}

// response converts the outcome for the idempotency store.
func (o *outcome) response() *idempotency.Response {
	return &idempotency.Response{StatusCode: o.status, Header: o.header, Body: o.body}
}

// replayed rebuilds an outcome from a stored response. The SDK-level values
// (payment, refund, error) are decoded from the stored body.
func replayed(r *idempotency.Response) *outcome {
	o := &outcome{status: r.StatusCode, header: r.Header, body: r.Body, replayed: true}
	if r.StatusCode >= 300 {
		var pr problem
		if err := json.Unmarshal(r.Body, &pr); err != nil {
			o.err = &Error{Code: CodeInternal, Detail: "stored response unreadable", Err: err}
			return o
		}
		o.err = &Error{Code: pr.Code, Detail: pr.Detail, PaymentID: pr.PaymentID, DeclineCode: pr.DeclineCode, Fields: pr.Errors}
		if ra, err := strconv.Atoi(r.Header["Retry-After"]); err == nil {
			o.err.RetryAfter = time.Duration(ra) * time.Second
		}
		return o
	}
	// A refund body has payment_id; a payment body has status + merchant.
	var probe struct {
		PaymentID string `json:"payment_id"`
	}
	_ = json.Unmarshal(r.Body, &probe)
	if probe.PaymentID != "" {
		o.refund = new(Refund)
		if err := json.Unmarshal(r.Body, o.refund); err != nil {
			o.err = &Error{Code: CodeInternal, Detail: "stored response unreadable", Err: err}
		}
		return o
	}
	o.payment = new(Payment)
	if err := json.Unmarshal(r.Body, o.payment); err != nil {
		o.err = &Error{Code: CodeInternal, Detail: "stored response unreadable", Err: err}
	}
	return o
}

// result returns the SDK view of the outcome.
func (o *outcome) paymentResult() (*Payment, error) {
	if o.err != nil {
		return o.payment, o.err
	}
	return o.payment, nil
}

// claim is ownership of an idempotency key for the duration of a request.
type claim struct {
	p                    *Processor
	merchant, key, token string
	resourceID           string // the resource this key creates or acts on
	resumed              bool   // took over a crashed request's lease
	hold                 idempotency.Hold

	// Per-request storage allocated with the claim rather than one by one.
	begin   idempotency.BeginRequest
	route   gateway.RouteRequest
	authKey string  // a new payment's gatewayKey(id, "authorize"), sharing the id's string
	pay     Payment // a new payment (handed to the caller: it keeps the claim alive, no more)
	gwReq   gateway.AuthorizeRequest
}

// begin claims the key or returns the outcome to answer with instead
// (replay, conflict, store failure). fingerprint covers method, path and
// canonical body; resourceID is the id a new request will use.
func (p *Processor) begin(ctx context.Context, merchant, key, fingerprint, resourceID string) (*claim, *outcome) {
	now := p.now()
	c := &claim{p: p, merchant: merchant, key: key}
	c.begin = idempotency.BeginRequest{
		Merchant: merchant, Key: key, Fingerprint: fingerprint, ResourceID: resourceID,
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
		if err := c.p.idem.Complete(ctx, idempotency.CompleteRequest{Merchant: c.merchant, Key: c.key, Token: c.token,
			Response: o.response(), Now: c.p.now(), TTL: c.p.idemTTL}); err != nil {
			c.p.log.ErrorContext(ctx, "payments: storing idempotent response failed; a retry will resume the payment", "error", err)
		}
	default:
		if err := c.p.idem.Release(ctx, c.merchant, c.key, c.token); err != nil {
			c.p.log.WarnContext(ctx, "payments: releasing idempotency key failed", "error", err)
		}
	}
}
