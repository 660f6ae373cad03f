// Package routing is payrail's gateway router: a gateway.Router that
// chooses the gateway chain of each payment from a declarative Policy
// (rules on origin — the operations guide's gatewaySelector —, currency,
// merchant and amount, with ordered fallbacks and optional weighted
// splits), guards every gateway with a circuit breaker
// (github.com/sony/gobreaker/v2) whose state feeds the selection, and lets
// operators view and replace the policy at runtime, atomically.
//
//	a, _ := gateway.Open(ctx, "stripe://?name=stripe-eu")
//	b, _ := gateway.Open(ctx, "mock://?name=mock")
//	policy, _ := routing.LoadPolicy(os.Getenv("GATEWAY_ROUTES")) // JSON or a file path
//	r, err := routing.New([]*gateway.Gateway{a, b}, policy)
//	p, err := payments.New(payments.WithRouter(r))
//
//	// The runbook's "switch an origin to mock temporarily":
//	err = r.SetPolicy(newPolicy) // refused whole if invalid; in-flight payments keep their chain
//
// Routing never causes a double charge: it only orders gateways. The
// payments processor cascades along the chain only when an attempt
// definitely did not process, and never after an ambiguous outcome.
//
// The breakers feed health into selection: a gateway whose breaker is open
// moves to the end of every chain, so payments go to healthy gateways
// first, and it gets probe traffic again once the open timeout passes. A
// breaker never refuses a call: the open gateway is still the last resort
// of a chain, and the only one for captures, refunds and lookups of the
// payments it processed.
//
// AdminHandler serves GET/PUT of the policy over HTTP; mount it behind the
// payments API's admin authentication with (*payments.Handler).HandleAdmin.
package routing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/payrail/payrail/gateway"
)

// Router is a gateway.Router driven by a Policy, with a circuit breaker per
// gateway. It implements gateway.SoftDeclinePolicy. It is safe for
// concurrent use, including SetPolicy during Route calls.
type Router struct {
	members []*member          // in the order given to New
	byName  map[string]*member // immutable after New
	all     []*gateway.Gateway // guarded gateways, for Gateways
	log     *slog.Logger

	cur     atomic.Pointer[compiled]
	setMu   sync.Mutex // serialises SetPolicy
	version atomic.Uint64
	closed  atomic.Bool
	src     *sourceState // nil without WithSource
}

type options struct {
	breaker  BreakerSettings
	log      *slog.Logger
	onChange func(gateway string, from, to BreakerState)
	gwOpts   []gateway.Option
	src      Source
	poll     time.Duration
}

// Option configures a Router.
type Option func(*options)

// WithBreaker sets the circuit breaker settings of every gateway.
func WithBreaker(s BreakerSettings) Option { return func(o *options) { o.breaker = s } }

// WithLogger logs policy changes and breaker state changes to l (default:
// discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithGatewayOptions passes opts (OpenTelemetry providers) to the
// breaker-guarded gateways the router hands out. Calls are traced and
// measured once, by those outer gateways (default: the global providers).
func WithGatewayOptions(opts ...gateway.Option) Option {
	return func(o *options) { o.gwOpts = append(o.gwOpts, opts...) }
}

// WithBreakerObserver calls f on every breaker state change, e.g. to export
// a metric. f must not block or call the Router.
func WithBreakerObserver(f func(gateway string, from, to BreakerState)) Option {
	return func(o *options) { o.onChange = f }
}

// New returns a router over gateways, which must have distinct names,
// routing by policy (validated against those names). The router owns the
// gateways: Close closes them. Use DefaultPolicy to send everything to
// the gateways in order.
func New(gateways []*gateway.Gateway, policy Policy, opts ...Option) (*Router, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if len(gateways) == 0 {
		return nil, errors.New("routing: New needs at least one gateway")
	}
	r := &Router{byName: map[string]*member{}, log: o.log}
	s := o.breaker.withDefaults()
	onChange := func(name string, from, to BreakerState) {
		lvl := slog.LevelWarn
		if to == BreakerClosed {
			lvl = slog.LevelInfo
		}
		r.log.Log(context.Background(), lvl, "routing: gateway circuit breaker changed state",
			"gateway", name, "from", string(from), "to", string(to))
		if o.onChange != nil {
			o.onChange(name, from, to)
		}
	}
	for i, g := range gateways {
		if g == nil {
			return nil, fmt.Errorf("routing: gateway %d is nil", i)
		}
		if _, dup := r.byName[g.Name()]; dup {
			return nil, fmt.Errorf("routing: two gateways are named %q; give each a distinct name (URL parameter name=)", g.Name())
		}
		m, err := newMember(g, s, onChange, o.gwOpts...)
		if err != nil {
			return nil, fmt.Errorf("routing: %w", err)
		}
		r.members = append(r.members, m)
		r.byName[m.name] = m
		r.all = append(r.all, m.guarded)
	}
	c, err := r.compile(policy)
	if err != nil {
		return nil, err
	}
	r.cur.Store(c)
	if o.src != nil {
		if o.poll <= 0 {
			o.poll = DefaultPollInterval
		}
		r.src = &sourceState{src: o.src, poll: o.poll}
	}
	return r, nil
}

// Route returns the payment's gateway chain under the current policy:
// the first matching rule's gateways (the weighted pick first), with
// gateways whose breaker is open moved to the end, in order. The returned
// slice may be shared: callers must not modify it.
func (r *Router) Route(_ context.Context, req *gateway.RouteRequest) ([]*gateway.Gateway, error) {
	if r.closed.Load() {
		return nil, gateway.ErrClosed
	}
	c := r.cur.Load()
	ch := c.match(req).pick(req.PaymentID)
	var now int64 // read once, only if a breaker is open
	var open uint64
	n := 0
	for i, m := range ch.members {
		if m.open(&now) {
			open |= 1 << i
			n++
		}
	}
	if n == 0 || n == len(ch.members) {
		return ch.gateways, nil
	}
	out := make([]*gateway.Gateway, 0, len(ch.members))
	for i, m := range ch.members {
		if open&(1<<i) == 0 {
			out = append(out, m.guarded)
		}
	}
	for i, m := range ch.members {
		if open&(1<<i) != 0 {
			out = append(out, m.guarded)
		}
	}
	return out, nil
}

// Gateway returns the (breaker-guarded) gateway named name.
func (r *Router) Gateway(name string) (*gateway.Gateway, bool) {
	m, ok := r.byName[name]
	if !ok {
		return nil, false
	}
	return m.guarded, true
}

// Gateways returns every gateway, in the order given to New.
func (r *Router) Gateways() []*gateway.Gateway { return slices.Clone(r.all) }

// AllowSoftDeclineRetry implements gateway.SoftDeclinePolicy: a soft
// decline may be retried on the next gateway when the payment's rule (under
// the current policy) sets RetrySoftDeclines and lists the declining
// gateway.
func (r *Router) AllowSoftDeclineRetry(req *gateway.RouteRequest, gw, _ string) bool {
	rt := r.cur.Load().match(req)
	if !rt.retrySoft {
		return false
	}
	_, ok := rt.index[gw]
	return ok
}

// Policy returns a copy of the current (normalised) policy.
func (r *Router) Policy() Policy { return r.cur.Load().policy.Clone() }

// Version returns the current policy's version: 1 for the policy given to
// New, incremented by every SetPolicy; with a Source, the shared policy's
// version (the same in every process once synced). The admin endpoint
// uses it as ETag.
func (r *Router) Version() uint64 { return r.cur.Load().version }

// SetPolicy validates p against the router's gateways and, if it is valid,
// makes it the current policy atomically: Route calls see either the old
// policy or the new one, never a mix, and payments already routed keep
// their chain. An invalid policy is refused whole with a *PolicyError and
// the current policy stays.
//
// With a Source, the policy is stored there first and every process
// follows it (use SetPolicyContext to bound the store call).
func (r *Router) SetPolicy(p Policy) error {
	_, err := r.SetPolicyContext(context.Background(), p, 0)
	return err
}

// SetPolicyContext is SetPolicy, or SetPolicyIf when ifVersion is not 0,
// with a context for the Source's calls; it returns the new version.
func (r *Router) SetPolicyContext(ctx context.Context, p Policy, ifVersion uint64) (uint64, error) {
	if r.src != nil {
		return r.setShared(ctx, p, ifVersion)
	}
	return r.swap(p, ifVersion)
}

// ErrVersionMismatch is returned by SetPolicyIf when the policy changed
// since the version the caller read.
var ErrVersionMismatch = errors.New("routing: the policy changed since it was read")

// SetPolicyIf is SetPolicy that only applies p if the current version is
// ifVersion (optimistic concurrency for read-modify-write); it returns the
// new version.
func (r *Router) SetPolicyIf(p Policy, ifVersion uint64) (uint64, error) {
	if ifVersion == 0 {
		return 0, errors.New("routing: SetPolicyIf needs a version (see Version)")
	}
	return r.SetPolicyContext(context.Background(), p, ifVersion)
}

func (r *Router) swap(p Policy, ifVersion uint64) (uint64, error) {
	r.setMu.Lock()
	defer r.setMu.Unlock()
	old := r.cur.Load()
	if ifVersion != 0 && old.version != ifVersion {
		return old.version, ErrVersionMismatch
	}
	c, err := r.compile(p)
	if err != nil {
		return old.version, err
	}
	r.cur.Store(c)
	r.log.Warn("routing: policy replaced", "from_version", old.version, "version", c.version,
		"policy", c.summary())
	return c.version, nil
}

// KnownOrigin reports whether the current policy names origin in a rule
// (compared without regard to case). Metrics label payments with a known
// origin and put every other origin under "other", so that
// merchant-supplied values never become label values.
func (r *Router) KnownOrigin(origin string) bool {
	o := r.cur.Load().origins
	if len(o) == 0 || origin == "" {
		return false
	}
	if o[origin] {
		return true
	}
	return o[strings.ToLower(origin)]
}

// Health returns the breaker state of every gateway, in the order given to
// New.
func (r *Router) Health() []GatewayHealth {
	out := make([]GatewayHealth, len(r.members))
	for i, m := range r.members {
		c := m.cb.Counts()
		out[i] = GatewayHealth{Name: m.name, Breaker: m.state(), Requests: c.Requests,
			ConsecutiveFailures: c.ConsecutiveFailures, TotalFailures: c.TotalFailures}
	}
	return out
}

// GatewayHealth is a gateway's circuit breaker state and the counts of its
// current window.
type GatewayHealth struct {
	Name                string       `json:"name"`
	Breaker             BreakerState `json:"breaker"`
	Requests            uint32       `json:"requests"`
	ConsecutiveFailures uint32       `json:"consecutive_failures"`
	TotalFailures       uint32       `json:"total_failures"`
}

// Close closes every gateway; Route fails afterwards.
func (r *Router) Close() error {
	if !r.closed.CompareAndSwap(false, true) {
		return nil
	}
	var errs []error
	for _, m := range r.members {
		if err := m.guarded.Close(); err != nil && !errors.Is(err, gateway.ErrClosed) {
			errs = append(errs, fmt.Errorf("routing: closing gateway %s: %w", m.name, err))
		}
	}
	return errors.Join(errs...)
}

// compiled is an immutable, validated policy ready for matching.
type compiled struct {
	policy  Policy
	version uint64
	// sourceVersion is the Source's version of this policy (0: not from a
	// Source).
	sourceVersion uint64
	rules         []compiledRule
	def           *compiledRoute
	origins       map[string]bool // every origin a rule names, lower-cased
}

type compiledRule struct {
	name  string
	match Match
	route *compiledRoute
}

type compiledRoute struct {
	retrySoft bool
	index     map[string]int // gateway name → position in the chain
	// chains: without weights, one chain; with weights, one per gateway
	// with a positive weight, that gateway first, cumulative weights in
	// cum.
	chains []chain
	cum    []uint64
	total  uint64
}

type chain struct {
	members  []*member
	gateways []*gateway.Gateway // the guarded gateways of members
}

func (r *Router) compile(p Policy) (*compiled, error) {
	n, err := p.normalize(func(name string) bool { _, ok := r.byName[name]; return ok })
	if err != nil {
		return nil, err
	}
	c := &compiled{policy: n, version: r.version.Add(1), def: r.compileRoute(&n.Default), origins: map[string]bool{}}
	for i := range n.Rules {
		c.rules = append(c.rules, compiledRule{name: n.Rules[i].Name, match: n.Rules[i].Match, route: r.compileRoute(&n.Rules[i].Route)})
		for _, o := range n.Rules[i].Match.Origins {
			c.origins[strings.ToLower(o)] = true
		}
	}
	return c, nil
}

func (r *Router) compileRoute(rt *Route) *compiledRoute {
	cr := &compiledRoute{retrySoft: rt.RetrySoftDeclines, index: map[string]int{}}
	base := make([]*member, len(rt.Gateways))
	for i, name := range rt.Gateways {
		base[i] = r.byName[name]
		cr.index[name] = i
	}
	mk := func(ms []*member) chain {
		ch := chain{members: ms, gateways: make([]*gateway.Gateway, len(ms))}
		for i, m := range ms {
			ch.gateways[i] = m.guarded
		}
		return ch
	}
	if len(rt.Weights) == 0 {
		cr.chains = []chain{mk(base)}
		return cr
	}
	for i, name := range rt.Gateways {
		w := rt.Weights[name]
		if w <= 0 {
			continue
		}
		ms := append([]*member{base[i]}, slices.Delete(slices.Clone(base), i, i+1)...)
		cr.chains = append(cr.chains, mk(ms))
		cr.total += uint64(w)
		cr.cum = append(cr.cum, cr.total)
	}
	return cr
}

// match returns the route of the first rule matching req, or the default.
func (c *compiled) match(req *gateway.RouteRequest) *compiledRoute {
	for i := range c.rules {
		if c.rules[i].match.matches(req) {
			return c.rules[i].route
		}
	}
	return c.def
}

func (m *Match) matches(req *gateway.RouteRequest) bool {
	if len(m.Origins) > 0 && !slices.ContainsFunc(m.Origins, func(o string) bool { return strings.EqualFold(o, req.Origin) }) {
		return false
	}
	if len(m.Currencies) > 0 && !slices.ContainsFunc(m.Currencies, func(c string) bool { return strings.EqualFold(c, req.Currency) }) {
		return false
	}
	if len(m.Merchants) > 0 && !slices.Contains(m.Merchants, req.Merchant) {
		return false
	}
	return req.Amount >= m.MinAmount && (m.MaxAmount == 0 || req.Amount <= m.MaxAmount)
}

// pick returns the chain for a payment: with weights, the one whose first
// gateway the payment id's hash falls on.
func (cr *compiledRoute) pick(paymentID string) *chain {
	if len(cr.chains) == 1 {
		return &cr.chains[0]
	}
	x := fnv1a(paymentID) % cr.total
	i, _ := slices.BinarySearch(cr.cum, x+1)
	return &cr.chains[i]
}

// fnv1a is the 64-bit FNV-1a hash: stable across processes and releases,
// so a payment routes the same way wherever it is retried.
func fnv1a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// summary describes the policy in one line for logs.
func (c *compiled) summary() string {
	var b strings.Builder
	for _, r := range c.policy.Rules {
		fmt.Fprintf(&b, "%s→%s; ", r.Name, strings.Join(r.Gateways, ","))
	}
	fmt.Fprintf(&b, "default→%s", strings.Join(c.policy.Default.Gateways, ","))
	return b.String()
}
