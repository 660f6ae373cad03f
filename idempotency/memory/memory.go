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

const shardCount = 32

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
	max    int
	seed   maphash.Seed
	closed atomic.Bool
	shards [shardCount]shard
}

type shard struct {
	mu    sync.Mutex
	recs  map[string]*driver.Record
	order []string // insertion order, for eviction; may hold deleted keys
}

// New returns an empty store.
func New(opts ...Option) *Store {
	s := &Store{max: DefaultMaxEntries, seed: maphash.MakeSeed()}
	for _, o := range opts {
		o(s)
	}
	for i := range s.shards {
		s.shards[i].recs = map[string]*driver.Record{}
	}
	return s
}

func id(merchant, key string) string { return merchant + "\x00" + key }

func (s *Store) shard(k string) *shard {
	return &s.shards[maphash.String(s.seed, k)%shardCount]
}

func (s *Store) shardLimit() int { return max(1, (s.max+shardCount-1)/shardCount) }

func clone(r *driver.Record) *driver.Record {
	c := *r
	return &c
}

// Begin implements driver.Store.
func (s *Store) Begin(ctx context.Context, r *driver.BeginRequest) (*driver.BeginResult, error) {
	if s.closed.Load() {
		return nil, driver.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k := id(r.Merchant, r.Key)
	sh := s.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rec, ok := sh.recs[k]
	if ok && !r.Now.Before(rec.ExpiresAt) {
		delete(sh.recs, k)
		ok = false
	}
	if !ok {
		if len(sh.recs) >= s.shardLimit() && !sh.evict(r.Now) {
			return nil, ErrFull
		}
		rec = &driver.Record{
			Merchant: r.Merchant, Key: r.Key, Fingerprint: r.Fingerprint,
			State: driver.StateInProgress, Token: r.Token, ResourceID: r.ResourceID,
			LeaseExpiresAt: r.Now.Add(r.Lease), CreatedAt: r.Now, ExpiresAt: r.Now.Add(r.TTL),
		}
		sh.recs[k] = rec
		sh.order = append(sh.order, k)
		if len(sh.order) > 2*s.shardLimit()+64 {
			sh.compact()
		}
		return &driver.BeginResult{Outcome: driver.Acquired, Record: clone(rec)}, nil
	}
	switch {
	case rec.Fingerprint != r.Fingerprint:
		return &driver.BeginResult{Outcome: driver.Mismatch, Record: clone(rec)}, nil
	case rec.State == driver.StateCompleted:
		return &driver.BeginResult{Outcome: driver.Replay, Record: clone(rec)}, nil
	case r.Now.Before(rec.LeaseExpiresAt):
		return &driver.BeginResult{Outcome: driver.InProgress, Record: clone(rec)}, nil
	}
	rec.Token = r.Token
	rec.LeaseExpiresAt = r.Now.Add(r.Lease)
	return &driver.BeginResult{Outcome: driver.Reacquired, Record: clone(rec)}, nil
}

// evict frees one slot: expired records first, then the oldest completed.
// It reports whether a record was removed. Callers hold sh.mu.
func (sh *shard) evict(now time.Time) bool {
	// Pass 1: drop queue entries for deleted keys and expired records at the
	// front; records are inserted roughly in expiry order.
	for len(sh.order) > 0 {
		k := sh.order[0]
		rec, ok := sh.recs[k]
		if ok && now.Before(rec.ExpiresAt) {
			break
		}
		sh.order = sh.order[1:]
		if ok {
			delete(sh.recs, k)
			return true
		}
	}
	// Pass 2: the oldest completed record.
	for i, k := range sh.order {
		rec, ok := sh.recs[k]
		if !ok || rec.State == driver.StateCompleted || !now.Before(rec.ExpiresAt) {
			if i == 0 {
				sh.order = sh.order[1:]
			} else {
				sh.order = slices.Delete(sh.order, i, i+1)
			}
			if ok {
				delete(sh.recs, k)
				return true
			}
			return sh.evict(now)
		}
	}
	return false
}

// compact drops queue entries whose records are gone. Callers hold sh.mu.
func (sh *shard) compact() {
	sh.order = slices.DeleteFunc(sh.order, func(k string) bool {
		_, ok := sh.recs[k]
		return !ok
	})
}

// owned returns the in-progress record owned by token. Callers hold sh.mu.
func (sh *shard) owned(k, token string) (*driver.Record, error) {
	rec, ok := sh.recs[k]
	if !ok || rec.State != driver.StateInProgress || rec.Token != token {
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
	k := id(merchant, key)
	sh := s.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rec, err := sh.owned(k, token)
	if err != nil {
		return err
	}
	rec.State = driver.StateCompleted
	rec.Token = ""
	rec.Response = resp
	rec.ExpiresAt = now.Add(ttl)
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
	k := id(merchant, key)
	sh := s.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, err := sh.owned(k, token); err != nil {
		return err
	}
	delete(sh.recs, k)
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
	k := id(merchant, key)
	sh := s.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rec, err := sh.owned(k, token)
	if err != nil {
		return err
	}
	rec.LeaseExpiresAt = now.Add(lease)
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
	var out []*driver.Record
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for _, rec := range sh.recs {
			if f.Merchant != "" && rec.Merchant != f.Merchant {
				continue
			}
			if f.State != "" && rec.State != f.State {
				continue
			}
			if f.AfterMerchant != "" || f.AfterKey != "" {
				if c := cmp.Or(cmp.Compare(rec.Merchant, f.AfterMerchant), cmp.Compare(rec.Key, f.AfterKey)); c <= 0 {
					continue
				}
			}
			out = append(out, clone(rec))
		}
		sh.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b *driver.Record) int {
		return cmp.Or(cmp.Compare(a.Merchant, b.Merchant), cmp.Compare(a.Key, b.Key))
	})
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	if len(out) > limit {
		out = out[:limit]
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
	k := id(merchant, key)
	sh := s.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rec, ok := sh.recs[k]
	if !ok {
		return nil, driver.ErrNotFound
	}
	return clone(rec), nil
}

// Delete implements driver.Admin.
func (s *Store) Delete(ctx context.Context, r *driver.Record) error {
	if s.closed.Load() {
		return driver.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	k := id(r.Merchant, r.Key)
	sh := s.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	rec, ok := sh.recs[k]
	if !ok || rec.State != r.State || rec.Token != r.Token || !rec.ExpiresAt.Equal(r.ExpiresAt) {
		return driver.ErrLeaseLost
	}
	delete(sh.recs, k)
	return nil
}

// Len returns the number of records held, including expired ones not yet evicted.
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.recs)
		sh.mu.Unlock()
	}
	return n
}

// Close implements driver.Store.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}
