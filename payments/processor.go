package payments

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/inmemory"
	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/idempotency/memory"
	"github.com/payrail/payrail/internal/retry"
	"github.com/payrail/payrail/telemetry"
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
// exponential, capped, with jitter (github.com/cenkalti/backoff/v5).
func (r RetryPolicy) Backoff(attempt int) time.Duration {
	r = r.withDefaults()
	return retry.Policy{Initial: r.InitialBackoff, Max: r.MaxBackoff, Multiplier: r.Multiplier, Jitter: r.Jitter}.Delay(attempt)
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
	router    gateway.Router
	topic     *bus.Topic
	localSub  *bus.Subscription // the default in-memory subscription, if New created the bus
	idem      *idempotency.Store
	store     Store
	providers telemetry.Providers // WithTelemetry, passed on to the Handler
	log       *slog.Logger
	tel       *instruments
	retry     RetryPolicy
	recovery  RecoveryPolicy
	now       func() time.Time

	idemTTL        time.Duration
	lease          time.Duration
	gatewayTimeout time.Duration
	events         bool // WithEvents

	mode   atomic.Value // Mode
	closed atomic.Bool  // refuses new operations (Shutdown, Close)
	// released: Close ran, the stores may be closed: reads are refused
	// too. Between Shutdown and Close, Get and Wait still answer (a
	// worker's drain completes payments a caller may be waiting for).
	released atomic.Bool
	active   atomic.Int64 // operations in flight, for Shutdown

	// With the default in-memory bus: the budget within which the queue
	// must drain (WithDrainBudget) and the observed time to process one
	// command (an exponentially weighted average, nanoseconds).
	drainBudget  time.Duration
	processNanos atomic.Int64
	owned        []func() error
	closeM       sync.Mutex
	onLeaseErr   func(context.Context, error) // p.leaseRenewalFailed
}

type options struct {
	router         gateway.Router
	topic          *bus.Topic
	idem           *idempotency.Store
	store          Store
	log            *slog.Logger
	providers      telemetry.Providers
	retry          RetryPolicy
	recovery       RecoveryPolicy
	mode           Mode
	now            func() time.Time
	idemTTL        time.Duration
	lease          time.Duration
	gatewayTimeout time.Duration
	localSubOpts   []bus.SubscriptionOption
	drainBudget    time.Duration
	metricOrigins  []string
	events         bool
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

// WithDrainBudget bounds the work the default in-memory bus (used when no
// WithTopic is given) may hold: an async payment is accepted only while
// the queue, at the processing time the worker observes, drains within d —
// what a graceful shutdown can complete (give it the shutdown timeout).
// Past it, async requests fail with ErrQueueFull (503 with Retry-After), so
// that no 202 is answered for work a shutdown would lose. Default 30s.
func WithDrainBudget(d time.Duration) Option { return func(o *options) { o.drainBudget = d } }

// WithMetricOrigins lists the origins that label payment metrics
// (payrail.origin); payments from any other origin are counted under
// OtherOrigin. Without it, the origins the router's policy names are used
// when the router can tell (gateway/routing's Router), and every origin is
// "other" otherwise: merchant-supplied text never becomes a label value.
func WithMetricOrigins(origins ...string) Option {
	return func(o *options) { o.metricOrigins = append([]string{}, origins...) }
}

// WithIdempotencyStore sets the idempotency store (default: in-memory).
func WithIdempotencyStore(s *idempotency.Store) Option { return func(o *options) { o.idem = s } }

// WithStore sets the payment store (default: NewMemoryStore()).
func WithStore(s Store) Option { return func(o *options) { o.store = s } }

// WithLogger sets the logger (default: discard). Payment method tokens,
// keys and card data are never logged.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithTelemetry sets the OpenTelemetry providers (nil fields: the
// application's globals). They apply to the processor, the Handler, Worker
// and Reconciler built from it, and its default in-memory bus; give the
// same value to the gateways (gateway.WithTelemetry) and the topics and
// subscriptions (bus.WithTelemetry) you open, so that every component
// reports to the same place. See package telemetry.
func WithTelemetry(t telemetry.Providers) Option { return func(o *options) { o.providers = t } }

// WithTracerProvider sets only the tracer provider of WithTelemetry.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.providers.TracerProvider = tp }
}

// WithMeterProvider sets only the meter provider of WithTelemetry.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.providers.MeterProvider = mp }
}

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
		lease: idempotency.DefaultLease, gatewayTimeout: 30 * time.Second, drainBudget: 30 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	if o.router == nil {
		return nil, errors.New("payments: New requires a gateway (WithGateway or WithRouter)")
	}
	if o.mode != ModeSync && o.mode != ModeAsync {
		return nil, fmt.Errorf("payments: invalid mode %q", o.mode)
	}
	if o.idemTTL <= 0 || o.lease <= 0 || o.gatewayTimeout <= 0 || o.drainBudget <= 0 || o.now == nil {
		return nil, errors.New("payments: TTL, lease, gateway timeout and drain budget must be positive, clock non-nil")
	}
	p := &Processor{
		router: o.router, topic: o.topic, idem: o.idem, store: o.store, log: o.log,
		retry: o.retry.withDefaults(), now: o.now,
		recovery: o.recovery.withDefaults(o.retry.withDefaults(), o.gatewayTimeout),
		idemTTL:  o.idemTTL, lease: o.lease, gatewayTimeout: o.gatewayTimeout, drainBudget: o.drainBudget,
		events: o.events,
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
		p.idem = idempotency.New(memory.New(), idempotency.WithTelemetry(o.providers))
		p.owned = append(p.owned, p.idem.Close)
		p.log.Warn("payments: using the in-memory idempotency store: single-process and not durable; " +
			"keys are lost on restart and not shared between replicas (WithIdempotencyStore)")
	}
	if !p.DurableStore() {
		p.log.Warn("payments: using the in-memory payment store: single-process and not durable; " +
			"payments are lost on restart and not shared between replicas (WithStore)")
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
		p.topic = bus.NewTopic(dt, defaultTopicTelemetry(o.providers)...)
		p.localSub = bus.NewSubscription(ds, append(append([]bus.SubscriptionOption{bus.WithLogger(p.log)}, defaultBusTelemetry(o.providers)...), o.localSubOpts...)...)
		p.owned = append(p.owned, p.topic.Close, p.localSub.Close)
	}
	p.providers = o.providers
	tel, err := newTelemetry(o.providers.Tracer(), o.providers.Meter())
	if err != nil {
		return nil, err
	}
	tel.originLabel = originLabeler(o.metricOrigins, p.router)
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

// GetRequest names a payment to read: Get and Wait take it.
type GetRequest struct {
	Merchant  string
	PaymentID string
}

// Get returns the merchant's payment, or an error matching ErrNotFound. It
// still answers after Shutdown (a worker may be completing queued
// payments), and returns ErrUnavailable after Close.
func (p *Processor) Get(ctx context.Context, req GetRequest) (*Payment, error) {
	if err := p.usable(); err != nil {
		return nil, err
	}
	if p.released.Load() {
		return nil, ErrUnavailable
	}
	if e := checkID("merchant", req.Merchant); e != nil {
		return nil, e
	}
	if e := checkID("payment_id", req.PaymentID); e != nil {
		return nil, e
	}
	pay, err := p.store.Get(ctx, req.Merchant, req.PaymentID)
	if err != nil {
		return nil, p.storeError(err, req.PaymentID)
	}
	return pay.Clone(), nil // a deep copy: stores may share metadata maps
}

// storeInvalidDetail explains a value refused by a store; the field is
// named in the wrapped error, for logs, never the value.
const storeInvalidDetail = "the request holds a value that cannot be stored: a NUL byte, invalid UTF-8 or an over-long value"

func (p *Processor) storeError(err error, id string) *Error {
	switch {
	case errors.Is(err, ErrNotFound):
		return &Error{Code: CodeNotFound, Detail: "no such payment: " + id}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: CodeUnavailable, Detail: "request cancelled", Err: err}
	case errors.Is(err, ErrStoreInvalid):
		// The client's input, not an outage: a 4xx, never retried.
		return &Error{Code: CodeValidation, Detail: storeInvalidDetail, Err: err}
	}
	return &Error{Code: CodeStoreUnavailable, Detail: "payment store unavailable", RetryAfter: time.Second, Err: err}
}

// Check is the readiness of one dependency, as Checks reports it.
type Check struct {
	// Name names the dependency: "idempotency_store", "payment_store",
	// "bus", or "gateway:<name>".
	Name string
	// Err is nil when the dependency answered. Its text may hold
	// addresses: log it, never show it to API clients.
	Err error
}

// Checks pings every dependency (stores, bus, gateways) and reports each.
func (p *Processor) Checks(ctx context.Context) []Check {
	var out []Check
	out = append(out, Check{Name: "idempotency_store", Err: p.idem.Ping(ctx)})
	if pg, ok := p.store.(interface{ Ping(context.Context) error }); ok {
		out = append(out, Check{Name: "payment_store", Err: pg.Ping(ctx)})
	}
	out = append(out, Check{Name: "bus", Err: p.topic.Ping(ctx)})
	for _, g := range p.router.Gateways() {
		out = append(out, Check{Name: "gateway:" + g.Name(), Err: g.Ping(ctx)})
	}
	return out
}

// Ready checks every dependency (stores, bus, gateways) for readiness
// probes, and returns their errors joined, each prefixed by its name.
func (p *Processor) Ready(ctx context.Context) error {
	if err := p.usable(); err != nil {
		return err
	}
	if p.closed.Load() {
		return errors.New("payments: processor closed")
	}
	var errs []error
	for _, c := range p.Checks(ctx) {
		if c.Err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Name, c.Err))
		}
	}
	return errors.Join(errs...)
}

// enter admits an operation, or reports that the processor is shutting
// down. Every admitted operation calls exit.
func (p *Processor) enter() bool {
	if p.closed.Load() {
		return false
	}
	p.active.Add(1)
	if p.closed.Load() { // Shutdown started in between: it may not wait for us
		p.active.Add(-1)
		return false
	}
	return true
}

func (p *Processor) exit() { p.active.Add(-1) }

// defaultProcessEstimate is the time to process one async command assumed
// until the worker has measured some.
const defaultProcessEstimate = 50 * time.Millisecond

// admitAsync refuses an async payment the default in-memory bus could not
// drain within the drain budget (WithDrainBudget): its backlog and
// in-flight commands, at the processing time the worker observes, spread
// over the subscription's concurrency. Other buses are durable: no limit.
func (p *Processor) admitAsync(ctx context.Context) *Error {
	if p.localSub == nil {
		return nil
	}
	st, err := p.localSub.Stats(ctx)
	if err != nil {
		return &Error{Code: CodeUnavailable, Detail: "the in-process queue is closed", RetryAfter: time.Second, Err: err}
	}
	per := time.Duration(p.processNanos.Load())
	if per <= 0 {
		per = defaultProcessEstimate
	}
	queued := st.Backlog + st.InFlight + 1
	drain := time.Duration(queued) * per / time.Duration(max(1, p.localSub.Concurrency()))
	if drain <= p.drainBudget {
		return nil
	}
	return &Error{Code: CodeQueueFull, RetryAfter: max(time.Second, drain-p.drainBudget),
		Detail: fmt.Sprintf("the in-process queue holds %d payments, more than it can complete within its %v drain budget at %v each; "+
			"retry later, or without Prefer: respond-async", queued-1, p.drainBudget, per.Round(time.Millisecond))}
}

// observeProcessing feeds the time the worker took to process one command
// of the default in-memory bus into admitAsync's estimate (an
// exponentially weighted moving average, weight 1/8).
func (p *Processor) observeProcessing(d time.Duration) {
	old := p.processNanos.Load()
	if old <= 0 {
		p.processNanos.Store(int64(d))
		return
	}
	p.processNanos.Store(old + (int64(d)-old)/8)
}

// Unfinished returns the payments of the payment store that are not final
// (pending, processing) and were last changed before the given time, up to
// limit, oldest first. After a shutdown that could not drain the default
// in-memory bus, with the memory store, these are the accepted payments the
// process loses on exit; with a durable store a later worker resumes them.
func (p *Processor) Unfinished(ctx context.Context, before time.Time, limit int) ([]*Payment, error) {
	return p.store.ListStale(ctx, []Status{StatusPending, StatusProcessing}, before, limit)
}

// DurableStore reports whether the payment store outlives the process: a
// store is durable unless it has a Durable method that says otherwise, as
// MemoryStore (and wrappers embedding it) do.
func (p *Processor) DurableStore() bool {
	d, ok := p.store.(interface{ Durable() bool })
	return !ok || d.Durable()
}

// Shutdown stops the processor gracefully, like http.Server.Shutdown: new
// operations fail at once with ErrUnavailable (503 service_unavailable with
// Retry-After over HTTP), then it waits for the operations in flight, and
// their store writes, to finish. It returns nil when none is left, or an
// error wrapping ctx's if ctx ends first (they go on; their payments stay
// resumable). It does not stop workers (see Worker.Shutdown) nor release
// resources (Close).
//
// The order for an embedder: stop routing traffic (Handler.SetDraining,
// then http.Server.Shutdown), Processor.Shutdown, Worker.Shutdown, then
// Processor.Close and the stores, buses and gateways it was given.
func (p *Processor) Shutdown(ctx context.Context) error {
	if err := p.usable(); err != nil {
		return err
	}
	p.closed.Store(true)
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		n := p.active.Load()
		if n <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("payments: shutdown: %d operations still in flight: %w", n, ctx.Err())
		case <-t.C:
		}
	}
}

// Close refuses new operations and releases what New created itself (the
// default in-memory bus and idempotency store). Resources passed in options
// belong to the caller. Stop workers, and call Shutdown to let operations
// in flight finish, before closing. Close is idempotent.
func (p *Processor) Close() error {
	if err := p.usable(); err != nil {
		return err
	}
	p.closeM.Lock()
	defer p.closeM.Unlock()
	p.closed.Store(true)
	p.released.Store(true)
	var errs []error
	for i := len(p.owned) - 1; i >= 0; i-- {
		if err := p.owned[i](); err != nil && !errors.Is(err, bus.ErrClosed) {
			errs = append(errs, err)
		}
	}
	p.owned = nil // released once
	return errors.Join(errs...)
}

// newID returns prefix_ followed by 26 random characters of the RFC 4648
// base32 alphabet (130 bits, as crypto/rand.Text), built in one
// allocation: it is on every payment's path.
func newID(prefix string) string { return newIDSuffixed(prefix, "") }

// newIDSuffixed returns newID(prefix) followed by suffix, in one
// allocation: a payment's id and its gateway idempotency key
// (gatewayKey(id, "authorize")) share one string.
func newIDSuffixed(prefix, suffix string) string {
	var buf [80]byte
	if len(prefix)+len(suffix) > len(buf)-27 {
		return prefix + "_" + rand.Text() + suffix
	}
	return string(appendID(buf[:0], prefix, suffix))
}

// appendID appends newID(prefix) followed by suffix to dst.
func appendID(dst []byte, prefix, suffix string) []byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	dst = append(append(dst, prefix...), '_')
	n := len(dst)
	dst = append(dst, make([]byte, 26)...)
	rnd := dst[n:]
	rand.Read(rnd) // never fails (crypto/rand, Go 1.24+)
	for i, b := range rnd {
		rnd[i] = alphabet[b&31]
	}
	return append(dst, suffix...)
}
