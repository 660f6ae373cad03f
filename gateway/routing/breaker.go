package routing

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/driver"
)

// BreakerSettings configure the circuit breaker each gateway gets. Only
// failures that say something about the gateway's health count: transient
// and unclassified errors (network, timeouts, provider 5xx, rate limits)
// and authentication errors (a gateway whose credentials are refused cannot
// serve anyone). Declines, invalid requests and not-found answers count as
// successes (the gateway answered), and a caller's cancellation is ignored.
type BreakerSettings struct {
	// ConsecutiveFailures trips the breaker after this many health failures
	// in a row (default 5).
	ConsecutiveFailures uint32
	// FailureRatio, if positive, also trips the breaker when at least this
	// fraction of the calls in the current Interval failed, once there were
	// MinRequests calls (default 0: off).
	FailureRatio float64
	// MinRequests is the sample FailureRatio needs (default 20).
	MinRequests uint32
	// Interval is the closed-state window after which counts are cleared
	// (default 60s).
	Interval time.Duration
	// OpenTimeout is how long a tripped breaker stays open — its gateway
	// moved to the end of every chain — before routing lets probes through
	// (half-open) (default 30s).
	OpenTimeout time.Duration
	// HalfOpenProbes is how many calls a half-open breaker lets through;
	// that many successes in a row close it, one failure re-opens it
	// (default 1).
	HalfOpenProbes uint32
}

func (s BreakerSettings) withDefaults() BreakerSettings {
	if s.ConsecutiveFailures == 0 {
		s.ConsecutiveFailures = 5
	}
	if s.MinRequests == 0 {
		s.MinRequests = 20
	}
	if s.Interval <= 0 {
		s.Interval = 60 * time.Second
	}
	if s.OpenTimeout <= 0 {
		s.OpenTimeout = 30 * time.Second
	}
	if s.HalfOpenProbes == 0 {
		s.HalfOpenProbes = 1
	}
	return s
}

// BreakerState is the state of a gateway's circuit breaker.
type BreakerState string

// Breaker states.
const (
	// BreakerClosed: the gateway is healthy and routed normally.
	BreakerClosed BreakerState = "closed"
	// BreakerOpen: the gateway failed too often; routing moves it to the
	// end of every chain until OpenTimeout passes.
	BreakerOpen BreakerState = "open"
	// BreakerHalfOpen: a few probe calls decide whether it closes again.
	BreakerHalfOpen BreakerState = "half-open"
)

func stateOf(s gobreaker.State) BreakerState {
	switch s {
	case gobreaker.StateOpen:
		return BreakerOpen
	case gobreaker.StateHalfOpen:
		return BreakerHalfOpen
	}
	return BreakerClosed
}

// member is one gateway of the router: the caller's gateway, its breaker,
// and the breaker-guarded gateway the router hands out.
type member struct {
	name    string
	inner   *gateway.Gateway
	guarded *gateway.Gateway
	cb      *gobreaker.CircuitBreaker[*gateway.Transaction]
	// openUntil is the Unix-nanosecond time the open breaker lets probes
	// through, or 0 when the breaker is not open. It lets Route check
	// health without taking the breaker's lock.
	openUntil atomic.Int64
}

func newMember(g *gateway.Gateway, s BreakerSettings, onChange func(name string, from, to BreakerState), opts ...gateway.Option) (*member, error) {
	m := &member{name: g.Name(), inner: g}
	m.cb = gobreaker.NewCircuitBreaker[*gateway.Transaction](gobreaker.Settings{
		Name:        g.Name(),
		MaxRequests: s.HalfOpenProbes,
		Interval:    s.Interval,
		Timeout:     s.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if c.ConsecutiveFailures >= s.ConsecutiveFailures {
				return true
			}
			return s.FailureRatio > 0 && c.Requests >= s.MinRequests &&
				float64(c.TotalFailures) >= s.FailureRatio*float64(c.Requests)
		},
		// Called with the breaker's lock held: only touch our own state.
		OnStateChange: func(name string, from, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				m.openUntil.Store(time.Now().Add(s.OpenTimeout).UnixNano())
			} else {
				m.openUntil.Store(0)
			}
			if onChange != nil {
				onChange(name, stateOf(from), stateOf(to))
			}
		},
		IsSuccessful: func(err error) bool { return !healthFailure(err) },
		IsExcluded: func(err error) bool {
			return errors.Is(err, context.Canceled) || errors.Is(err, gateway.ErrClosed)
		},
	})
	guarded, err := gateway.New(g.Name(), guardedDriver{m}, opts...)
	if err != nil {
		return nil, err
	}
	m.guarded = guarded
	return m, nil
}

// healthFailure reports whether err says the gateway is unhealthy.
func healthFailure(err error) bool {
	if err == nil {
		return false
	}
	var e *gateway.Error
	if errors.As(err, &e) {
		switch e.Kind {
		case gateway.KindTransient, gateway.KindUnknown, gateway.KindAuthentication:
			return true
		}
		return false
	}
	return true // unclassified: network or timeout
}

// open reports whether routing should skip the gateway now. *now caches
// the current time across the members of a chain (0: not read yet). When
// the open period is over it consults the breaker, which moves to
// half-open.
func (m *member) open(now *int64) bool {
	until := m.openUntil.Load()
	if until == 0 {
		return false
	}
	if *now == 0 {
		*now = time.Now().UnixNano()
	}
	if *now < until {
		return true
	}
	return m.cb.State() == gobreaker.StateOpen
}

// state returns the breaker's current state.
func (m *member) state() BreakerState { return stateOf(m.cb.State()) }

// exec runs fn through the breaker, which records the outcome. The breaker
// steers routing (Route moves open gateways to the end of the chain); it
// never refuses a call: when it is open, or half-open with its probes in
// flight, fn runs unrecorded. A payment only reaches an open gateway when
// every healthier option of its chain failed without processing it, and a
// capture, refund or lookup has no other gateway to go to.
func (m *member) exec(fn func() (*gateway.Transaction, error)) (*gateway.Transaction, error) {
	tx, err := m.cb.Execute(fn)
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return fn()
	}
	return tx, err
}

// guardedDriver is the driver behind a member's guarded gateway: every
// operation goes through the breaker to the caller's gateway.
type guardedDriver struct{ m *member }

func (d guardedDriver) Authorize(ctx context.Context, r *driver.AuthorizeRequest) (*driver.Transaction, error) {
	return d.m.exec(func() (*gateway.Transaction, error) { return d.m.inner.Authorize(ctx, r) })
}

func (d guardedDriver) Capture(ctx context.Context, r *driver.CaptureRequest) (*driver.Transaction, error) {
	return d.m.exec(func() (*gateway.Transaction, error) { return d.m.inner.Capture(ctx, r) })
}

func (d guardedDriver) Void(ctx context.Context, r *driver.VoidRequest) (*driver.Transaction, error) {
	return d.m.exec(func() (*gateway.Transaction, error) { return d.m.inner.Void(ctx, r) })
}

func (d guardedDriver) Refund(ctx context.Context, r *driver.RefundRequest) (*driver.Transaction, error) {
	return d.m.exec(func() (*gateway.Transaction, error) { return d.m.inner.Refund(ctx, r) })
}

func (d guardedDriver) Lookup(ctx context.Context, key string) (*driver.Transaction, error) {
	return d.m.exec(func() (*gateway.Transaction, error) { return d.m.inner.Lookup(ctx, key) })
}

// Ping bypasses the breaker: readiness reports the gateway itself.
func (d guardedDriver) Ping(ctx context.Context) error { return d.m.inner.Ping(ctx) }

func (d guardedDriver) Close() error { return d.m.inner.Close() }

func (d guardedDriver) As(i any) bool { return d.m.inner.As(i) }
