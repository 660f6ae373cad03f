package payments

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/inmemory"
	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/idempotency/memory"
)

// RetryPolicy bounds how transient gateway failures are retried: in the
// request for synchronous calls, and by message redelivery in the Worker.
type RetryPolicy struct {
	// MaxAttempts is the total number of gateway attempts (default 3).
	MaxAttempts int
	// InitialBackoff is the delay before the second attempt (default 100ms).
	InitialBackoff time.Duration
	// MaxBackoff caps the delay (default 5s).
	MaxBackoff time.Duration
	// Multiplier grows the delay after each attempt (default 2).
	Multiplier float64
	// Jitter randomises each delay by ±Jitter of itself (default 0.2).
	Jitter float64
}

func (r RetryPolicy) withDefaults() RetryPolicy {
	if r.MaxAttempts <= 0 {
		r.MaxAttempts = 3
	}
	if r.InitialBackoff <= 0 {
		r.InitialBackoff = 100 * time.Millisecond
	}
	if r.MaxBackoff <= 0 {
		r.MaxBackoff = 5 * time.Second
	}
	if r.Multiplier < 1 {
		r.Multiplier = 2
	}
	if r.Jitter < 0 || r.Jitter >= 1 {
		r.Jitter = 0.2
	}
	return r
}

// Backoff returns the delay after failed attempt number attempt (1-based):
// exponential, capped, with jitter.
func (r RetryPolicy) Backoff(attempt int) time.Duration {
	r = r.withDefaults()
	d := float64(r.InitialBackoff)
	for i := 1; i < attempt && d < float64(r.MaxBackoff); i++ {
		d *= r.Multiplier
	}
	d = min(d, float64(r.MaxBackoff))
	return time.Duration(d * (1 - r.Jitter + 2*r.Jitter*mrand.Float64()))
}

// RecoveryPolicy sets how accepted payments that stopped moving are
// recovered: by the Worker's recovery sweep (lost publishes, crashed
// workers) and by the Reconciler (unknown gateway outcomes). Zero fields
// take their defaults; Worker and Reconciler options override them.
type RecoveryPolicy struct {
	// SweepInterval is how often a Worker's recovery sweep runs (default
	// 30s; negative disables the sweep).
	SweepInterval time.Duration
	// StaleAfter is how long a payment must have stayed pending (or, with no
	// Reconciler, processing) before the sweep republishes its command
	// (default 2m).
	StaleAfter time.Duration
	// ReconcileInterval is how often the Reconciler sweeps (default 30s).
	ReconcileInterval time.Duration
	// ReconcileStaleAfter is how long a payment must have stayed processing,
	// unchanged, before the Reconciler touches it (default: 2 × attempts ×
	// (gateway timeout + maximum back-off) + 30s, at least 2m: longer than
	// any writer's gateway attempts).
	ReconcileStaleAfter time.Duration
	// MaxAge is how long after its creation a payment may still be resumed
	// with its gateway idempotency key: the provider's idempotency window
	// (default 24h, Stripe's). Past it, a payment the provider never
	// processed is failed and one whose outcome is still unknown moves to
	// StatusRequiresReview.
	MaxAge time.Duration
}

func (r RecoveryPolicy) withDefaults(retry RetryPolicy, gatewayTimeout time.Duration) RecoveryPolicy {
	if r.SweepInterval == 0 {
		r.SweepInterval = 30 * time.Second
	}
	if r.StaleAfter <= 0 {
		r.StaleAfter = 2 * time.Minute
	}
	if r.ReconcileInterval <= 0 {
		r.ReconcileInterval = 30 * time.Second
	}
	if r.ReconcileStaleAfter <= 0 {
		perCall := time.Duration(retry.MaxAttempts) * (gatewayTimeout + retry.MaxBackoff)
		r.ReconcileStaleAfter = max(2*time.Minute, 2*perCall+30*time.Second)
	}
	if r.MaxAge <= 0 {
		r.MaxAge = 24 * time.Hour
	}
	return r
}

// Processor processes payments: it validates requests, enforces
// idempotency, drives the payment state machine, calls gateways (directly
// in sync mode, through the bus and a Worker in async mode) and persists
// every outcome. Create it with New; it is safe for concurrent use.
type Processor struct {
	router   gateway.Router
	topic    *bus.Topic
	localSub *bus.Subscription // the default in-memory subscription, if New created the bus
	idem     *idempotency.Store
	store    Store
	log      *slog.Logger
	tel      *telemetry
	retry    RetryPolicy
	recovery RecoveryPolicy
	now      func() time.Time

	idemTTL        time.Duration
	lease          time.Duration
	gatewayTimeout time.Duration

	mode       atomic.Value // Mode
	closed     atomic.Bool
	owned      []func() error
	closeM     sync.Mutex
	onLeaseErr func(context.Context, error) // p.leaseRenewalFailed
}

type options struct {
	router         gateway.Router
	topic          *bus.Topic
	idem           *idempotency.Store
	store          Store
	log            *slog.Logger
	tp             trace.TracerProvider
	mp             metric.MeterProvider
	retry          RetryPolicy
	recovery       RecoveryPolicy
	mode           Mode
	now            func() time.Time
	idemTTL        time.Duration
	lease          time.Duration
	gatewayTimeout time.Duration
	localSubOpts   []bus.SubscriptionOption
}

// Option configures a Processor.
type Option func(*options)

// WithGateway sends every payment to g. Use WithRouter to choose gateways
// per payment.
func WithGateway(g *gateway.Gateway) Option {
	return func(o *options) {
		if g != nil {
			o.router = gateway.Single(g)
		}
	}
}

// WithRouter chooses gateways per payment (the operations guide's
// gatewaySelector by origin).
func WithRouter(r gateway.Router) Option { return func(o *options) { o.router = r } }

// WithTopic publishes async payment commands to t. Without it, New creates a
// private in-memory bus, and NewWorker consumes it in-process.
func WithTopic(t *bus.Topic) Option { return func(o *options) { o.topic = t } }

// WithLocalSubscriptionOptions configures the subscription of the default
// in-memory bus (used when no WithTopic is given), e.g. its concurrency. The
// processor's logger is always passed to it.
func WithLocalSubscriptionOptions(opts ...bus.SubscriptionOption) Option {
	return func(o *options) { o.localSubOpts = append(o.localSubOpts, opts...) }
}

// WithIdempotencyStore sets the idempotency store (default: in-memory).
func WithIdempotencyStore(s *idempotency.Store) Option { return func(o *options) { o.idem = s } }

// WithStore sets the payment store (default: NewMemoryStore()).
func WithStore(s Store) Option { return func(o *options) { o.store = s } }

// WithLogger sets the logger (default: discard). Payment method tokens,
// keys and card data are never logged.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithTracerProvider sets the OpenTelemetry tracer provider (default: the
// global one). It applies to the processor and its default in-memory bus;
// gateways, stores and buses opened separately take their own providers
// (or use the globals).
func WithTracerProvider(tp trace.TracerProvider) Option { return func(o *options) { o.tp = tp } }

// WithMeterProvider sets the OpenTelemetry meter provider (default: the
// global one), with the same scope as WithTracerProvider.
func WithMeterProvider(mp metric.MeterProvider) Option { return func(o *options) { o.mp = mp } }

// WithRetryPolicy sets how transient gateway failures are retried.
func WithRetryPolicy(r RetryPolicy) Option { return func(o *options) { o.retry = r } }

// WithRecoveryPolicy sets how stalled payments are recovered by the
// Worker's recovery sweep and the Reconciler (see RecoveryPolicy for the
// defaults).
func WithRecoveryPolicy(r RecoveryPolicy) Option { return func(o *options) { o.recovery = r } }

// WithMode sets the initial default mode (default ModeSync); see SetMode.
func WithMode(m Mode) Option { return func(o *options) { o.mode = m } }

// WithClock sets the clock (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithIdempotencyTTL sets how long completed idempotency records are kept
// (default 24h).
func WithIdempotencyTTL(d time.Duration) Option { return func(o *options) { o.idemTTL = d } }

// WithIdempotencyLease sets the lease of in-progress idempotency records: a
// crashed request's key becomes retryable this long after its last renewal
// (default 30s).
func WithIdempotencyLease(d time.Duration) Option { return func(o *options) { o.lease = d } }

// WithGatewayTimeout bounds each gateway call (default 30s).
func WithGatewayTimeout(d time.Duration) Option { return func(o *options) { o.gatewayTimeout = d } }

// New returns a Processor. A gateway (WithGateway or WithRouter) is
// required: payrail never falls back to a mock gateway on its own. The bus,
// idempotency store and payment store default to in-memory implementations,
// which suit a single process.
func New(opts ...Option) (*Processor, error) {
	o := options{mode: ModeSync, now: time.Now, idemTTL: idempotency.DefaultTTL,
		lease: idempotency.DefaultLease, gatewayTimeout: 30 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if o.router == nil {
		return nil, errors.New("payments: New requires a gateway (WithGateway or WithRouter)")
	}
	if o.mode != ModeSync && o.mode != ModeAsync {
		return nil, fmt.Errorf("payments: invalid mode %q", o.mode)
	}
	if o.idemTTL <= 0 || o.lease <= 0 || o.gatewayTimeout <= 0 || o.now == nil {
		return nil, errors.New("payments: TTL, lease and gateway timeout must be positive, clock non-nil")
	}
	p := &Processor{
		router: o.router, topic: o.topic, idem: o.idem, store: o.store, log: o.log,
		retry: o.retry.withDefaults(), now: o.now,
		recovery: o.recovery.withDefaults(o.retry.withDefaults(), o.gatewayTimeout),
		idemTTL:  o.idemTTL, lease: o.lease, gatewayTimeout: o.gatewayTimeout,
	}
	p.mode.Store(o.mode)
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.onLeaseErr = p.leaseRenewalFailed // bound once: claims share it
	if p.store == nil {
		p.store = NewMemoryStore()
	}
	if p.idem == nil {
		p.idem = idempotency.New(memory.New())
		p.owned = append(p.owned, p.idem.Close)
	}
	if p.topic == nil {
		b := inmemory.NewBroker()
		ctx := context.Background()
		dt, err := b.OpenTopic(ctx, &url.URL{Scheme: "inmemory", Host: "payments"})
		if err != nil {
			return nil, fmt.Errorf("payments: default in-memory bus: %w", err)
		}
		ds, err := b.OpenSubscription(ctx, &url.URL{Scheme: "inmemory", Host: "payments"})
		if err != nil {
			return nil, fmt.Errorf("payments: default in-memory bus: %w", err)
		}
		p.topic = bus.NewTopic(dt, defaultTopicTelemetry(o.tp, o.mp)...)
		p.localSub = bus.NewSubscription(ds, append(append([]bus.SubscriptionOption{bus.WithLogger(p.log)}, defaultBusTelemetry(o.tp, o.mp)...), o.localSubOpts...)...)
		p.owned = append(p.owned, p.topic.Close, p.localSub.Close)
	}
	tp, mp := o.tp, o.mp
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	tel, err := newTelemetry(tp, mp)
	if err != nil {
		return nil, err
	}
	p.tel = tel
	return p, nil
}

// Mode returns the current default mode.
func (p *Processor) Mode() Mode { return p.mode.Load().(Mode) }

// SetMode switches the default mode at runtime — the runbook's "activate
// async mode to absorb pressure". Requests that ask for a mode keep it.
func (p *Processor) SetMode(m Mode) error {
	if m != ModeSync && m != ModeAsync {
		return fmt.Errorf("payments: invalid mode %q (want sync or async)", m)
	}
	old := p.Mode()
	p.mode.Store(m)
	if old != m {
		p.log.Warn("payments: default mode switched", "from", string(old), "to", string(m))
	}
	return nil
}

// Router returns the processor's gateway router.
func (p *Processor) Router() gateway.Router { return p.router }

// Get returns the merchant's payment, or an error matching ErrNotFound.
func (p *Processor) Get(ctx context.Context, merchant, id string) (*Payment, error) {
	if p.closed.Load() {
		return nil, ErrUnavailable
	}
	pay, err := p.store.Get(ctx, merchant, id)
	if err != nil {
		return nil, p.storeError(err, id)
	}
	return pay.Clone(), nil // a deep copy: stores may share metadata maps
}

func (p *Processor) storeError(err error, id string) *Error {
	switch {
	case errors.Is(err, ErrStoreNotFound):
		return &Error{Code: CodeNotFound, Detail: "no such payment: " + id}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: CodeUnavailable, Detail: "request cancelled", Err: err}
	}
	return &Error{Code: CodeStoreUnavailable, Detail: "payment store unavailable", RetryAfter: time.Second, Err: err}
}

// Ready checks every dependency (stores, bus, gateways) for readiness probes.
func (p *Processor) Ready(ctx context.Context) error {
	if p.closed.Load() {
		return errors.New("payments: processor closed")
	}
	var errs []error
	if err := p.idem.Ping(ctx); err != nil {
		errs = append(errs, fmt.Errorf("idempotency store: %w", err))
	}
	if pg, ok := p.store.(interface{ Ping(context.Context) error }); ok {
		if err := pg.Ping(ctx); err != nil {
			errs = append(errs, fmt.Errorf("payment store: %w", err))
		}
	}
	if err := p.topic.Ping(ctx); err != nil {
		errs = append(errs, fmt.Errorf("bus: %w", err))
	}
	for _, g := range p.router.Gateways() {
		if err := g.Ping(ctx); err != nil {
			errs = append(errs, fmt.Errorf("gateway %s: %w", g.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// Close refuses new operations and releases what New created itself (the
// default in-memory bus and idempotency store). Resources passed in options
// belong to the caller. Stop workers before closing.
func (p *Processor) Close() error {
	p.closeM.Lock()
	defer p.closeM.Unlock()
	if !p.closed.CompareAndSwap(false, true) {
		return nil
	}
	var errs []error
	for i := len(p.owned) - 1; i >= 0; i-- {
		if err := p.owned[i](); err != nil && !errors.Is(err, bus.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// newID returns prefix_ followed by 26 random base32 characters.
func newID(prefix string) string { return prefix + "_" + rand.Text() }
