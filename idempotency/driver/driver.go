// Package driver defines the interface an idempotency store driver
// implements, and the record types shared with package idempotency.
//
// A store keeps one record per (merchant, key). Begin atomically claims a
// key with a lease for its caller, or reports why it cannot (a stored result
// to replay, a request still running, a different payload). Complete stores
// the result; both Complete and Extend are conditional on the lease token, so
// a request that lost its lease can never overwrite the new owner's record.
//
// Round trips: a request that executes costs Begin + Complete (two); a
// replay costs Begin (one). Drivers must keep to that.
package driver

import (
	"context"
	"errors"
	"net/url"
	"time"
)

// Sentinel errors; package idempotency re-exports them.
var (
	// ErrLeaseLost means the caller's token no longer owns the key: its
	// lease expired and another request took it over, or the record expired.
	ErrLeaseLost = errors.New("idempotency: lease lost")
	// ErrClosed is returned by every operation on a closed store.
	ErrClosed = errors.New("idempotency: store closed")
	// ErrNotFound is returned by administrative reads of a missing record.
	ErrNotFound = errors.New("idempotency: record not found")
	// ErrInvalidInput means the store cannot keep a value of the request
	// exactly (a NUL byte or invalid UTF-8 where the store holds text, a
	// value over the store's size limits): the caller's input is at fault,
	// not the store's availability, and nothing was stored. Drivers wrap it
	// with the field's name, never its value.
	ErrInvalidInput = errors.New("idempotency: value cannot be stored")
	// ErrFull is returned (wrapped) by Begin of a new key when a bounded
	// store holds as many unexpired records as it may. It is transient:
	// the caller retries later, when records have expired or in-progress
	// ones were released. A store never makes room by forgetting an
	// unexpired record, which would let a retry execute twice.
	ErrFull = errors.New("idempotency: store full, retry later")
)

// State is a record's state.
type State string

// Record states.
const (
	// StateInProgress: a request holds the key under a lease.
	StateInProgress State = "in_progress"
	// StateCompleted: the result is stored and replayed to later requests.
	StateCompleted State = "completed"
)

// Response is a stored result, replayed byte for byte.
type Response struct {
	// StatusCode is the HTTP-equivalent status of the outcome.
	StatusCode int
	// Header holds the headers that matter for a replay (Content-Type,
	// Location, Retry-After...), one value each.
	Header map[string]string
	// Body is the exact response body.
	Body []byte
}

// Record is a store's entry for one (merchant, key).
type Record struct {
	Merchant string
	Key      string
	// Fingerprint is a digest of the request (method, path, canonical body).
	Fingerprint string
	State       State
	// Token identifies the lease holder while StateInProgress.
	Token string
	// ResourceID is the identifier of the resource the request creates
	// (e.g. the payment id), fixed at the first Begin so that a request that
	// takes over an expired lease resumes the same resource.
	ResourceID string
	// LeaseExpiresAt is when an in-progress record may be taken over.
	LeaseExpiresAt time.Time
	// Response is set when StateCompleted.
	Response  *Response
	CreatedAt time.Time
	// ExpiresAt is when the record may be deleted (completion + TTL, or the
	// in-progress record's retention).
	ExpiresAt time.Time
}

// BeginRequest claims a key.
type BeginRequest struct {
	Merchant    string
	Key         string
	Fingerprint string
	// Token is the new lease holder's random token.
	Token string
	// ResourceID is stored if the key is new; an existing record keeps its own.
	ResourceID string
	// Lease is how long the claim holds without Extend.
	Lease time.Duration
	// TTL is how long the record is kept (also bounds in-progress records).
	TTL time.Duration
	// Now is the caller's clock reading; stores compare lease and record
	// expiry against it.
	Now time.Time
}

// CompleteRequest stores a request's result under the key its lease holder
// owns. Package idempotency fills Now (time.Now) and TTL (DefaultTTL) when
// they are zero before a driver sees the request; a nil Response stores an
// empty one (status 0, no header, no body).
//
// Drivers receive it by value: a request that completes allocates nothing
// for it.
type CompleteRequest struct {
	Merchant string
	Key      string
	// Token is the lease holder's token, from Begin: only its holder may
	// complete the key.
	Token string
	// Response is the result later requests with the same key replay. A
	// store that keeps it in memory keeps a copy of *Response, not the
	// pointer: it may point into a larger per-request object of the caller.
	Response *Response
	// Now is the caller's clock reading.
	Now time.Time
	// TTL is how long the completed record is kept, from Now.
	TTL time.Duration
}

// ExtendRequest renews the lease its holder owns on a key. Package
// idempotency fills Now (time.Now) and Lease (DefaultLease) when they are
// zero before a driver sees the request.
type ExtendRequest struct {
	Merchant string
	Key      string
	// Token is the lease holder's token, from Begin.
	Token string
	// Now is the caller's clock reading; the lease runs until Now+Lease.
	Now time.Time
	// Lease is how long the renewed claim holds.
	Lease time.Duration
}

// Outcome is the result of Begin.
type Outcome int

// Begin outcomes.
const (
	// Acquired: the key was new (or its record had expired); the caller owns it.
	Acquired Outcome = iota + 1
	// Reacquired: the key was in progress under a lapsed lease (a crashed
	// request); the caller now owns it and must resume Record.ResourceID.
	Reacquired
	// Replay: the key is completed with the same fingerprint; Record.Response
	// is the stored result.
	Replay
	// InProgress: another request holds the key under a live lease.
	InProgress
	// Mismatch: the key is used (in progress or completed) with a
	// different fingerprint.
	Mismatch
)

var outcomeNames = [...]string{"", "acquired", "reacquired", "replay", "in_progress", "mismatch"}

// String returns the outcome's name.
func (o Outcome) String() string {
	if o < 0 || int(o) >= len(outcomeNames) {
		return "unknown"
	}
	return outcomeNames[o]
}

// BeginResult is what Begin found.
type BeginResult struct {
	Outcome Outcome
	// Record is the record after Begin (for Acquired/Reacquired: the caller's
	// in-progress record; otherwise the existing one).
	Record *Record
}

// Driver opens stores from URLs whose scheme is its registered name.
type Driver interface {
	// Open returns the store configured by u.
	Open(ctx context.Context, u *url.URL) (Store, error)
}

// Store is an idempotency store. Implementations are safe for concurrent
// use by many processes: Begin on the same key from any number of clients
// has exactly one winner.
type Store interface {
	// Begin claims the key in one round trip; see Outcome.
	Begin(ctx context.Context, r *BeginRequest) (*BeginResult, error)
	// Complete stores r.Response for the key owned by r.Token and keeps the
	// record until r.Now+r.TTL. It returns ErrLeaseLost if r.Token does not
	// own the key.
	Complete(ctx context.Context, r CompleteRequest) error
	// Release deletes the in-progress record owned by token, so the client may
	// retry (used when the request failed before executing). It returns
	// ErrLeaseLost if token does not own the key.
	Release(ctx context.Context, merchant, key, token string) error
	// Extend renews the lease owned by r.Token to r.Now+r.Lease. It returns
	// ErrLeaseLost if r.Token does not own the key.
	Extend(ctx context.Context, r ExtendRequest) error
	// Close releases the store's resources.
	Close() error
}

// Filter selects records for administrative listing and purging.
type Filter struct {
	// Merchant restricts to one merchant if non-empty.
	Merchant string
	// State restricts to one state if non-empty.
	State State
	// Limit bounds the number of records returned (0: driver default).
	Limit int
	// After continues a listing after this key (exclusive), ordered by
	// (merchant, key).
	AfterMerchant, AfterKey string
}

// Admin is implemented by stores that support the operations tooling.
type Admin interface {
	// List returns records matching f ordered by (merchant, key).
	List(ctx context.Context, f Filter) ([]*Record, error)
	// Get returns one record or ErrNotFound.
	Get(ctx context.Context, merchant, key string) (*Record, error)
	// Delete removes the record if it is still exactly as seen: same state
	// and token (for in-progress) — a compare-and-delete. It returns
	// ErrLeaseLost if the record changed.
	Delete(ctx context.Context, r *Record) error
}

// Pinger is implemented by stores that can check their connection.
type Pinger interface {
	// Ping returns nil if the store is reachable.
	Ping(ctx context.Context) error
}
