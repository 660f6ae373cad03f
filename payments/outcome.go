package payments

// An operation's outcome: the payment or problem it answers with, encoded
// once for the HTTP response, the idempotent replay and the SDK's return
// values.

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"time"

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

// result returns the SDK view of the outcome.
func (o *outcome) paymentResult() (*Payment, error) {
	if o.err != nil {
		return o.payment, o.err
	}
	return o.payment, nil
}

// response converts the outcome for the idempotency store, in r.
func (o *outcome) response(r *idempotency.Response) *idempotency.Response {
	*r = idempotency.Response{StatusCode: o.status, Header: o.header, Body: o.body}
	return r
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
