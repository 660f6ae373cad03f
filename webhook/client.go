package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Client defaults.
const (
	// DefaultTimeout bounds one attempt: connecting, sending, and reading
	// the response (the specification recommends 15 to 30 s).
	DefaultTimeout = 15 * time.Second
	// DefaultMaxResponseBytes caps how much of a response body is read.
	DefaultMaxResponseBytes = 16 << 10
	// DefaultConcurrency is how many deliveries one endpoint may have in
	// flight.
	DefaultConcurrency = 8
	// maxRetryAfter caps an endpoint's Retry-After.
	maxRetryAfter = 24 * time.Hour
	// busyRetry is the Retry-After of a delivery turned away by the
	// concurrency limit.
	busyRetry = time.Second
)

// Outcome classifies a delivery attempt.
type Outcome int

// Outcomes.
const (
	// Delivered: the endpoint answered 2xx.
	Delivered Outcome = iota + 1
	// Retry: try again later (Schedule.After): a 3xx (redirects are not
	// followed), 4xx other than 410, 429 or 5xx answer, a timeout, a
	// connection or TLS error, or an attempt not made because of the
	// concurrency limit or an open circuit breaker (Result.Attempted is
	// then false).
	Retry
	// Disable: the endpoint answered 410 Gone: disable it and stop
	// sending it events.
	Disable
	// Undeliverable: the endpoint's configuration refuses delivery (an
	// invalid or non-https URL, a forbidden destination address, a disabled
	// endpoint, an event type it does not subscribe to). Retrying cannot
	// help until the endpoint is changed: dead-letter.
	Undeliverable
)

func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case Retry:
		return "retry"
	case Disable:
		return "disable"
	case Undeliverable:
		return "undeliverable"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Result is the outcome of one delivery attempt.
type Result struct {
	Outcome Outcome
	// Attempted is false when no request was sent (Undeliverable, or
	// Retry because of the concurrency limit or the circuit breaker):
	// such a result need not count as an attempt.
	Attempted bool
	// StatusCode is the endpoint's answer, 0 if there was none.
	StatusCode int
	// RetryAfter is how long the endpoint asked to wait (Retry-After on a
	// 429 or 5xx answer, capped at 24 h), or the client's own hint when no
	// request was sent; 0 if none.
	RetryAfter time.Duration
	// Body is the start of the response body, at most the client's cap.
	Body []byte
	// Err says why the delivery did not succeed; nil when delivered. It
	// never contains the endpoint's secrets or its URL's path and query.
	Err error
	// Duration is how long the attempt took.
	Duration time.Duration
}

// BreakerSettings configure the circuit breaker each endpoint gets. Every
// attempt that ends in Retry counts as a failure; a caller's cancellation
// is ignored.
type BreakerSettings struct {
	// ConsecutiveFailures trips the breaker after this many failures in a
	// row (default 5).
	ConsecutiveFailures uint32
	// OpenTimeout is how long a tripped breaker refuses attempts before
	// letting a probe through (default 60 s).
	OpenTimeout time.Duration
	// HalfOpenProbes is how many attempts a half-open breaker lets through
	// (default 1); one failure re-opens it.
	HalfOpenProbes uint32
}

func (s BreakerSettings) withDefaults() BreakerSettings {
	if s.ConsecutiveFailures == 0 {
		s.ConsecutiveFailures = 5
	}
	if s.OpenTimeout <= 0 {
		s.OpenTimeout = 60 * time.Second
	}
	if s.HalfOpenProbes == 0 {
		s.HalfOpenProbes = 1
	}
	return s
}

// ClientOption configures a Client.
type ClientOption func(*Client) error

// AllowInsecureHTTP lets endpoints use http URLs. For development only:
// deliveries then travel in clear text.
func AllowInsecureHTTP() ClientOption {
	return func(c *Client) error { c.insecure = true; return nil }
}

// WithAllowedNetworks lets the client reach addresses in prefixes even
// though they are loopback, private, link-local or otherwise forbidden
// (for example 127.0.0.0/8 in development, or a partner's private link).
func WithAllowedNetworks(prefixes ...netip.Prefix) ClientOption {
	return func(c *Client) error {
		for _, p := range prefixes {
			if !p.IsValid() {
				return fmt.Errorf("webhook: invalid allowed network %v", p)
			}
			c.allowed = append(c.allowed, p.Masked())
		}
		return nil
	}
}

// WithTimeout bounds one attempt, response body included (default
// DefaultTimeout).
func WithTimeout(d time.Duration) ClientOption {
	return func(c *Client) error {
		if d <= 0 {
			return fmt.Errorf("webhook: timeout %v must be positive", d)
		}
		c.timeout = d
		return nil
	}
}

// WithMaxResponseBytes caps how much of a response body is read (default
// DefaultMaxResponseBytes).
func WithMaxResponseBytes(n int64) ClientOption {
	return func(c *Client) error {
		if n < 0 {
			return fmt.Errorf("webhook: response cap %d must not be negative", n)
		}
		c.maxResponse = n
		return nil
	}
}

// WithConcurrency sets how many deliveries one endpoint may have in flight
// (default DefaultConcurrency). Further deliveries are not sent: they end
// in Retry with ErrEndpointBusy.
func WithConcurrency(n int) ClientOption {
	return func(c *Client) error {
		if n <= 0 {
			return fmt.Errorf("webhook: concurrency %d must be positive", n)
		}
		c.concurrency = n
		return nil
	}
}

// WithBreaker configures the per-endpoint circuit breakers.
func WithBreaker(s BreakerSettings) ClientOption {
	return func(c *Client) error { c.breaker = s.withDefaults(); return nil }
}

// WithTLSConfig sets the TLS configuration (for example, the root CAs of a
// test server). The client clones it.
func WithTLSConfig(cfg *tls.Config) ClientOption {
	return func(c *Client) error { c.tls = cfg.Clone(); return nil }
}

// Client delivers events to endpoints. It is safe for concurrent use;
// share one per process, since it keeps each endpoint's concurrency limit
// and circuit breaker. It never logs.
type Client struct {
	insecure    bool
	allowed     []netip.Prefix
	timeout     time.Duration
	maxResponse int64
	concurrency int
	breaker     BreakerSettings
	tls         *tls.Config

	http *http.Client

	mu        sync.Mutex
	endpoints map[string]*endpointState
}

type endpointState struct {
	slots chan struct{}
	cb    *gobreaker.CircuitBreaker[Result]
}

// NewClient returns a Client.
func NewClient(opts ...ClientOption) (*Client, error) {
	c := &Client{
		timeout:     DefaultTimeout,
		maxResponse: DefaultMaxResponseBytes,
		concurrency: DefaultConcurrency,
		breaker:     BreakerSettings{}.withDefaults(),
		endpoints:   make(map[string]*endpointState),
	}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: dialGuard(c.allowed)}
	transport := &http.Transport{
		// No proxy: a proxy would dial the endpoint itself, beyond the
		// guard. A deployment that wants an egress proxy puts it in front
		// of the process's network instead.
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		TLSClientConfig:        c.tls,
		TLSHandshakeTimeout:    10 * time.Second,
		ResponseHeaderTimeout:  c.timeout,
		MaxResponseHeaderBytes: 32 << 10,
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    c.concurrency,
		IdleConnTimeout:        90 * time.Second,
		ForceAttemptHTTP2:      true,
	}
	c.http = &http.Client{
		Transport: transport,
		// Redirects are never followed (the specification counts a 3xx as
		// a failure: the merchant should update the URL), so a redirect
		// cannot lead to a forbidden target either.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// Close releases idle connections.
func (c *Client) Close() error {
	c.http.CloseIdleConnections()
	return nil
}

// CheckURL validates an endpoint URL as Deliver will: absolute, https
// (http only with AllowInsecureHTTP), with a host and no credentials; a
// literal IP address must be allowed. Host names are checked when dialled.
func (c *Client) CheckURL(raw string) error {
	_, err := c.checkURL(raw)
	return err
}

func (c *Client) checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: does not parse", ErrInvalidURL)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && c.insecure:
	case u.Scheme == "http":
		return nil, fmt.Errorf("%w: http is allowed only in development (AllowInsecureHTTP); use https", ErrInvalidURL)
	default:
		return nil, fmt.Errorf("%w: scheme %q, want https", ErrInvalidURL, u.Scheme)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: credentials in the URL are not allowed", ErrInvalidURL)
	}
	host := u.Hostname()
	if host == "" || u.Opaque != "" {
		return nil, fmt.Errorf("%w: no host", ErrInvalidURL)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%w: bad port", ErrInvalidURL)
		}
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		if err := dialGuard(c.allowed)("tcp", netip.AddrPortFrom(addr, 443).String(), nil); err != nil {
			return nil, err
		}
	}
	return u, nil
}

func (c *Client) state(ep *Endpoint) *endpointState {
	key := ep.ID
	if key == "" {
		key = "url:" + ep.URL
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.endpoints[key]
	if !ok {
		b := c.breaker
		st = &endpointState{slots: make(chan struct{}, c.concurrency)}
		st.cb = gobreaker.NewCircuitBreaker[Result](gobreaker.Settings{
			Name:        key,
			MaxRequests: b.HalfOpenProbes,
			Timeout:     b.OpenTimeout,
			ReadyToTrip: func(n gobreaker.Counts) bool { return n.ConsecutiveFailures >= b.ConsecutiveFailures },
			IsExcluded:  func(err error) bool { return errors.Is(err, errExcluded) },
		})
		c.endpoints[key] = st
	}
	return st
}

var (
	// errFailed marks an attempt the breaker counts as a failure.
	errFailed = errors.New("webhook: attempt failed")
	// errExcluded marks an attempt the breaker ignores.
	errExcluded = errors.New("webhook: attempt not counted")
)

// Deliver makes one attempt to deliver ev to ep: it checks the endpoint
// (enabled, subscribed to ev.Type, a valid URL), signs a fresh
// webhook-timestamp with every secret of ep, POSTs the JSON event, and
// classifies what happened. It does not retry: schedule the next attempt
// with Schedule.After. The worker's ctx bounds the attempt too.
func (c *Client) Deliver(ctx context.Context, ep *Endpoint, ev *Event) Result {
	start := time.Now()
	res := c.deliver(ctx, ep, ev)
	res.Duration = time.Since(start)
	return res
}

func (c *Client) deliver(ctx context.Context, ep *Endpoint, ev *Event) Result {
	switch {
	case !ep.Enabled:
		return Result{Outcome: Undeliverable, Err: ErrEndpointDisabled}
	case !ep.Accepts(ev.Type):
		return Result{Outcome: Undeliverable, Err: fmt.Errorf("%w: %s", ErrEventFiltered, ev.Type)}
	}
	u, err := c.checkURL(ep.URL)
	if err != nil {
		return Result{Outcome: Undeliverable, Err: err}
	}
	signer, err := NewSigner(ep.Secrets...)
	if err != nil {
		return Result{Outcome: Undeliverable, Err: err}
	}
	if err := checkID(ev.ID, false); err != nil {
		return Result{Outcome: Undeliverable, Err: err}
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return Result{Outcome: Undeliverable, Err: fmt.Errorf("%w: %v", ErrInvalidEvent, err)}
	}

	st := c.state(ep)
	select {
	case st.slots <- struct{}{}:
		defer func() { <-st.slots }()
	default:
		return Result{Outcome: Retry, RetryAfter: busyRetry, Err: ErrEndpointBusy}
	}
	res, err := st.cb.Execute(func() (Result, error) {
		r := c.attempt(ctx, u, signer, ev.ID, body)
		switch {
		case r.Outcome != Retry:
			return r, nil
		case ctx.Err() != nil:
			return r, errExcluded // the caller gave up, not the endpoint
		}
		return r, errFailed
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return Result{Outcome: Retry, RetryAfter: c.breaker.OpenTimeout, Err: fmt.Errorf("%w: %v", ErrCircuitOpen, err)}
	}
	return res
}

// attempt sends one signed POST and classifies the answer.
func (c *Client) attempt(ctx context.Context, u *url.URL, signer *Signer, id string, body []byte) Result {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return Result{Outcome: Undeliverable, Err: fmt.Errorf("%w: %v", ErrInvalidURL, err)}
	}
	if err := signer.SetHeaders(req.Header, id, time.Now(), body); err != nil {
		return Result{Outcome: Undeliverable, Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "payrail-webhooks/1")
	resp, err := c.http.Do(req)
	if err != nil {
		err = transportError(err, u.Host)
		if errors.Is(err, ErrForbiddenAddress) {
			return Result{Outcome: Undeliverable, Err: err}
		}
		return Result{Outcome: Retry, Attempted: true, Err: err}
	}
	defer resp.Body.Close()
	read, _ := io.ReadAll(io.LimitReader(resp.Body, c.maxResponse))
	res := Result{Attempted: true, StatusCode: resp.StatusCode, Body: read}
	switch code := resp.StatusCode; {
	case code >= 200 && code <= 299:
		// The endpoint accepted the event; a body cut short (rerr) by the
		// timeout does not change that.
		res.Outcome = Delivered
		return res
	case code == http.StatusGone:
		res.Outcome = Disable
	default:
		res.Outcome = Retry
		if code == http.StatusTooManyRequests || code >= 500 {
			res.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
	}
	res.Err = fmt.Errorf("%w: %d from %s", ErrUnexpectedStatus, resp.StatusCode, u.Host)
	return res
}

// transportError strips the URL (whose path or query may carry a token)
// from a client error, keeping its cause and the host.
func transportError(err error, host string) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("webhook: POST to %s timed out: %w", host, err)
	}
	return fmt.Errorf("webhook: POST to %s: %w", host, err)
}

// retryAfter parses Retry-After: delay seconds or an HTTP date; 0 if
// absent or invalid, capped at maxRetryAfter.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}
