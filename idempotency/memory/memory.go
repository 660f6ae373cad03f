// Package memory is an in-process idempotency store, registered as "memory".
//
// It is the default store: correct for a single process, bounded in size,
// with records expiring after their TTL. It does not survive a restart and
// is not shared between replicas; production deployments with more than one
// replica use a persistent store (redis, postgres, dynamodb).
//
// URL: memory://?max_entries=100000
//
// When the store is full, expired records are evicted first, then the
// oldest completed records; in-progress records are never evicted.
package memory

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/bits"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/idempotency/driver"
)

func init() { idempotency.Register("memory", opener{}) }

type opener struct{}

func (opener) Open(_ context.Context, u *url.URL) (driver.Store, error) {
	var opts []Option
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		switch k {
		case "max_entries":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("memory: max_entries %q: want a positive integer", v)
			}
			opts = append(opts, WithMaxEntries(n))
		default:
			return nil, fmt.Errorf("memory: unknown URL parameter %q (want max_entries)", k)
		}
	}
	if u.Host != "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("memory: URL takes no host or path, got %q", u.Redacted())
	}
	return New(opts...), nil
}

// DefaultMaxEntries bounds a store created without WithMaxEntries.
const DefaultMaxEntries = 100_000

const (
	shardBits  = 5
	shardCount = 1 << shardBits
)

// ErrFull is returned by Begin when every record of a shard is in progress
// and none can be evicted.
var ErrFull = errors.New("memory: idempotency store full of in-progress records")

// Option configures a Store.
type Option func(*Store)

// WithMaxEntries bounds the number of records kept.
func WithMaxEntries(n int) Option {
	return func(s *Store) {
		if n > 0 {
			s.max = n
		}
	}
}

// Store is the in-memory store. Create it with New or open "memory://".
type Store struct {
	seed   maphash.Seed
	max    int
	limit  int // records per shard: max spread over the shards
	closed atomic.Bool
	shards [shardCount]shard
}

// recKey identifies a record.
type recKey struct{ merchant, key string }

// record is a stored record, kept by value in its shard's slab: the
// merchant and key are the index's key, times are wall-clock stamps (no
// *time.Location, no monotonic reading) and the state is a flag.
type record struct {
	fingerprint string
	token       string // the lease holder's; cleared on completion
	resourceID  string
	resp        *driver.Response
	lease       stamp // LeaseExpiresAt
	created     stamp // CreatedAt
	expires     stamp // ExpiresAt
	completed   bool  // StateCompleted, else StateInProgress
}

// stamp is an instant as Unix seconds and nanoseconds: exact for any
// time.Time, compared on the wall clock like the persistent stores do.
type stamp struct {
	sec  int64
	nsec int32
}

func stampOf(t time.Time) stamp { return stamp{sec: t.Unix(), nsec: int32(t.Nanosecond())} }

// time returns the instant in the local time zone, like time.Unix.
func (s stamp) time() time.Time { return time.Unix(s.sec, int64(s.nsec)) }

// before reports whether s is before t.
func (s stamp) before(t stamp) bool { return s.sec < t.sec || s.sec == t.sec && s.nsec < t.nsec }

func (r *record) state() driver.State {
	if r.completed {
		return driver.StateCompleted
	}
	return driver.StateInProgress
}

// fill sets *out to the exported form of the record stored under k.
func (r *record) fill(out *driver.Record, k recKey) {
	*out = driver.Record{
		Merchant: k.merchant, Key: k.key, Fingerprint: r.fingerprint, State: r.state(),
		Token: r.token, ResourceID: r.resourceID, LeaseExpiresAt: r.lease.time(),
		Response: r.resp, CreatedAt: r.created.time(), ExpiresAt: r.expires.time(),
	}
}

// shard holds records by value in the slots of chunks (so that a record
// costs no heap object of its own, and growing never copies records),
// indexed by key. Callers of its methods hold mu.
//
// At most limit records are live, and a new slot is used only when no
// freed one is left, so slots stay below limit.
type shard struct {
	mu     sync.Mutex
	index  map[recKey]int // slot of the record
	chunks [][]record     // chunkSize slots each (fewer if limit is smaller)
	used   int            // slots ever used; slots below it are live or free
	free   []int          // freed slots below used
	order  []recKey       // insertion order, for eviction; may hold deleted keys
	_      [32]byte       // 128 bytes per shard: no false sharing between cores
}

const (
	chunkBits = 6
	chunkSize = 1 << chunkBits // records per chunk (7 KiB)
)

func (sh *shard) slot(i int) *record { return &sh.chunks[i>>chunkBits][i&(chunkSize-1)] }

// get returns the record of k.
func (sh *shard) get(k recKey) (*record, bool) {
	i, ok := sh.index[k]
	if !ok {
		return nil, false
	}
	return sh.slot(i), true
}

// add stores rec under k, which has no record; the shard holds fewer
// than limit records.
func (sh *shard) add(k recKey, rec *record, limit int) {
	var i int
	if n := len(sh.free); n > 0 {
		i = sh.free[n-1]
		sh.free = sh.free[:n-1]
	} else {
		i = sh.used
		sh.used++
		if i>>chunkBits == len(sh.chunks) {
			sh.chunks = append(sh.chunks, make([]record, min(chunkSize, limit)))
		}
	}
	*sh.slot(i) = *rec
	sh.index[k] = i
}

// remove deletes the record of k, if any.
func (sh *shard) remove(k recKey) {
	i, ok := sh.index[k]
	if !ok {
		return
	}
	delete(sh.index, k)
	*sh.slot(i) = record{} // drop its strings and response
	sh.free = append(sh.free, i)
}

// len returns the number of records.
func (sh *shard) len() int { return len(sh.index) }

// New returns an empty store.
func New(opts ...Option) *Store {
	s := &Store{max: DefaultMaxEntries, seed: maphash.MakeSeed()}
	for _, o := range opts {
		o(s)
	}
	s.limit = max(1, s.max/shardCount+min(1, s.max%shardCount)) // rounded up without overflowing near MaxInt
	for i := range s.shards {
		s.shards[i].index = map[recKey]int{}
	}
	return s
}

// shard returns the shard of (merchant, key). The choice only spreads the
// lock.
func (s *Store) shard(merchant, key string) *shard {
	h := maphash.String(s.seed, key) ^ bits.RotateLeft64(maphash.String(s.seed, merchant), 32)
	return &s.shards[h>>(64-shardBits)]
}

// beginResult holds a BeginResult and its Record, allocated together.
type beginResult struct {
	res driver.BeginResult
	rec driver.Record
}

func newResult(o driver.Outcome, k recKey, r *record) *driver.BeginResult {
	x := &beginResult{}
	r.fill(&x.rec, k)
	x.res = driver.BeginResult{Outcome: o, Record: &x.rec}
	return &x.res
}

// Begin implements driver.Store.
func (s *Store) Begin(ctx context.Context, r *driver.BeginRequest) (*driver.BeginResult, error) {
	if s.closed.Load() {
		return nil, driver.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k := recKey{r.Merchant, r.Key}
	o, rec, err := s.shard(r.Merchant, r.Key).begin(k, r, s.limit)
	if err != nil {
		return nil, err
	}
	// The result is built outside the shard's lock.
	return newResult(o, k, &rec), nil
}

// begin is Begin on the shard of k; it returns the outcome and the record
// after Begin.
func (sh *shard) begin(k recKey, r *driver.BeginRequest, limit int) (driver.Outcome, record, error) {
	now := stampOf(r.Now)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rec, ok := sh.get(k)
	if ok && !now.before(rec.expires) {
		sh.remove(k)
		ok = false
	}
	if !ok {
		if sh.len() >= limit && !sh.evict(now) {
			return 0, record{}, ErrFull
		}
		nr := record{
			fingerprint: r.Fingerprint, token: r.Token, resourceID: r.ResourceID,
			lease: stampOf(r.Now.Add(r.Lease)), created: now, expires: stampOf(r.Now.Add(r.TTL)),
		}
		sh.add(k, &nr, limit)
		sh.order = append(sh.order, k)
		if len(sh.order) > 2*limit+64 {
			sh.compact()
		}
		return driver.Acquired, nr, nil
	}
	switch {
	case rec.fingerprint != r.Fingerprint:
		return driver.Mismatch, *rec, nil
	case rec.completed:
		return driver.Replay, *rec, nil
	case now.before(rec.lease):
		return driver.InProgress, *rec, nil
	}
	rec.token = r.Token
	rec.lease = stampOf(r.Now.Add(r.Lease))
	return driver.Reacquired, *rec, nil
}

// evict frees one slot: expired records first, then the oldest completed.
// It reports whether a record was removed. Callers hold sh.mu.
func (sh *shard) evict(now stamp) bool {
	// Pass 1: drop queue entries for deleted keys and expired records at the
	// front; records are inserted roughly in expiry order.
	for len(sh.order) > 0 {
		k := sh.order[0]
		rec, ok := sh.get(k)
		if ok && now.before(rec.expires) {
			break
		}
		sh.order[0] = recKey{} // let the strings go with the record
		sh.order = sh.order[1:]
		if ok {
			sh.remove(k)
			return true
		}
	}
	// Pass 2: the oldest completed record.
	for i, k := range sh.order {
		rec, ok := sh.get(k)
		if !ok || rec.completed || !now.before(rec.expires) {
			if i == 0 {
				sh.order[0] = recKey{}
				sh.order = sh.order[1:]
			} else {
				sh.order = slices.Delete(sh.order, i, i+1)
			}
			if ok {
				sh.remove(k)
				return true
			}
			return sh.evict(now)
		}
	}
	return false
}

// compact drops queue entries whose records are gone. Callers hold sh.mu.
func (sh *shard) compact() {
	sh.order = slices.DeleteFunc(sh.order, func(k recKey) bool {
		_, ok := sh.index[k]
		return !ok
	})
}

// owned returns the in-progress record of k owned by token. Callers hold
// sh.mu.
func (sh *shard) owned(k recKey, token string) (*record, error) {
	rec, ok := sh.get(k)
	if !ok || rec.completed || rec.token != token {
		return nil, driver.ErrLeaseLost
	}
	return rec, nil
}

// Complete implements driver.Store.
func (s *Store) Complete(ctx context.Context, merchant, key, token string, resp *driver.Response, now time.Time, ttl time.Duration) error {
	if s.closed.Load() {
		return driver.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	k := recKey{merchant, key}
	expires := stampOf(now.Add(ttl))
	sh := s.shard(merchant, key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rec, err := sh.owned(k, token)
	if err != nil {
		return err
	}
	rec.completed = true
	rec.token = ""
	rec.resp = resp
	rec.expires = expires
	return nil
}

// Release implements driver.Store.
func (s *Store) Release(ctx context.Context, merchant, key, token string) error {
	if s.closed.Load() {
		return driver.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	k := recKey{merchant, key}
	sh := s.shard(merchant, key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, err := sh.owned(k, token); err != nil {
		return err
	}
	sh.remove(k)
	return nil
}

// Extend implements driver.Store.
func (s *Store) Extend(ctx context.Context, merchant, key, token string, now time.Time, lease time.Duration) error {
	if s.closed.Load() {
		return driver.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	k := recKey{merchant, key}
	sh := s.shard(merchant, key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rec, err := sh.owned(k, token)
	if err != nil {
		return err
	}
	rec.lease = stampOf(now.Add(lease))
	return nil
}

// List implements driver.Admin.
func (s *Store) List(ctx context.Context, f driver.Filter) ([]*driver.Record, error) {
	if s.closed.Load() {
		return nil, driver.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	type listed struct {
		k   recKey
		rec record
	}
	var found []listed
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, i := range sh.index {
			rec := sh.slot(i)
			if f.Merchant != "" && k.merchant != f.Merchant {
				continue
			}
			if f.State != "" && rec.state() != f.State {
				continue
			}
			if f.AfterMerchant != "" || f.AfterKey != "" {
				if c := cmp.Or(cmp.Compare(k.merchant, f.AfterMerchant), cmp.Compare(k.key, f.AfterKey)); c <= 0 {
					continue
				}
			}
			found = append(found, listed{k, *rec})
		}
		sh.mu.Unlock()
	}
	if len(found) == 0 {
		return nil, nil
	}
	slices.SortFunc(found, func(a, b listed) int {
		return cmp.Or(cmp.Compare(a.k.merchant, b.k.merchant), cmp.Compare(a.k.key, b.k.key))
	})
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	found = found[:min(len(found), limit)]
	recs := make([]driver.Record, len(found))
	out := make([]*driver.Record, len(found))
	for i := range found {
		found[i].rec.fill(&recs[i], found[i].k)
		out[i] = &recs[i]
	}
	return out, nil
}

// Get implements driver.Admin.
func (s *Store) Get(ctx context.Context, merchant, key string) (*driver.Record, error) {
	if s.closed.Load() {
		return nil, driver.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k := recKey{merchant, key}
	sh := s.shard(merchant, key)
	out := new(driver.Record)
	sh.mu.Lock()
	rec, ok := sh.get(k)
	if ok {
		rec.fill(out, k)
	}
	sh.mu.Unlock()
	if !ok {
		return nil, driver.ErrNotFound
	}
	return out, nil
}

// Delete implements driver.Admin.
func (s *Store) Delete(ctx context.Context, r *driver.Record) error {
	if s.closed.Load() {
		return driver.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	k := recKey{r.Merchant, r.Key}
	expires := stampOf(r.ExpiresAt)
	sh := s.shard(r.Merchant, r.Key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rec, ok := sh.get(k)
	if !ok || rec.state() != r.State || rec.token != r.Token || rec.expires != expires {
		return driver.ErrLeaseLost
	}
	sh.remove(k)
	return nil
}

// Len returns the number of records held, including expired ones not yet evicted.
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += sh.len()
		sh.mu.Unlock()
	}
	return n
}

// Close implements driver.Store.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}
