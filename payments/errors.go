package payments

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Code is a stable, machine-readable error code. Codes never change meaning;
// the HTTP API sends them in the problem document's "code" member and the
// problem "type" URI ends with them.
type Code string

// Error codes, with the HTTP status each maps to.
const (
	CodeMalformedRequest   Code = "malformed_request"        // 400: invalid JSON, unknown field, body too large
	CodeIdempotencyMissing Code = "idempotency_key_missing"  // 400
	CodeIdempotencyInvalid Code = "idempotency_key_invalid"  // 400: too long or not printable ASCII
	CodeUnauthorized       Code = "unauthorized"             // 401
	CodeForbidden          Code = "forbidden"                // 403
	CodeNotFound           Code = "not_found"                // 404
	CodeMethodNotAllowed   Code = "method_not_allowed"       // 405
	CodeUnsupportedMedia   Code = "unsupported_media_type"   // 415
	CodeValidation         Code = "validation_failed"        // 422: see Error.Fields
	CodeInvalidTransition  Code = "invalid_state_transition" // 409
	CodeIdempotencyReused  Code = "idempotency_key_reused"   // 409: same key, different payload
	CodeIdempotencyInUse   Code = "idempotency_key_in_use"   // 409: same key still running
	CodeDeclined           Code = "payment_declined"         // 402: see Error.DeclineCode
	CodeGatewayRejected    Code = "gateway_rejected"         // 422: the gateway refused the request as invalid
	CodeGatewayUnavailable Code = "gateway_unavailable"      // 503: transient gateway failure after retries
	CodeBusUnavailable     Code = "bus_unavailable"          // 503: the async command could not be published
	CodeStoreUnavailable   Code = "store_unavailable"        // 503: payment or idempotency store failed
	CodeUnavailable        Code = "service_unavailable"      // 503: shutting down or not ready
	CodeQueueFull          Code = "async_queue_full"         // 503: the in-process queue cannot take more work it could finish at shutdown
	CodeInternal           Code = "internal_error"           // 500
	CodeOutcomeUnknown     Code = "payment_outcome_unknown"  // 503: gateway outcome ambiguous; retry with the same key to resume
	CodeCardDataNotAllowed Code = "card_data_not_allowed"    // field code: a raw card number where a token is expected
	CodeNotPayableCurrency Code = "currency_not_supported"   // field code
	CodeAmountTooLarge     Code = "amount_exceeds_remaining" // field code: capture/refund over what is left
	CodeRequired           Code = "required"                 // field code
	CodeInvalid            Code = "invalid"                  // field code
	CodeTooLong            Code = "too_long"                 // field code
)

// CodeIdempotencyStoreFull (503): the idempotency store holds as many
// unexpired keys as it may (the in-process store's max_entries) and cannot
// take a new one; nothing was executed. Keys it holds still replay. Retry
// with the same key after Retry-After.
const CodeIdempotencyStoreFull Code = "idempotency_store_full"

// CodePreconditionFailed (412): the request's If-Match (IfVersion) names a
// version of the payment that is no longer current: another change came
// first. Nothing was executed; GET the payment again and decide.
const CodePreconditionFailed Code = "precondition_failed"

// CodeWebhookSignature (400): a provider webhook whose signature does not
// verify with the gateway's signing secrets (missing, wrong, or signed
// outside the tolerance window). Nothing was changed.
const CodeWebhookSignature Code = "webhook_signature_invalid"

// CodeWebhookNotConfigured (404): webhooks for a gateway that is not
// configured, has no webhook support, or has no signing secret.
const CodeWebhookNotConfigured Code = "webhook_not_configured"

// storeFullRetryAfter is the Retry-After of CodeIdempotencyStoreFull. A
// full store makes room as records expire (under steady traffic, about as
// many a second as new keys arrive) and as requests in progress finish,
// which they do within a lease (30 s by default). Sooner would have
// clients hammer a saturated process; waiting until the oldest record
// expires could be hours for a store filled by a burst, while room often
// comes much sooner.
const storeFullRetryAfter = 30 * time.Second

var codeStatus = map[Code]int{
	CodeMalformedRequest:   http.StatusBadRequest,
	CodeIdempotencyMissing: http.StatusBadRequest,
	CodeIdempotencyInvalid: http.StatusBadRequest,
	CodeUnauthorized:       http.StatusUnauthorized,
	CodeForbidden:          http.StatusForbidden,
	CodeNotFound:           http.StatusNotFound,
	CodeMethodNotAllowed:   http.StatusMethodNotAllowed,
	CodeUnsupportedMedia:   http.StatusUnsupportedMediaType,
	CodeValidation:         http.StatusUnprocessableEntity,
	CodeInvalidTransition:  http.StatusConflict,
	CodePreconditionFailed: http.StatusPreconditionFailed,
	CodeIdempotencyReused:  http.StatusConflict,
	CodeIdempotencyInUse:   http.StatusConflict,
	CodeDeclined:           http.StatusPaymentRequired,
	CodeGatewayRejected:    http.StatusUnprocessableEntity,
	CodeGatewayUnavailable: http.StatusServiceUnavailable,
	CodeBusUnavailable:     http.StatusServiceUnavailable,
	CodeStoreUnavailable:   http.StatusServiceUnavailable,
	CodeUnavailable:        http.StatusServiceUnavailable,
	CodeQueueFull:          http.StatusServiceUnavailable,
	CodeInternal:           http.StatusInternalServerError,
	CodeOutcomeUnknown:     http.StatusServiceUnavailable,

	CodeIdempotencyStoreFull: http.StatusServiceUnavailable,
	CodeWebhookSignature:     http.StatusBadRequest,
	CodeWebhookNotConfigured: http.StatusNotFound,
}

var codeTitle = map[Code]string{
	CodeMalformedRequest:   "Malformed request",
	CodeIdempotencyMissing: "Idempotency-Key header required",
	CodeIdempotencyInvalid: "Invalid Idempotency-Key",
	CodeUnauthorized:       "Unauthorized",
	CodeForbidden:          "Forbidden",
	CodeNotFound:           "Not found",
	CodeMethodNotAllowed:   "Method not allowed",
	CodeUnsupportedMedia:   "Unsupported media type",
	CodeValidation:         "Validation failed",
	CodeInvalidTransition:  "Invalid state transition",
	CodePreconditionFailed: "Precondition failed",
	CodeIdempotencyReused:  "Idempotency key reused with a different request",
	CodeIdempotencyInUse:   "Idempotency key in use by a request still running",
	CodeDeclined:           "Payment declined",
	CodeGatewayRejected:    "Gateway rejected the request",
	CodeGatewayUnavailable: "Payment gateway unavailable",
	CodeBusUnavailable:     "Message bus unavailable",
	CodeStoreUnavailable:   "Store unavailable",
	CodeUnavailable:        "Service unavailable",
	CodeQueueFull:          "Async queue full",
	CodeInternal:           "Internal error",
	CodeOutcomeUnknown:     "Payment outcome not yet known",

	CodeIdempotencyStoreFull: "Idempotency store full",
	CodeWebhookSignature:     "Webhook signature does not verify",
	CodeWebhookNotConfigured: "Webhooks not configured for this gateway",
}

// HTTPStatus returns the HTTP status code the API uses for c (500 for
// unknown codes).
func (c Code) HTTPStatus() int {
	if s, ok := codeStatus[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Title returns a short human-readable summary of c.
func (c Code) Title() string {
	if t, ok := codeTitle[c]; ok {
		return t
	}
	return string(c)
}

// FieldError is one invalid field of a request.
type FieldError struct {
	// Field is the JSON name of the field, e.g. "amount" or "metadata.order".
	Field string `json:"field"`
	// Code is a stable reason: required, invalid, too_long, currency_not_supported...
	Code Code `json:"code"`
	// Message explains the problem to a developer.
	Message string `json:"message"`
}

// Error is the error type returned by the Processor. Test with errors.Is
// against the sentinels below (matched by Code) or errors.As for details.
type Error struct {
	// Code is the stable error code.
	Code Code
	// Detail explains this occurrence.
	Detail string
	// PaymentID is the affected payment, when one exists (declines,
	// failures, transitions).
	PaymentID string
	// DeclineCode is the issuer's reason for CodeDeclined.
	DeclineCode string
	// Fields lists invalid fields for CodeValidation.
	Fields []FieldError
	// RetryAfter suggests when to retry (CodeIdempotencyInUse, 503s).
	RetryAfter time.Duration
	// Err is the underlying cause; it is never shown to API clients.
	Err error
}

// Sentinels for errors.Is; an *Error matches the sentinel with its Code.
var (
	ErrNotFound          = &Error{Code: CodeNotFound}
	ErrValidation        = &Error{Code: CodeValidation}
	ErrInvalidTransition = &Error{Code: CodeInvalidTransition}
	// ErrPreconditionFailed: IfVersion (If-Match) is not the payment's
	// current version.
	ErrPreconditionFailed = &Error{Code: CodePreconditionFailed}
	ErrDeclined           = &Error{Code: CodeDeclined}
	ErrGatewayUnavailable = &Error{Code: CodeGatewayUnavailable}
	ErrGatewayRejected    = &Error{Code: CodeGatewayRejected}
	ErrIdempotencyReused  = &Error{Code: CodeIdempotencyReused}
	ErrIdempotencyInUse   = &Error{Code: CodeIdempotencyInUse}
	ErrIdempotencyMissing = &Error{Code: CodeIdempotencyMissing}
	ErrIdempotencyInvalid = &Error{Code: CodeIdempotencyInvalid}
	ErrBusUnavailable     = &Error{Code: CodeBusUnavailable}
	ErrStoreUnavailable   = &Error{Code: CodeStoreUnavailable}
	ErrUnavailable        = &Error{Code: CodeUnavailable}
	ErrQueueFull          = &Error{Code: CodeQueueFull}
	ErrOutcomeUnknown     = &Error{Code: CodeOutcomeUnknown}

	ErrIdempotencyStoreFull = &Error{Code: CodeIdempotencyStoreFull}
)

// Error returns the code and detail.
func (e *Error) Error() string {
	s := "payments: " + string(e.Code)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is an *Error with the same Code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// HTTPStatus returns the HTTP status for the error's code.
func (e *Error) HTTPStatus() int { return e.Code.HTTPStatus() }

func newError(code Code, detail string) *Error { return &Error{Code: code, Detail: detail} }

func invalidTransition(p *Payment, to Status) *Error {
	return &Error{Code: CodeInvalidTransition, PaymentID: p.ID,
		Detail: fmt.Sprintf("payment %s is %s; it cannot become %s", p.ID, p.Status, to)}
}

func validationError(fields ...FieldError) *Error {
	detail := "the request has invalid fields"
	if len(fields) == 1 {
		detail = fields[0].Field + ": " + fields[0].Message
	}
	return &Error{Code: CodeValidation, Detail: detail, Fields: fields}
}

// asError converts any error to *Error; unknown errors become internal.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, Detail: "internal error", Err: err}
}
