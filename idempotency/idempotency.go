// Package idempotency is payrail's portable idempotency-key store: it makes
// a retried request return the first request's stored result instead of
// executing twice, with keys scoped per merchant, a fingerprint of the
// request to refuse a key reused for a different payload, and leases so that
// a crashed request's key becomes retryable.
//
// Stores are registered database/sql-style and selected by URL scheme:
//
//	import _ "github.com/payrail/payrail/idempotency/memory"
//
//	s, err := idempotency.Open(ctx, "memory://")
package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/payrail/payrail/idempotency/driver"
	"github.com/payrail/payrail/internal/dbtel"
	"github.com/payrail/payrail/internal/registry"
)

// Re-exported driver types; see package idempotency/driver.
type (
	Driver       = driver.Driver
	Record       = driver.Record
	Response     = driver.Response
	State        = driver.State
	BeginRequest = driver.BeginRequest
	// CompleteRequest is Store.Complete's argument.
	CompleteRequest = driver.CompleteRequest
	// ExtendRequest is Store.Extend's argument.
	ExtendRequest = driver.ExtendRequest
	BeginResult   = driver.BeginResult
	Outcome       = driver.Outcome
	Filter        = driver.Filter
)

// Re-exported constants; see package idempotency/driver.
const (
	StateInProgress = driver.StateInProgress
	StateCompleted  = driver.StateCompleted

	Acquired   = driver.Acquired
	Reacquired = driver.Reacquired
	Replay     = driver.Replay
	InProgress = driver.InProgress
	Mismatch   = driver.Mismatch
)

// Defaults.
const (
	// DefaultTTL is how long completed records are kept.
	DefaultTTL = 24 * time.Hour
	// DefaultLease is how long an in-progress claim holds without renewal.
	DefaultLease = 30 * time.Second
	// MaxKeyLength is the longest idempotency key accepted.
	MaxKeyLength = 255
)

// Errors; test with errors.Is.
var (
	ErrLeaseLost = driver.ErrLeaseLost
	ErrClosed    = driver.ErrClosed
	ErrNotFound  = driver.ErrNotFound
	ErrFull      = driver.ErrFull
	// ErrKeyMissing: an empty idempotency key where one is required.
	ErrKeyMissing = errors.New("idempotency: key missing")
	// ErrKeyTooLong: a key longer than MaxKeyLength.
	ErrKeyTooLong = errors.New("idempotency: key longer than 255 characters")
	// ErrKeyInvalid: a key with characters outside printable ASCII.
	ErrKeyInvalid = errors.New("idempotency: key must be printable ASCII")
	// ErrUnsupported: the store does not implement an optional capability.
	ErrUnsupported = errors.New("idempotency: operation not supported by this store")
	// ErrUnknownDriver is returned by Open for an unregistered URL scheme.
	ErrUnknownDriver = errors.New("idempotency: unknown driver")
	// ErrInvalidInput: the store cannot keep a value of the request exactly
	// (see driver.ErrInvalidInput); a client error, not an outage.
	ErrInvalidInput = driver.ErrInvalidInput
)

var drivers = registry.New[Driver]("idempotency", map[string]string{
	"memory":   "github.com/payrail/payrail/idempotency/memory",
	"redis":    "github.com/payrail/payrail/idempotency/redis",
	"postgres": "github.com/payrail/payrail/idempotency/postgres",
	"dynamodb": "github.com/payrail/payrail/idempotency/dynamodb",
}, ErrUnknownDriver, nil)

// Register makes a store driver available under name, the URL scheme that
// selects it. It panics if d is nil or name is already registered.
func Register(name string, d Driver) { drivers.Register(name, d) }

// Drivers returns the sorted names of the registered store drivers.
func Drivers() []string { return drivers.Drivers() }

// ValidateKey checks an idempotency key: 1 to 255 printable ASCII characters.
func ValidateKey(key string) error {
	if key == "" {
		return ErrKeyMissing
	}
	if len(key) > MaxKeyLength {
		return ErrKeyTooLong
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 || c > 0x7e {
			return ErrKeyInvalid
		}
	}
	return nil
}

// Fingerprint digests a request: its method, path and canonical body. Two
// requests with the same fingerprint are the same request.
func Fingerprint(method, path string, canonicalBody []byte) string {
	// One contiguous buffer (on the stack for ordinary requests) and one
	// allocation for the result.
	var dst [FingerprintLength]byte
	return string(AppendFingerprint(dst[:0], method, path, canonicalBody))
}

// FingerprintLength is the length of a fingerprint, TokenLength that of a
// token from NewToken.
const (
	FingerprintLength = 2 * sha256.Size
	TokenLength       = 32
)

// AppendFingerprint appends Fingerprint(method, path, canonicalBody) to dst,
// so that a caller can keep it in a string with others (one allocation).
func AppendFingerprint(dst []byte, method, path string, canonicalBody []byte) []byte {
	var buf [512]byte
	b := append(buf[:0], method...)
	b = append(b, 0)
	b = append(b, path...)
	b = append(b, 0)
	b = append(b, canonicalBody...)
	sum := sha256.Sum256(b)
	return hex.AppendEncode(dst, sum[:])
}

// NewToken returns a random lease token: 128 bits from math/rand/v2's
// ChaCha8 generator, which is seeded from the OS. Tokens only need to be
// unique and unguessable by other requests, and this is several times
// cheaper than crypto/rand on the hot path.
func NewToken() string {
	var dst [TokenLength]byte
	return string(AppendToken(dst[:0]))
}

// AppendToken appends a new token (see NewToken) to dst, for a caller that
// sets BeginRequest.Token itself.
func AppendToken(dst []byte) []byte {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], mrand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], mrand.Uint64())
	return hex.AppendEncode(dst, b[:])
}

// Store is an idempotency store opened by URL. It is safe for concurrent use.
type Store struct {
	d      driver.Store
	closed atomic.Bool
	// noDriver: New was given a nil driver; the store is born closed.
	noDriver bool
	leases   renewer
	tel      *dbtel.Telemetry
}

// Open opens the store named by urlstr; the scheme selects the driver.
func Open(ctx context.Context, urlstr string, opts ...Option) (*Store, error) {
	d, u, err := drivers.Lookup(urlstr)
	if err != nil {
		return nil, err
	}
	ds, err := d.Open(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("idempotency: open %s: %w", registry.Redact(u), err)
	}
	return New(ds, append([]Option{urlOptions(u)}, opts...)...), nil
}

// New wraps a driver store.
//
// A nil driver is refused without panicking: every method of the returned
// Store fails with ErrNoDriver.
func New(d driver.Store, opts ...Option) *Store {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.system == "" {
		o.system = dbSystem(driverName(d))
	}
	s := &Store{d: d, tel: newStoreTelemetry(o)}
	if d == nil {
		s.noDriver = true
		s.closed.Store(true)
	}
	return s
}

// ErrNoDriver is returned by the methods of a Store that New was given a
// nil driver for.
var ErrNoDriver = errors.New("idempotency: Store created with a nil driver")

// closedErr is the error of a call on a closed Store.
func (s *Store) closedErr() error {
	if s.noDriver {
		return ErrNoDriver
	}
	return ErrClosed
}

// Begin claims r.Key for r.Merchant. It validates the key, fills a random
// Token and the default Lease and TTL when unset, and returns what the store
// found (see Outcome).
func (s *Store) Begin(ctx context.Context, r *BeginRequest) (*BeginResult, error) {
	if s.closed.Load() {
		return nil, s.closedErr()
	}
	if err := ValidateKey(r.Key); err != nil {
		return nil, err
	}
	if r.Merchant == "" {
		return nil, errors.New("idempotency: Begin without a merchant")
	}
	if r.Token == "" {
		r.Token = NewToken()
	}
	if r.Lease <= 0 {
		r.Lease = DefaultLease
	}
	if r.TTL <= 0 {
		r.TTL = DefaultTTL
	}
	if r.Now.IsZero() {
		r.Now = time.Now()
	}
	ctx, op := s.tel.Start(ctx, opBegin)
	res, err := s.d.Begin(ctx, r)
	if err == nil && op.Recording() {
		op.Span.SetAttributes(attrOutcome.String(res.Outcome.String()))
	}
	return res, s.tel.End(ctx, op, err)
}

// Complete stores r.Response for the key owned by r.Token, kept for r.TTL
// from r.Now. A zero Now is the current time, a zero TTL DefaultTTL. It
// returns ErrLeaseLost if r.Token does not own the key.
func (s *Store) Complete(ctx context.Context, r CompleteRequest) error {
	if s.closed.Load() {
		return s.closedErr()
	}
	if r.TTL <= 0 {
		r.TTL = DefaultTTL
	}
	if r.Now.IsZero() {
		r.Now = time.Now()
	}
	ctx, op := s.tel.Start(ctx, opComplete)
	return s.tel.End(ctx, op, s.d.Complete(ctx, r))
}

// Release deletes the in-progress record owned by token, making the key
// free again (for requests that failed before executing).
func (s *Store) Release(ctx context.Context, merchant, key, token string) error {
	if s.closed.Load() {
		return s.closedErr()
	}
	ctx, op := s.tel.Start(ctx, opRelease)
	return s.tel.End(ctx, op, s.d.Release(ctx, merchant, key, token))
}

// Extend renews the lease owned by r.Token to r.Now+r.Lease. A zero Now is
// the current time, a zero Lease DefaultLease. It returns ErrLeaseLost if
// r.Token does not own the key.
func (s *Store) Extend(ctx context.Context, r ExtendRequest) error {
	if s.closed.Load() {
		return s.closedErr()
	}
	if r.Lease <= 0 {
		r.Lease = DefaultLease
	}
	if r.Now.IsZero() {
		r.Now = time.Now()
	}
	ctx, op := s.tel.Start(ctx, opExtend)
	return s.tel.End(ctx, op, s.d.Extend(ctx, r))
}

// HoldRequest names the lease Store.Hold and Store.KeepAlive keep alive,
// and how. Only Merchant, Key and Token are required.
type HoldRequest struct {
	Merchant string
	Key      string
	// Token is the lease holder's token, from Begin.
	Token string
	// Lease is the lease each renewal grants; renewals come every Lease/3
	// (zero: DefaultLease).
	Lease time.Duration
	// Now is the clock renewals read (nil: time.Now).
	Now func() time.Time
	// OnError, if set, is told of each failed renewal, with the holder's
	// context. After ErrLeaseLost (or ErrClosed) renewal stops.
	OnError func(context.Context, error)
}

// KeepAlive renews the lease r names every r.Lease/3 until the returned
// stop function is called; see HoldRequest. One background goroutine per
// Store serves all leases, so holding a lease costs no timer of its own.
// Hold does the same without allocating.
func (s *Store) KeepAlive(ctx context.Context, r HoldRequest) (stop func()) {
	h := new(Hold)
	s.Hold(ctx, h, r)
	return h.Stop
}

// A Hold keeps the lease of an in-progress record alive between Store.Hold
// and Stop. Its zero value is ready to use; it can be embedded in a
// per-request struct so that holding a lease allocates nothing. A Hold must
// not be copied or reused while held.
type Hold struct {
	s   *Store
	ctx context.Context // the holder's; renewals detach its cancellation
	r   HoldRequest     // with its defaults filled

	// Guarded by the renewer's mutex.
	renewed    time.Time // wall clock of the last renewal; zero until the renewer first sees the hold
	held       bool
	prev, next *Hold // the renewer's list
}

// Hold renews the lease r names every r.Lease/3 until h.Stop is called;
// see HoldRequest. Renewal errors are reported to r.OnError with ctx.
func (s *Store) Hold(ctx context.Context, h *Hold, r HoldRequest) {
	if r.Lease <= 0 {
		r.Lease = DefaultLease
	}
	if r.Now == nil {
		r.Now = time.Now
	}
	*h = Hold{s: s, ctx: ctx, r: r}
	s.leases.add(s, h)
}

// Stop ends the renewals started by Store.Hold. It is safe to call more
// than once, and on a Hold never held.
func (h *Hold) Stop() {
	if h.s != nil {
		h.s.leases.remove(h)
	}
}

// renewer renews held leases from one goroutine, started on first use.
// Holds are kept in an intrusive list: holding and stopping cost a few
// pointer writes under the mutex, no hashing and no allocation.
//
// The goroutine outlives the holds it serves: it exits only once it has
// found the list empty at two ticks in a row (or the store closed), so
// that a steady stream of short requests, each holding a lease for a few
// microseconds, does not start (and end) a goroutine per request. That
// churn was not only the cost of a goroutine: on a saturated one-core
// server, each new goroutine queued ahead of the connections the runtime
// found ready, and those waited for up to 100 ms (the p99 of POST
// /payments under wrk went from 56 ms to 16 ms without it).
type renewer struct {
	mu      sync.Mutex
	head    *Hold
	tick    time.Duration // the loop's period; zero when no loop runs
	running bool
	starts  int           // loops started, for tests
	wake    chan struct{} // tells the loop its tick shrank or the store closed
}

func (r *renewer) add(s *Store, l *Hold) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l.held, l.prev, l.next = true, nil, r.head
	if r.head != nil {
		r.head.prev = l
	}
	r.head = l
	t := max(l.r.Lease/6, 5*time.Millisecond)
	switch {
	case !r.running:
		if r.wake == nil {
			r.wake = make(chan struct{}, 1)
		}
		r.running, r.tick = true, t
		r.starts++
		go r.loop(s)
	case t < r.tick:
		r.tick = t
		r.signal()
	}
}

// signal wakes the loop without waiting. Callers hold r.mu.
func (r *renewer) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// close makes a running loop exit now rather than at its next tick.
func (r *renewer) close() {
	r.mu.Lock()
	if r.running {
		r.signal()
	}
	r.mu.Unlock()
}

func (r *renewer) remove(l *Hold) {
	r.mu.Lock()
	r.unlink(l)
	r.mu.Unlock()
}

// unlink takes l off the list if it is on it. Callers hold r.mu.
func (r *renewer) unlink(l *Hold) {
	if !l.held {
		return
	}
	if l.prev != nil {
		l.prev.next = l.next
	} else {
		r.head = l.next
	}
	if l.next != nil {
		l.next.prev = l.prev
	}
	l.held, l.prev, l.next = false, nil, nil
}

// loop renews, every tick, the holds last renewed lease/3 ago or more. A
// hold's clock starts when the loop first sees it (at most one tick, a
// sixth of the lease, after it was taken), so renewals come well before
// the lease lapses. It returns when the store is closed, or when it found
// no hold at two ticks in a row.
func (r *renewer) loop(s *Store) {
	var t *time.Timer
	idle := false
	for {
		r.mu.Lock()
		if s.closed.Load() || (r.head == nil && idle) {
			r.running = false
			r.tick = 0
			r.mu.Unlock()
			if t != nil {
				t.Stop()
			}
			return
		}
		idle = r.head == nil
		tick := r.tick
		r.mu.Unlock()
		if t == nil {
			t = time.NewTimer(tick)
		} else {
			t.Reset(tick) // since Go 1.23 no stale tick can be left in t.C
		}
		select {
		case <-t.C:
		case <-r.wake:
			idle = false // a shorter tick or a close: look again at once
			continue
		}
		now := time.Now()
		r.mu.Lock()
		var due []*Hold
		for l := r.head; l != nil; l = l.next {
			switch {
			case l.renewed.IsZero():
				l.renewed = now
			case now.Sub(l.renewed) >= l.r.Lease/3:
				due = append(due, l)
			}
		}
		r.mu.Unlock()
		for _, l := range due {
			err := s.Extend(context.WithoutCancel(l.ctx), ExtendRequest{
				Merchant: l.r.Merchant, Key: l.r.Key, Token: l.r.Token, Now: l.r.Now(), Lease: l.r.Lease})
			r.mu.Lock()
			held := l.held // a hold stopped meanwhile is no longer the renewer's business
			if held {
				if errors.Is(err, ErrLeaseLost) || errors.Is(err, ErrClosed) {
					r.unlink(l)
				} else {
					l.renewed = time.Now()
				}
			}
			r.mu.Unlock()
			if err != nil && held && l.r.OnError != nil {
				l.r.OnError(l.ctx, err)
			}
		}
	}
}

// Ping checks the store's connection, for readiness probes; stores that
// cannot check report nil.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return s.closedErr()
	}
	if p, ok := s.d.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

// List returns records matching f, for the operations tooling. It returns
// ErrUnsupported if the store has no administrative interface.
func (s *Store) List(ctx context.Context, f Filter) ([]*Record, error) {
	a, err := s.admin()
	if err != nil {
		return nil, err
	}
	ctx, op := s.tel.Start(ctx, opList)
	recs, err := a.List(ctx, f)
	return recs, s.tel.End(ctx, op, err)
}

// Get returns the record for (merchant, key) or ErrNotFound.
func (s *Store) Get(ctx context.Context, merchant, key string) (*Record, error) {
	a, err := s.admin()
	if err != nil {
		return nil, err
	}
	ctx, op := s.tel.Start(ctx, opGet)
	rec, err := a.Get(ctx, merchant, key)
	return rec, s.tel.End(ctx, op, err)
}

// Delete removes r if it is unchanged since it was read (compare-and-delete);
// it returns ErrLeaseLost if it changed.
func (s *Store) Delete(ctx context.Context, r *Record) error {
	a, err := s.admin()
	if err != nil {
		return err
	}
	ctx, op := s.tel.Start(ctx, opDelete)
	return s.tel.End(ctx, op, a.Delete(ctx, r))
}

func (s *Store) admin() (driver.Admin, error) {
	if s.closed.Load() {
		return nil, s.closedErr()
	}
	a, ok := s.d.(driver.Admin)
	if !ok {
		return nil, ErrUnsupported
	}
	return a, nil
}

// Close releases the store. Later calls return ErrClosed.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return s.closedErr()
	}
	s.leases.close()
	return s.d.Close()
}
