package stripe

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync/atomic"
	"time"

	stripego "github.com/stripe/stripe-go/v82"

	"github.com/payrail/payrail/gateway/driver"
)

// softDeclines are the decline codes for which Stripe advises attempting
// the payment again: another attempt (or another gateway) may approve.
var softDeclines = map[string]bool{
	"try_again_later":      true,
	"issuer_not_available": true,
	"processing_error":     true,
	"reenter_transaction":  true,
	"approve_with_id":      true,
}

// callInfo records what the transport saw of a call's HTTP requests.
type callInfo struct {
	wrote      atomic.Bool  // a request of the call was completely written
	status     atomic.Int32 // the last request's response status, 0 if none
	retryAfter atomic.Int64 // the last Retry-After, in nanoseconds
}

type callInfoKey struct{}

func withCallInfo(ctx context.Context) (context.Context, *callInfo) {
	ci := &callInfo{}
	return context.WithValue(ctx, callInfoKey{}, ci), ci
}

// tracingTransport records, per call, whether each request was written to
// the connection: a request that failed before it was completely written
// cannot have been processed by Stripe.
type tracingTransport struct{ base http.RoundTripper }

func (t tracingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ci, _ := req.Context().Value(callInfoKey{}).(*callInfo)
	if ci == nil {
		return t.base.RoundTrip(req)
	}
	ci.status.Store(0) // per request; wrote stays set once any request of the call was sent
	trace := &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				ci.wrote.Store(true)
			}
		},
	}
	res, err := t.base.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
	if res != nil {
		ci.status.Store(int32(res.StatusCode))
		if s, perr := strconv.Atoi(res.Header.Get("Retry-After")); perr == nil && s > 0 {
			ci.retryAfter.Store(int64(time.Duration(s) * time.Second))
		}
	}
	return res, err
}

// maxMessage bounds the provider message copied into errors.
const maxMessage = 200

// classify maps an error of a stripe-go call to a *driver.Error. It never
// wraps the *stripe.Error itself: its Error() renders the whole object,
// including a PaymentIntent's client secret. Transport errors are kept for
// errors.Is (they name the URL, never the key, which travels in a header).
func classify(ctx context.Context, err error, ci *callInfo) error {
	var se *stripego.Error
	if errors.As(err, &se) {
		return fromStripeError(se, ci)
	}
	status := int(ci.status.Load())
	wrote := ci.wrote.Load()
	switch {
	case status == 0 && !wrote:
		// Nothing reached Stripe: connection refused, DNS, TLS, or the
		// context ended before the request was written.
		kind := driver.KindTransient
		code := "connection_error"
		if ctx.Err() != nil {
			code = "timeout"
		}
		return &driver.Error{Kind: kind, Code: code, NotProcessed: true,
			Message: "the request did not reach Stripe", Err: err}
	case status == 0:
		code := "connection_error"
		if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
			code = "timeout"
		}
		return &driver.Error{Kind: driver.KindTransient, Code: code,
			Message: "the request was sent but no answer came back; outcome unknown", Err: err}
	}
	// An HTTP error whose body is not a Stripe error (a proxy or load
	// balancer answered).
	e := &driver.Error{Code: "http_" + strconv.Itoa(status), Err: err,
		Message: fmt.Sprintf("Stripe answered HTTP %d without a Stripe error body", status)}
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.Kind, e.NotProcessed = driver.KindAuthentication, true
	case status == http.StatusTooManyRequests:
		e.Kind, e.NotProcessed = driver.KindTransient, true
		e.RetryAfter = time.Duration(ci.retryAfter.Load())
	case status >= 500:
		e.Kind = driver.KindTransient
	default:
		e.Kind = driver.KindUnknown
	}
	return e
}

// fromStripeError maps a Stripe API error (see
// https://docs.stripe.com/error-codes and /declines/codes).
func fromStripeError(se *stripego.Error, ci *callInfo) *driver.Error {
	status := se.HTTPStatusCode
	if status == 0 {
		status = int(ci.status.Load())
	}
	e := &driver.Error{Code: string(se.Code), Message: truncate(se.Msg),
		Err: fmt.Errorf("stripe: HTTP %d, type %s, request %s", status, se.Type, se.RequestID)}
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		// The message may quote part of the key: drop it.
		e.Kind, e.NotProcessed, e.Message = driver.KindAuthentication, true, "Stripe refused the API key"
		if e.Code == "" {
			e.Code = "authentication_error"
			if status == http.StatusForbidden {
				e.Code = "permission_error"
			}
		}
	case se.Type == stripego.ErrorTypeCard:
		e.Kind, e.NotProcessed = driver.KindDeclined, true
		e.DeclineCode = declineCode(se)
		e.SoftDecline = softDeclines[e.DeclineCode]
	case status == http.StatusTooManyRequests || se.Code == stripego.ErrorCodeRateLimit || se.Code == stripego.ErrorCodeLockTimeout:
		// Refused before processing: rate limit, or the object was locked.
		e.Kind, e.NotProcessed = driver.KindTransient, true
		e.RetryAfter = time.Duration(ci.retryAfter.Load())
		if e.RetryAfter == 0 {
			e.RetryAfter = time.Second
		}
	case se.Type == stripego.ErrorTypeIdempotency:
		// The key was used with other parameters: another request holds
		// it, and may have been processed.
		e.Kind = driver.KindInvalidRequest
		if e.Code == "" {
			e.Code = "idempotency_error"
		}
	case se.Code == stripego.ErrorCodeIdempotencyKeyInUse || status == http.StatusConflict:
		// A concurrent request with the same key is still running.
		e.Kind = driver.KindTransient
	case se.Code == stripego.ErrorCodeResourceMissing || status == http.StatusNotFound:
		e.Kind, e.NotProcessed = driver.KindNotFound, true
	case se.Type == stripego.ErrorTypeAPI || status >= 500:
		// Stripe failed while processing: the effect is unknown.
		e.Kind = driver.KindTransient
		if e.Code == "" {
			e.Code = "api_error"
		}
	case se.Type == stripego.ErrorTypeInvalidRequest:
		e.Kind, e.NotProcessed = driver.KindInvalidRequest, true
		if e.Code == "" {
			e.Code = "invalid_request_error"
		}
	default:
		e.Kind = driver.KindUnknown
	}
	return e
}

// declineCode is the issuer's decline code of a card error, or its error
// code (expired_card, incorrect_cvc...) when Stripe gives none.
func declineCode(se *stripego.Error) string {
	if se.DeclineCode != "" {
		return string(se.DeclineCode)
	}
	if se.Code != "" {
		return string(se.Code)
	}
	return "card_declined"
}

func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	return s[:maxMessage] + "…"
}
