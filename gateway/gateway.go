// Package gateway is payrail's portable payment-provider API: authorize,
// capture, void, refund and lookup against a provider chosen by URL, with
// errors classified so that callers never charge twice.
//
// Drivers are registered database/sql-style and selected by URL scheme:
//
//	import _ "github.com/payrail/payrail/gateway/mock"
//
//	g, err := gateway.Open(ctx, "mock://?latency=20ms")
//
// Every URL accepts a name parameter (name=stripe-eu) naming the gateway in
// payments, routing rules and metrics; it defaults to the scheme.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync/atomic"

	"github.com/payrail/payrail/gateway/driver"
	"github.com/payrail/payrail/internal/registry"
)

// Re-exported driver types; see package gateway/driver for their documentation.
type (
	Driver           = driver.Driver
	CaptureMethod    = driver.CaptureMethod
	AuthorizeRequest = driver.AuthorizeRequest
	CaptureRequest   = driver.CaptureRequest
	VoidRequest      = driver.VoidRequest
	RefundRequest    = driver.RefundRequest
	Transaction      = driver.Transaction
	Status           = driver.Status
	Error            = driver.Error
	Kind             = driver.Kind
)

// Re-exported constants; see package gateway/driver.
const (
	CaptureAutomatic = driver.CaptureAutomatic
	CaptureManual    = driver.CaptureManual

	StatusAuthorized = driver.StatusAuthorized
	StatusCaptured   = driver.StatusCaptured
	StatusVoided     = driver.StatusVoided
	StatusRefunded   = driver.StatusRefunded
	StatusDeclined   = driver.StatusDeclined

	KindUnknown        = driver.KindUnknown
	KindDeclined       = driver.KindDeclined
	KindTransient      = driver.KindTransient
	KindInvalidRequest = driver.KindInvalidRequest
	KindNotFound       = driver.KindNotFound
	KindAuthentication = driver.KindAuthentication
)

// Errors; *Error values match the kind sentinels with errors.Is.
var (
	ErrDeclined       = driver.ErrDeclined
	ErrTransient      = driver.ErrTransient
	ErrInvalidRequest = driver.ErrInvalidRequest
	ErrNotFound       = driver.ErrNotFound
	ErrAuthentication = driver.ErrAuthentication
	ErrClosed         = driver.ErrClosed
	// ErrUnknownDriver is returned by Open for an unregistered URL scheme.
	ErrUnknownDriver = errors.New("gateway: unknown driver")
)

// Retryable reports whether err may succeed if the same request, with the
// same idempotency key, is sent again.
func Retryable(err error) bool { return driver.Retryable(err) }

var drivers = registry.New[Driver]("gateway", map[string]string{
	"mock":   "github.com/payrail/payrail/gateway/mock",
	"stripe": "github.com/payrail/payrail/gateway/stripe",
}, ErrUnknownDriver, nil)

// Register makes a gateway driver available under name, the URL scheme that
// selects it. It panics if d is nil or name is already registered.
func Register(name string, d Driver) { drivers.Register(name, d) }

// Drivers returns the sorted names of the registered gateway drivers.
func Drivers() []string { return drivers.Drivers() }

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// Gateway is a payment provider opened by URL. It is safe for concurrent use.
// Every call is traced as a client span "gateway.<operation>" and measured
// in MetricRequestDuration (see telemetry.go).
type Gateway struct {
	name   string
	d      driver.Gateway
	closed atomic.Bool
	tel    *instruments
}

// Open opens the gateway named by urlstr; the scheme selects the driver. The
// name query parameter (default: the scheme) is consumed here and not passed
// to the driver. Options set the OpenTelemetry providers (default: the
// globals).
func Open(ctx context.Context, urlstr string, opts ...Option) (*Gateway, error) {
	d, u, err := drivers.Lookup(urlstr)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	name := u.Scheme
	if q.Has("name") {
		name = q.Get("name")
		q.Del("name")
		u.RawQuery = q.Encode()
	}
	if !validName.MatchString(name) {
		return nil, fmt.Errorf("gateway: invalid name %q: want lower-case letters, digits, '.', '_' or '-'", name)
	}
	dg, err := d.Open(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("gateway: open %s: %w", registry.Redact(u), err)
	}
	return New(name, dg, opts...)
}

// New wraps a driver gateway under name. Drivers use it for constructors
// that take native clients instead of URLs. A Gateway wrapping another one (a
// circuit breaker, say) is measured once: calls made through the outer
// Gateway are traced and measured there, not again in the inner one.
func New(name string, d driver.Gateway, opts ...Option) (*Gateway, error) {
	if !validName.MatchString(name) {
		return nil, fmt.Errorf("gateway: invalid name %q: want lower-case letters, digits, '.', '_' or '-'", name)
	}
	if d == nil {
		return nil, errors.New("gateway: New with a nil driver")
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	return &Gateway{name: name, d: d, tel: newTelemetry(name, o)}, nil
}

// Name returns the gateway's name.
func (g *Gateway) Name() string { return g.name }

// Authorize authorizes a payment (and captures it with CaptureAutomatic).
// A decline is an error matching ErrDeclined.
func (g *Gateway) Authorize(ctx context.Context, r *AuthorizeRequest) (*Transaction, error) {
	if g.closed.Load() {
		return nil, ErrClosed
	}
	ctx, c := g.tel.start(ctx, opAuthorize, paymentID(r))
	t, err := g.d.Authorize(ctx, r)
	return t, c.end(ctx, classify(ctx, err))
}

// Capture captures an authorized payment, fully or partially.
func (g *Gateway) Capture(ctx context.Context, r *CaptureRequest) (*Transaction, error) {
	if g.closed.Load() {
		return nil, ErrClosed
	}
	ctx, c := g.tel.start(ctx, opCapture, paymentID(r))
	t, err := g.d.Capture(ctx, r)
	return t, c.end(ctx, classify(ctx, err))
}

// Void cancels an uncaptured authorization.
func (g *Gateway) Void(ctx context.Context, r *VoidRequest) (*Transaction, error) {
	if g.closed.Load() {
		return nil, ErrClosed
	}
	ctx, c := g.tel.start(ctx, opVoid, paymentID(r))
	t, err := g.d.Void(ctx, r)
	return t, c.end(ctx, classify(ctx, err))
}

// Refund refunds part or all of a captured payment.
func (g *Gateway) Refund(ctx context.Context, r *RefundRequest) (*Transaction, error) {
	if g.closed.Load() {
		return nil, ErrClosed
	}
	ctx, c := g.tel.start(ctx, opRefund, paymentID(r))
	t, err := g.d.Refund(ctx, r)
	return t, c.end(ctx, classify(ctx, err))
}

// Lookup returns the outcome of the operation sent with idempotencyKey; an
// error matching ErrNotFound means the provider never processed it.
func (g *Gateway) Lookup(ctx context.Context, idempotencyKey string) (*Transaction, error) {
	if g.closed.Load() {
		return nil, ErrClosed
	}
	ctx, c := g.tel.start(ctx, opLookup, "")
	t, err := g.d.Lookup(ctx, idempotencyKey)
	return t, c.end(ctx, classify(ctx, err))
}

// Ping checks connectivity, for readiness probes; drivers that cannot check
// report nil.
func (g *Gateway) Ping(ctx context.Context) error {
	if g.closed.Load() {
		return ErrClosed
	}
	if p, ok := g.d.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

// Close releases the gateway. Later calls return ErrClosed.
func (g *Gateway) Close() error {
	if !g.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	return g.d.Close()
}

// As converts the gateway to the driver's native client type; see each
// driver's documentation.
func (g *Gateway) As(i any) bool { return g.d.As(i) }

// classify turns unclassified driver errors into *Error: context expiry is
// transient with an unknown outcome; anything else is KindUnknown.
func classify(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) || errors.Is(err, ErrClosed) {
		return err
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &Error{Kind: KindTransient, Code: "timeout", Message: "gateway call timed out; outcome unknown", Err: err}
	}
	return &Error{Kind: KindUnknown, Err: err}
}
