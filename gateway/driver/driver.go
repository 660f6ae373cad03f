// Package driver defines the interface a payment gateway driver implements,
// and the request, result and error types shared with package gateway.
//
// Applications use package gateway, which re-exports these types and wraps
// the driver in a portable *gateway.Gateway.
package driver

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// CaptureMethod says whether an authorization is captured at once.
type CaptureMethod string

// Capture methods.
const (
	// CaptureAutomatic authorizes and captures in one step (a purchase).
	CaptureAutomatic CaptureMethod = "automatic"
	// CaptureManual only authorizes; funds are captured later by Capture.
	CaptureManual CaptureMethod = "manual"
)

// AuthorizeRequest asks the provider to authorize (and, with
// CaptureAutomatic, capture) a payment.
type AuthorizeRequest struct {
	// IdempotencyKey is sent to the provider so that a retried request is
	// never processed twice. It is deterministic per payment operation.
	IdempotencyKey string
	// PaymentID is payrail's payment identifier, stored in the provider's
	// metadata for reconciliation.
	PaymentID string
	// Merchant is the merchant the payment belongs to.
	Merchant string
	// Amount is in minor units of Currency; Currency is ISO 4217 upper case.
	Amount   int64
	Currency string
	// PaymentMethod is the provider token for the payment method (never a PAN).
	PaymentMethod string
	// CaptureMethod is automatic or manual.
	CaptureMethod CaptureMethod
	// Origin is the channel the payment came from (web, pos, partner-x...).
	Origin string
	// Metadata is copied to the provider where supported.
	Metadata map[string]string
}

// CaptureRequest captures an authorized payment, fully or partially.
type CaptureRequest struct {
	IdempotencyKey string
	PaymentID      string
	// Reference is the provider's identifier returned by Authorize.
	Reference string
	// Amount to capture in minor units; it is at most the authorized amount.
	Amount   int64
	Currency string
}

// VoidRequest cancels an authorization that was not captured.
type VoidRequest struct {
	IdempotencyKey string
	PaymentID      string
	Reference      string
}

// RefundRequest refunds part or all of a captured payment.
type RefundRequest struct {
	IdempotencyKey string
	PaymentID      string
	// RefundID is payrail's identifier for this refund.
	RefundID  string
	Reference string
	Amount    int64
	Currency  string
}

// Status is the provider-side state of a payment.
type Status string

// Provider-side statuses.
const (
	StatusAuthorized Status = "authorized"
	StatusCaptured   Status = "captured"
	StatusVoided     Status = "voided"
	StatusRefunded   Status = "refunded" // fully refunded
	StatusDeclined   Status = "declined"
)

// Transaction is the provider's view of a payment after an operation.
type Transaction struct {
	// Reference is the provider's identifier for the payment.
	Reference string
	// Status is the payment's provider-side status after the operation.
	Status Status
	// Amount is the authorized amount; AmountCaptured and AmountRefunded are
	// cumulative. All in minor units of Currency.
	Amount         int64
	AmountCaptured int64
	AmountRefunded int64
	Currency       string
	// DeclineCode is set when Status is StatusDeclined.
	DeclineCode string
	// RefundReference is the provider's identifier of the refund created by
	// a Refund call (or found by Lookup of a refund's key).
	RefundReference string
}

// Driver opens gateways from URLs whose scheme is its registered name.
type Driver interface {
	// Open returns a gateway configured by u.
	Open(ctx context.Context, u *url.URL) (Gateway, error)
}

// Gateway is a payment provider. Implementations must be safe for
// concurrent use, send IdempotencyKey to the provider, and report failures
// as *Error (see Kind and Error.NotProcessed).
type Gateway interface {
	// Authorize authorizes (and with automatic capture, captures) a payment.
	// A decline is reported as an *Error of KindDeclined.
	Authorize(ctx context.Context, r *AuthorizeRequest) (*Transaction, error)
	// Capture captures an authorization.
	Capture(ctx context.Context, r *CaptureRequest) (*Transaction, error)
	// Void cancels an uncaptured authorization.
	Void(ctx context.Context, r *VoidRequest) (*Transaction, error)
	// Refund refunds a captured payment; RefundReference identifies the refund.
	Refund(ctx context.Context, r *RefundRequest) (*Transaction, error)
	// Lookup returns the outcome of the operation sent with idempotencyKey,
	// for reconciling ambiguous results. A declined authorization is returned
	// as a Transaction with StatusDeclined and a nil error. If the provider
	// never processed the key it returns an *Error of KindNotFound.
	Lookup(ctx context.Context, idempotencyKey string) (*Transaction, error)
	// Close releases the gateway's resources.
	Close() error
	// As converts to the driver's native type.
	As(i any) bool
}

// Pinger is implemented by gateways that can check connectivity.
type Pinger interface {
	// Ping returns nil if the provider is reachable with these credentials.
	Ping(ctx context.Context) error
}

// Kind classifies gateway errors.
type Kind int

// Error kinds.
const (
	// KindUnknown is an unclassified failure: treat as transient and ambiguous.
	KindUnknown Kind = iota
	// KindDeclined: the provider refused the payment (DeclineCode says why).
	// Nothing was charged. Retrying elsewhere is allowed only for soft
	// declines and only where policy permits.
	KindDeclined
	// KindTransient: a temporary failure (network, timeout, rate limit,
	// provider 5xx). Retrying with the same idempotency key is safe.
	KindTransient
	// KindInvalidRequest: the request is wrong (bad token, amount over the
	// capturable, state conflict at the provider). Retrying will not help.
	KindInvalidRequest
	// KindNotFound: the provider does not know the payment or key.
	KindNotFound
	// KindAuthentication: the gateway's credentials or configuration are wrong.
	KindAuthentication
)

var kindNames = [...]string{"unknown", "declined", "transient", "invalid_request", "not_found", "authentication"}

// String returns the kind's snake_case name, used in metrics and logs.
func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return fmt.Sprintf("kind(%d)", int(k))
	}
	return kindNames[k]
}

// Sentinel errors matching *Error by kind with errors.Is.
var (
	ErrDeclined       = &Error{Kind: KindDeclined}
	ErrTransient      = &Error{Kind: KindTransient}
	ErrInvalidRequest = &Error{Kind: KindInvalidRequest}
	ErrNotFound       = &Error{Kind: KindNotFound}
	ErrAuthentication = &Error{Kind: KindAuthentication}
	// ErrClosed is returned by a closed gateway.
	ErrClosed = errors.New("gateway: closed")
)

// Error is a classified gateway failure. Messages never contain secrets or
// card data.
type Error struct {
	// Kind classifies the failure.
	Kind Kind
	// Code is the provider's (or payrail's) error code, e.g. "card_declined".
	Code string
	// DeclineCode is the issuer's reason for KindDeclined, e.g. "insufficient_funds".
	DeclineCode string
	// SoftDecline marks a decline that another attempt may approve
	// (e.g. "try_again_later", "issuer_not_available").
	SoftDecline bool
	// NotProcessed is true only when the provider definitely did not
	// process the request (connection refused before sending, a rejection
	// before any effect). Only then may a router cascade to another gateway.
	// False means the outcome is ambiguous (or known to have an effect).
	NotProcessed bool
	// RetryAfter is the provider's hint for transient errors, if any.
	RetryAfter time.Duration
	// Message is a human-readable description safe to log.
	Message string
	// Err is the underlying error, if any.
	Err error
}

// Error returns a description of the failure.
func (e *Error) Error() string {
	s := "gateway: " + e.Kind.String()
	if e.Code != "" {
		s += " (" + e.Code
		if e.DeclineCode != "" {
			s += "/" + e.DeclineCode
		}
		s += ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Is matches the sentinels ErrDeclined, ErrTransient, ErrInvalidRequest,
// ErrNotFound and ErrAuthentication by kind.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	switch t {
	case ErrDeclined, ErrTransient, ErrInvalidRequest, ErrNotFound, ErrAuthentication:
		return e.Kind == t.Kind
	}
	return e == t
}

// Retryable reports whether err may succeed if the same request (same
// idempotency key) is sent again: transient and unclassified errors.
func Retryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind == KindTransient || e.Kind == KindUnknown
	}
	// Unclassified errors (context deadline, network) are retryable.
	return !errors.Is(err, context.Canceled) && !errors.Is(err, ErrClosed)
}
