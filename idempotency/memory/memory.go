// Package memory is an in-process idempotency store, registered as "memory".
//
// It is the default store: correct for a single process, bounded in size,
// with records expiring after their TTL. It does not survive a restart and
// is not shared between replicas; production deployments with more than one
// replica use a persistent store (redis, postgres, dynamodb).
//
// URL: memory://?max_entries=1000000
//
// # Full store
//
// Records are kept for their TTL: expired records are reclaimed as they
// fall due, and no unexpired record is ever removed to make room, whether
// completed (a retry within the TTL must replay it, not pay twice) or in
// progress (a retry must resume it). A store holding its bound of
// unexpired records refuses new keys with an error wrapping
// idempotency.ErrFull, which the payments API answers with a retryable
// 503; keys it holds still replay.
//
// The bound is kept per shard: a store bounded at N records spreads them
// over up to 32 shards of at least 1024 (one shard below 2048 records,
// where the bound is exact), so that a large store starts refusing some
// keys slightly before it holds N records in all.
//
// # Memory
//
// Measured with BenchmarkRecordCost (go1.26, amd64; 200,000 records), a
// record costs about 1.0 KB of heap once completed with a typical payment
// response (1,030 B: the 600-byte body 640 B, the key, fingerprint and
// payment id 150 B, the store's slot (which holds the response's status,
// header and body references), index and expiry-queue entry about 240 B;
// 24 B more while it keeps a second queue entry, when requests to its
// shard overlapped it), and about 420 B while in progress. The response body dominates: larger bodies cost their size.
// The index (keyed by a hash of the key) and the expiry queue hold no
// pointers: the garbage collector does not scan them.
//
// DefaultMaxEntries, 1,000,000 records, bounds the store at about 1 GB.
// Since records leave when their TTL (24 h by default) ends, memory follows
// the traffic of the last TTL rather than growing to the bound: the bound is
// reached at one million requests (payments, captures, refunds...) a day,
// 11.6 a second on average, beyond what a single-process deployment should
// carry without a shared, persistent store. Set max_entries to fit the
// process's memory limit otherwise: about max_entries × 1 KB.
package memory

import (
	"cmp"
	"context"
	"fmt"
	"hash/maphash"
	"math/bits"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/idempotency/driver"
	"github.com/payrail/payrail/internal/hashindex"
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

// DefaultMaxEntries bounds a store created without WithMaxEntries: about
// 1 GB of records at the bound (see the package documentation).
const DefaultMaxEntries = 1_000_000

const (
	shardBits  = 5
	shardCount = 1 << shardBits
)

// minShardRecords is the fewest records a shard is bounded to: a store
// bounded below shardCount×minShardRecords uses fewer shards (one below
// 2×minShardRecords), so that a small bound is exact.
const minShardRecords = 1024

// ErrFull is driver.ErrFull, which Begin wraps when the store is full.
//
// Deprecated: use idempotency.ErrFull (or driver.ErrFull).
var ErrFull = driver.ErrFull

// Option configures a Store.
type Option func(*Store)

// WithMaxEntries bounds the number of unexpired records kept (see the
// package documentation); n <= 0 keeps DefaultMaxEntries.
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
	limit  int  // records per shard: max spread over the shards in use
	shift  uint // 64 - log2(shards in use): a hash's top bits pick the shard
	closed atomic.Bool
	shards [shardCount]shard
}

// recKey identifies a record.
type recKey struct{ merchant, key string }

// record is a stored record, kept by value in its shard's slab: times are
// wall-clock stamps (no *time.Location, no monotonic reading) and the
// state is a flag. A free slot is the zero record (no merchant).
type record struct {
	merchant    string
	key         string
	fingerprint string
	token       string // the lease holder's; cleared on completion
	resourceID  string
	resp        driver.Response // kept by value: no object of its own
	lease       stamp           // LeaseExpiresAt
	created     stamp           // CreatedAt
	expires     stamp           // ExpiresAt
	completed   bool            // StateCompleted, else StateInProgress
	gen         uint32          // tells this record's queue entries from those of the slot's earlier records
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

// is reports whether r is the record of k.
func (r *record) is(k recKey) bool { return r.key == k.key && r.merchant == k.merchant }

// exported is the exported form of a record with its response, allocated
// together.
type exported struct {
	rec  driver.Record
	resp driver.Response
}

// fill sets out to the exported form of r and returns its record.
func (r *record) fill(out *exported) *driver.Record {
	out.rec = driver.Record{
		Merchant: r.merchant, Key: r.key, Fingerprint: r.fingerprint, State: r.state(),
		Token: r.token, ResourceID: r.resourceID, LeaseExpiresAt: r.lease.time(),
		CreatedAt: r.created.time(), ExpiresAt: r.expires.time(),
	}
	if r.completed {
		out.resp = r.resp
		out.rec.Response = &out.resp
	}
	return &out.rec
}

// shard holds records by value in the slots of chunks (so that a record
// costs no heap object of its own, and growing never copies records),
// indexed by the hash of their key: the index and the expiry queue hold no
// pointers, so that the garbage collector never scans them, and a key is
// hashed once per call. Callers of its methods hold mu.
//
// At most limit records are live, and a new slot is used only when no
// freed one is left, so slots stay below limit.
//
// The expiry queue holds an entry with the current expiry of every record,
// and stale entries (of records since removed, or completed with a later
// expiry), skipped when met and dropped by compact. It is made of runs
// sorted by expiry, order and the few in more, so that the first entry of
// one of them is the first to expire. Entries arrive mostly in expiry order
// (one TTL, a clock that moves forward) and are appended to order; another
// TTL makes a run of its own.
type shard struct {
	mu     sync.Mutex
	index  hashindex.Index[recKey] // slot of the record, by the hash of its key
	chunks [][]record              // chunkSize slots each (fewer if limit is smaller)
	used   int                     // slots ever used; slots below it are live or free
	free   []int                   // freed slots below used
	gen    uint32                  // the generation of the last record added
	order  []entry                 // expiry queue: the main run
	more   [][]entry               // expiry queue: other runs, usually none
	_      [56]byte                // 192 bytes per shard: no false sharing between cores
}

var _ [192]byte = [unsafe.Sizeof(shard{})]byte{}

// entry is a record's place in the expiry queue: current while the record
// in slot is of generation gen and has this expiry.
type entry struct {
	expires stamp
	gen     uint32
	slot    int32 // 2³¹ records of a shard would take hundreds of gigabytes
}

// The expiry queue's entries hold no pointers (nor does the index), so that
// the garbage collector does not scan them, and take 24 bytes.
var _ [24]byte = [unsafe.Sizeof(entry{})]byte{}

const (
	chunkBits = 6
	chunkSize = 1 << chunkBits // records per chunk (7 KiB)
)

func (sh *shard) slot(i int) *record { return &sh.chunks[i>>chunkBits][i&(chunkSize-1)] }

// find returns the slot of the record of k, whose hash is h.
func (sh *shard) find(k recKey, h uint64) (int, bool) {
	return sh.index.Find(k, h, func(i int) bool { return sh.slot(i).is(k) })
}

// get returns the record of k, whose hash is h.
func (sh *shard) get(k recKey, h uint64) (*record, bool) {
	i, ok := sh.find(k, h)
	if !ok {
		return nil, false
	}
	return sh.slot(i), true
}

// add stores rec (of the key k whose hash is h), which has no record; the
// shard holds fewer than limit records. It returns the record's slot.
func (sh *shard) add(k recKey, h uint64, rec *record, limit int) int {
	var i int
	if n := len(sh.free); n > 0 {
		i = sh.free[n-1]
		sh.free = sh.free[:n-1]
	} else {
		i = sh.used
		sh.used++
		if int(i>>chunkBits) == len(sh.chunks) {
			sh.chunks = append(sh.chunks, make([]record, min(chunkSize, limit)))
		}
	}
	sh.gen++
	rec.gen = sh.gen
	*sh.slot(i) = *rec
	sh.index.Add(k, h, i)
	return i
}

// remove deletes the record in slot i, of the key whose hash is h.
func (sh *shard) remove(i int, h uint64) {
	rec := sh.slot(i)
	sh.index.Remove(recKey{rec.merchant, rec.key}, h, i)
	*rec = record{} // drop its strings and response
	sh.free = append(sh.free, i)
}

// len returns the number of records.
func (sh *shard) len() int { return sh.index.Len() }

// New returns an empty store.
func New(opts ...Option) *Store {
	s := &Store{max: DefaultMaxEntries, seed: maphash.MakeSeed()}
	for _, o := range opts {
		o(s)
	}
	b := shardBits
	for b > 0 && s.max>>b < minShardRecords {
		b--
	}
	s.shift = 64 - uint(b)
	n := 1 << b
	s.limit = max(1, s.max/n+min(1, s.max%n)) // rounded up without overflowing near MaxInt
	return s
}

// hash returns the hash of (merchant, key): its top bits pick the shard
// (the choice only spreads the lock), and the shard's index is keyed by it.
func (s *Store) hash(merchant, key string) uint64 {
	return maphash.String(s.seed, key) ^ bits.RotateLeft64(maphash.String(s.seed, merchant), 32)
}

// shardOf returns the shard of the key whose hash is h.
func (s *Store) shardOf(h uint64) *shard { return &s.shards[h>>s.shift] } // 0 when shift is 64: one shard

// shard returns the shard of (merchant, key).
func (s *Store) shard(merchant, key string) *shard { return s.shardOf(s.hash(merchant, key)) }

// beginResult holds a BeginResult and its Record, allocated together.
type beginResult struct {
	res driver.BeginResult
	rec exported
}

func newResult(o driver.Outcome, r *record) *driver.BeginResult {
	x := &beginResult{}
	x.res = driver.BeginResult{Outcome: o, Record: r.fill(&x.rec)}
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
	h := s.hash(r.Merchant, r.Key)
	o, rec, err := s.shardOf(h).begin(s, k, h, r)
	if err != nil {
		return nil, err
	}
	// The result is built outside the shard's lock.
	return newResult(o, &rec), nil
}

// begin is Begin on the shard of k, whose hash is h; it returns the
// outcome and the record after Begin.
func (sh *shard) begin(s *Store, k recKey, h uint64, r *driver.BeginRequest) (driver.Outcome, record, error) {
	limit := s.limit
	now := stampOf(r.Now)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, ok := sh.find(k, h)
	var rec *record
	if ok {
		rec = sh.slot(i)
		if !now.before(rec.expires) {
			sh.remove(i, h)
			ok = false
		}
	}
	if !ok {
		// Reclaim expired records as they fall due, two for each new one, so
		// that the shard holds the records of one TTL rather than filling up
		// with expired ones. Nothing is due while the first entry is not: the
		// bound is then exact, and a full shard refuses the key.
		for i := 0; i < 2 && sh.due(now); i++ {
			sh.reclaim(now, s)
		}
		if sh.len() >= limit {
			return 0, record{}, sh.full()
		}
		nr := record{
			merchant: r.Merchant, key: r.Key, fingerprint: r.Fingerprint, token: r.Token, resourceID: r.ResourceID,
			lease: stampOf(r.Now.Add(r.Lease)), created: now, expires: stampOf(r.Now.Add(r.TTL)),
		}
		sh.enqueue(sh.add(k, h, &nr, limit), nr.expires, limit)
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

// Expiry queue shape: at most maxRuns runs; an entry that arrives at most
// nearTail entries out of order is inserted there rather than opening a run.
const (
	maxRuns  = 4
	nearTail = 16
)

// enqueue adds the entry of the record in slot i, which expires at exp, to
// the expiry queue. Callers hold sh.mu.
func (sh *shard) enqueue(i int, exp stamp, limit int) {
	e := entry{exp, sh.slot(i).gen, int32(i)}
	if fits(sh.order, exp) { // the usual case
		sh.order = append(sh.order, e)
	} else if q := sh.runFor(exp); q != nil {
		*q = append(*q, e)
	} else if i := insertionPoint(sh.order, exp); len(sh.order)-i <= nearTail {
		// A clock read just before a lock taken just after another's.
		sh.order = slices.Insert(sh.order, i, e)
	} else if len(sh.more) < maxRuns-1 {
		sh.more = append(sh.more, []entry{e})
	} else { // rare: keep the main run sorted, whatever it costs
		sh.order = slices.Insert(sh.order, i, e)
	}
	if sh.queued() > 2*limit+64 {
		sh.compact()
	}
}

// retime moves the entry of the record in slot i from old to exp if it is
// the main run's last and stays in order there, as it is when no other key
// of the shard began since it did; it reports whether it did. Otherwise
// the entry becomes stale and the caller enqueues a new one. Callers hold
// sh.mu.
func (sh *shard) retime(i int, old, exp stamp) bool {
	n := len(sh.order)
	if n == 0 || sh.order[n-1].expires != old || int(sh.order[n-1].slot) != i || sh.order[n-1].gen != sh.slot(i).gen || n > 1 && exp.before(sh.order[n-2].expires) {
		return false
	}
	sh.order[n-1].expires = exp
	return true
}

// runFor returns the run of more that an entry expiring at exp can be
// appended to, or nil.
func (sh *shard) runFor(exp stamp) *[]entry {
	for i := range sh.more {
		if fits(sh.more[i], exp) {
			return &sh.more[i]
		}
	}
	return nil
}

func fits(run []entry, exp stamp) bool { return len(run) == 0 || !exp.before(run[len(run)-1].expires) }

// insertionPoint returns where an entry expiring at exp goes in run: after
// the entries expiring no later.
func insertionPoint(run []entry, exp stamp) int {
	i, _ := slices.BinarySearchFunc(run, exp, func(e entry, t stamp) int {
		if t.before(e.expires) {
			return 1
		}
		return -1
	})
	return i
}

// queued returns the number of entries in the expiry queue.
func (sh *shard) queued() int {
	n := len(sh.order)
	for _, q := range sh.more {
		n += len(q)
	}
	return n
}

// first returns the run whose first entry expires first, or nil if the
// queue is empty. It drops the empty runs of more.
func (sh *shard) first() *[]entry {
	if len(sh.more) == 0 { // the usual case
		if len(sh.order) == 0 {
			return nil
		}
		return &sh.order
	}
	sh.more = slices.DeleteFunc(sh.more, func(q []entry) bool { return len(q) == 0 })
	var f *[]entry
	if len(sh.order) > 0 {
		f = &sh.order
	}
	for i := range sh.more {
		if f == nil || sh.more[i][0].expires.before((*f)[0].expires) {
			f = &sh.more[i]
		}
	}
	return f
}

// current reports whether e is the entry of a live record.
func (sh *shard) current(e *entry) bool {
	rec := sh.slot(int(e.slot))
	return rec.merchant != "" && rec.gen == e.gen && rec.expires == e.expires
}

// due reports whether the first entry of the expiry queue has expired by
// now: if not, no record of the shard has. Callers hold sh.mu.
func (sh *shard) due(now stamp) bool {
	q := sh.first()
	return q != nil && !now.before((*q)[0].expires)
}

// reclaim removes the record that expired first, if it has expired by now,
// dropping the stale entries before it. It reports whether a record was
// removed: if not, no record of the shard has expired. Unexpired records,
// completed or in progress, are never removed. Callers hold sh.mu.
func (sh *shard) reclaim(now stamp, s *Store) bool {
	for {
		q := sh.first()
		if q == nil || now.before((*q)[0].expires) {
			return false
		}
		e := (*q)[0]
		*q = (*q)[1:]
		if sh.current(&e) {
			rec := sh.slot(int(e.slot))
			sh.remove(int(e.slot), s.hash(rec.merchant, rec.key))
			return true
		}
	}
}

// full returns the error of a Begin of a new key in a full shard, when no
// record of it has expired. Callers hold sh.mu.
func (sh *shard) full() error {
	next := "-"
	if q := sh.first(); q != nil {
		next = (*q)[0].expires.time().UTC().Format(time.RFC3339)
	}
	return fmt.Errorf("memory: the key's shard holds %d unexpired records, its bound; none expires before %s: %w",
		sh.len(), next, driver.ErrFull)
}

// compact drops the stale entries of the expiry queue. Callers hold sh.mu.
func (sh *shard) compact() {
	stale := func(e entry) bool { return !sh.current(&e) }
	sh.order = slices.DeleteFunc(sh.order, stale)
	for i := range sh.more {
		sh.more[i] = slices.DeleteFunc(sh.more[i], stale)
	}
	sh.more = slices.DeleteFunc(sh.more, func(q []entry) bool { return len(q) == 0 })
}

// owned returns the slot of the in-progress record of k (whose hash is h)
// owned by token. Callers hold sh.mu.
func (sh *shard) owned(k recKey, h uint64, token string) (int, *record, error) {
	i, ok := sh.find(k, h)
	if !ok {
		return 0, nil, driver.ErrLeaseLost
	}
	rec := sh.slot(i)
	if rec.completed || rec.token != token {
		return 0, nil, driver.ErrLeaseLost
	}
	return i, rec, nil
}

// lock checks that the store is open and ctx live, then locks the shard of
// (merchant, key) and returns it with the key and its hash; the caller
// unlocks sh.mu.
func (s *Store) lock(ctx context.Context, merchant, key string) (sh *shard, k recKey, h uint64, err error) {
	if s.closed.Load() {
		return nil, k, 0, driver.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, k, 0, err
	}
	h = s.hash(merchant, key)
	sh = s.shardOf(h)
	sh.mu.Lock()
	return sh, recKey{merchant, key}, h, nil
}

// Complete implements driver.Store.
func (s *Store) Complete(ctx context.Context, r driver.CompleteRequest) error {
	expires := stampOf(r.Now.Add(r.TTL))
	sh, k, h, err := s.lock(ctx, r.Merchant, r.Key)
	if err != nil {
		return err
	}
	defer sh.mu.Unlock()
	i, rec, err := sh.owned(k, h, r.Token)
	if err != nil {
		return err
	}
	rec.completed = true
	rec.token = ""
	rec.resp = driver.Response{} // a nil Response stores an empty one
	if r.Response != nil {
		rec.resp = *r.Response
	}
	if old := rec.expires; old != expires {
		rec.expires = expires
		if !sh.retime(i, old, expires) {
			sh.enqueue(i, expires, s.limit)
		}
	}
	return nil
}

// Release implements driver.Store.
func (s *Store) Release(ctx context.Context, merchant, key, token string) error {
	sh, k, h, err := s.lock(ctx, merchant, key)
	if err != nil {
		return err
	}
	defer sh.mu.Unlock()
	i, _, err := sh.owned(k, h, token)
	if err != nil {
		return err
	}
	sh.remove(i, h)
	return nil
}

// Extend implements driver.Store.
func (s *Store) Extend(ctx context.Context, r driver.ExtendRequest) error {
	sh, k, h, err := s.lock(ctx, r.Merchant, r.Key)
	if err != nil {
		return err
	}
	defer sh.mu.Unlock()
	_, rec, err := sh.owned(k, h, r.Token)
	if err != nil {
		return err
	}
	rec.lease = stampOf(r.Now.Add(r.Lease))
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
	var found []record
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for j := range sh.used {
			rec := sh.slot(j)
			if rec.merchant == "" { // a free slot
				continue
			}
			if f.Merchant != "" && rec.merchant != f.Merchant {
				continue
			}
			if f.State != "" && rec.state() != f.State {
				continue
			}
			if f.AfterMerchant != "" || f.AfterKey != "" {
				if c := cmp.Or(cmp.Compare(rec.merchant, f.AfterMerchant), cmp.Compare(rec.key, f.AfterKey)); c <= 0 {
					continue
				}
			}
			found = append(found, *rec)
		}
		sh.mu.Unlock()
	}
	if len(found) == 0 {
		return nil, nil
	}
	slices.SortFunc(found, func(a, b record) int {
		return cmp.Or(cmp.Compare(a.merchant, b.merchant), cmp.Compare(a.key, b.key))
	})
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	found = found[:min(len(found), limit)]
	recs := make([]exported, len(found))
	out := make([]*driver.Record, len(found))
	for i := range found {
		out[i] = found[i].fill(&recs[i])
	}
	return out, nil
}

// Get implements driver.Admin.
func (s *Store) Get(ctx context.Context, merchant, key string) (*driver.Record, error) {
	out := new(exported)
	sh, k, h, err := s.lock(ctx, merchant, key)
	if err != nil {
		return nil, err
	}
	rec, ok := sh.get(k, h)
	var r *driver.Record
	if ok {
		r = rec.fill(out)
	}
	sh.mu.Unlock()
	if !ok {
		return nil, driver.ErrNotFound
	}
	return r, nil
}

// Delete implements driver.Admin.
func (s *Store) Delete(ctx context.Context, r *driver.Record) error {
	expires := stampOf(r.ExpiresAt)
	sh, k, h, err := s.lock(ctx, r.Merchant, r.Key)
	if err != nil {
		return err
	}
	defer sh.mu.Unlock()
	i, ok := sh.find(k, h)
	if !ok {
		return driver.ErrLeaseLost
	}
	if rec := sh.slot(i); rec.state() != r.State || rec.token != r.Token || rec.expires != expires {
		return driver.ErrLeaseLost
	}
	sh.remove(i, h)
	return nil
}

// Len returns the number of records held, including expired ones not yet
// reclaimed.
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
