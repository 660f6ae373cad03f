package payments

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	mathbits "math/bits"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/payrail/payrail/internal/hashindex"
	"github.com/payrail/payrail/internal/registry"
)

// Store errors; implementations return (or wrap) them, and ErrNotFound
// when no payment has the id for the merchant: one not-found sentinel,
// whichever layer answered.
var (
	// ErrStoreNotFound is ErrNotFound.
	//
	// Deprecated: return and test ErrNotFound.
	ErrStoreNotFound = ErrNotFound
	// ErrStoreConflict: Create of an existing id, or Update of a payment
	// whose Version changed since it was read.
	ErrStoreConflict = errors.New("payments: store: version conflict")
	// ErrStoreInvalid: the payment holds a value the store cannot keep
	// exactly (a NUL byte, invalid UTF-8, a value too long for its
	// column...). The input is at fault, not the store's availability, and
	// nothing was stored. Implementations wrap it with the field's name,
	// never its value; a Get by such an id or merchant returns
	// ErrNotFound.
	ErrStoreInvalid = errors.New("payments: store: value cannot be stored")
)

// Store persists payments. Implementations are safe for concurrent use
// and scope every read and write by merchant.
type Store interface {
	// Create stores a copy of a new payment with Version 1 (set on p). It
	// returns ErrStoreConflict if the id exists. The store must not retain
	// p or its Refunds slice: the caller goes on modifying them.
	Create(ctx context.Context, p *Payment) error
	// Get returns a copy of the payment that the caller owns (its Metadata
	// map may be shared and is treated as read-only), or ErrNotFound
	// (also when it belongs to another merchant).
	Get(ctx context.Context, merchant, id string) (*Payment, error)
	// Update replaces the payment with a copy of p if its stored Version
	// equals p.Version (and, for an EventStore, its EventsRevision
	// p.EventsRevision), and increments p.Version. It returns
	// ErrStoreConflict otherwise. Like Create, it must not retain p.
	Update(ctx context.Context, p *Payment) error
	// ListStale returns up to limit payments in one of the statuses whose
	// UpdatedAt is before the cutoff, oldest first, across merchants; the
	// worker uses it to recover pending and processing payments.
	ListStale(ctx context.Context, statuses []Status, before time.Time, limit int) ([]*Payment, error)
	// Close releases the store's resources.
	Close() error
}

// StoreDriver opens payment stores from URLs whose scheme is the name it
// was registered under.
type StoreDriver interface {
	// Open returns the store configured by u.
	Open(ctx context.Context, u *url.URL) (Store, error)
}

// ErrUnknownStoreDriver is returned by OpenStore for an unregistered scheme.
var ErrUnknownStoreDriver = errors.New("payments: unknown store driver")

var storeDrivers = registry.New[StoreDriver]("payments", map[string]string{
	"memory":   "github.com/payrail/payrail/payments",
	"postgres": "github.com/payrail/payrail/payments/postgres",
}, ErrUnknownStoreDriver, nil)

func init() { RegisterStore("memory", memoryOpener{}) }

// RegisterStore makes a payment store driver available under name, the URL
// scheme that selects it. It panics if d is nil or name is already
// registered. "memory" is registered by this package.
func RegisterStore(name string, d StoreDriver) { storeDrivers.Register(name, d) }

// StoreDrivers returns the sorted names of the registered store drivers.
func StoreDrivers() []string { return storeDrivers.Drivers() }

// OpenStore opens the payment store named by urlstr, e.g. "memory://".
func OpenStore(ctx context.Context, urlstr string) (Store, error) {
	d, u, err := storeDrivers.Lookup(urlstr)
	if err != nil {
		return nil, err
	}
	s, err := d.Open(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("payments: open store %s: %w", registry.Redact(u), err)
	}
	return s, nil
}

type memoryOpener struct{}

func (memoryOpener) Open(_ context.Context, u *url.URL) (Store, error) {
	if u.Host != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, errors.New("memory store URL takes no host, path or parameters: use memory://")
	}
	return NewMemoryStore(), nil
}

// MemoryStore is an in-process Store, the default. It keeps every payment
// for the life of the process, sharded to keep lock contention low.
//
// Payments returned by Get and ListStale share their Events with the
// stored copy: treat them as read-only (the Processor replaces Events
// rather than changing them in place, and hands its own callers deep
// copies). Their Metadata maps are their own.
type MemoryStore struct {
	seed   maphash.Seed
	shards [memShards]memShard
}

const memShards = 32

// memShard holds the store's own copy of each payment. Update overwrites
// that copy in place under the lock (one lookup, no allocation). Refunds
// slices are cloned on the way in and out (refunds are appended to);
// Events slices are shared read-only (see Payment.Events). Metadata is kept
// encoded, beside the copy (see encodeMeta), and decoded into a new map on
// the way out.
type memShard struct {
	mu sync.RWMutex
	// index holds the slot of each payment by the hash of its id: it
	// holds no pointers, so that the collector does not scan it, and an id
	// is hashed once per call.
	index hashindex.Index[string]
	// slabs hold the stored copies, memSlab to a slab allocated at once
	// rather than one by one (payments are never removed, so a slab is
	// never partly garbage); slot i is slabs[i/memSlab][i%memSlab].
	slabs [][]Payment
	// metas hold the metadata of the payment in the same slot of slabs,
	// encoded (encodeMeta): a string of a few bytes rather than the map,
	// whose smallest table costs 336 bytes for a single key and would be
	// kept for the life of the process. The stored copies' Metadata is nil.
	metas [][]string
	n     int // slots used
	// due: a bit per slot, set for the payments whose EventsDue is set
	// (ListEventsDue): no pointers for the collector to scan, and no
	// allocation per payment (a word per 64 slots).
	due []uint64
	_   [128 - 120]byte // one shard per cache line pair: no false sharing between cores
}

// memSlab is the number of payments a shard allocates at once.
const memSlab = 32

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{seed: maphash.MakeSeed()}
}

// shard returns the shard of a payment id and the id's hash.
func (s *MemoryStore) shard(id string) (*memShard, uint64) {
	h := maphash.String(s.seed, id)
	return &s.shards[h%memShards], h
}

func (sh *memShard) slot(i int) *Payment { return &sh.slabs[i/memSlab][i%memSlab] }

// meta is the encoded metadata of slot i.
func (sh *memShard) meta(i int) *string { return &sh.metas[i/memSlab][i%memSlab] }

// out returns a copy of the payment in slot i that the caller owns but for
// its Events (shared read-only). The shard is locked.
func (sh *memShard) out(i int) *Payment {
	p := *sh.slot(i)
	p.Refunds = slices.Clone(p.Refunds)
	p.Metadata = decodeMeta(*sh.meta(i))
	return &p
}

// find returns the stored copy of the payment id, whose hash is h, or nil.
// The shard is locked.
func (sh *memShard) find(id string, h uint64) *Payment {
	if i, ok := sh.findSlot(id, h); ok {
		return sh.slot(i)
	}
	return nil
}

// findSlot returns the slot of the payment id, whose hash is h. The shard
// is locked.
func (sh *memShard) findSlot(id string, h uint64) (int, bool) {
	return sh.index.Find(id, h, func(i int) bool { return sh.slot(i).ID == id })
}

// add returns a new slot for the payment id, whose hash is h and which has
// none. The shard is locked.
func (sh *memShard) add(id string, h uint64) (int, *Payment) {
	i := sh.n
	if i%memSlab == 0 {
		sh.slabs = append(sh.slabs, make([]Payment, memSlab))
		sh.metas = append(sh.metas, make([]string, memSlab))
	}
	sh.n++
	sh.index.Add(id, h, i)
	return i, sh.slot(i)
}

// Create implements Store.
func (s *MemoryStore) Create(ctx context.Context, p *Payment) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	refunds := slices.Clone(p.Refunds)
	meta := encodeMeta(p.Metadata)
	sh, h := s.shard(p.ID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.find(p.ID, h) != nil {
		return ErrStoreConflict
	}
	i, c := sh.add(p.ID, h)
	*c = *p
	c.Refunds, c.Metadata = refunds, nil
	*sh.meta(i) = meta
	c.Version = 1
	p.Version = 1
	sh.indexDue(i, false, c)
	return nil
}

// Get implements Store.
func (s *MemoryStore) Get(ctx context.Context, merchant, id string) (*Payment, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sh, h := s.shard(id)
	sh.mu.RLock()
	var p *Payment
	if i, ok := sh.findSlot(id, h); ok && sh.slot(i).Merchant == merchant {
		p = sh.out(i)
	}
	sh.mu.RUnlock()
	if p == nil {
		return nil, ErrNotFound
	}
	return p, nil
}

// indexDue keeps the shard's due set in step with the EventsDue of c, in
// slot i, which was due before if wasDue; the shard is locked. The set
// changes only when the payment's due-ness does.
func (sh *memShard) indexDue(i int, wasDue bool, c *Payment) {
	switch isDue := !c.EventsDue.IsZero(); {
	case isDue && !wasDue:
		w := i / 64
		if w >= len(sh.due) {
			sh.due = append(sh.due, make([]uint64, w+1-len(sh.due))...)
		}
		sh.due[w] |= 1 << (i % 64)
	case !isDue && wasDue:
		sh.due[i/64] &^= 1 << (i % 64)
	}
}

// Update implements Store.
func (s *MemoryStore) Update(ctx context.Context, p *Payment) error {
	refunds := slices.Clone(p.Refunds)
	return s.compareAndSet(ctx, p, func(cur *Payment, meta *string) {
		p.Version++
		*cur = *p
		cur.Refunds, cur.Metadata = refunds, nil
		if !sameMeta(*meta, p.Metadata) { // metadata is seldom changed after creation
			*meta = encodeMeta(p.Metadata)
		}
	})
}

// compareAndSet calls set with the stored copy of p, under its shard's
// lock, if its stored Version and EventsRevision are p's; it returns ErrStoreConflict
// otherwise, ErrNotFound if the merchant has no such payment.
func (s *MemoryStore) compareAndSet(ctx context.Context, p *Payment, set func(cur *Payment, meta *string)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sh, h := s.shard(p.ID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	i, ok := sh.findSlot(p.ID, h)
	var cur *Payment
	if ok {
		cur = sh.slot(i)
	}
	if cur == nil || cur.Merchant != p.Merchant {
		return ErrNotFound
	}
	if cur.Version != p.Version || cur.EventsRevision != p.EventsRevision {
		return ErrStoreConflict
	}
	wasDue := !cur.EventsDue.IsZero()
	set(cur, sh.meta(i))
	sh.indexDue(i, wasDue, cur)
	return nil
}

// Durable reports false: what the memory store holds is lost when the
// process exits (see Processor.DurableStore).
func (s *MemoryStore) Durable() bool { return false }

// Close implements Store; the memory store holds no resources.
func (s *MemoryStore) Close() error { return nil }

// ListStale implements Store.
func (s *MemoryStore) ListStale(ctx context.Context, statuses []Status, before time.Time, limit int) ([]*Payment, error) {
	return s.scan(ctx, limit, func(sh *memShard, visit func(int)) {
		for i := range sh.n {
			if cur := sh.slot(i); slices.Contains(statuses, cur.Status) && cur.UpdatedAt.Before(before) {
				visit(i)
			}
		}
	}, func(p *Payment) time.Time { return p.UpdatedAt })
}

// ListEventsDue implements EventStore.
func (s *MemoryStore) ListEventsDue(ctx context.Context, before time.Time, limit int) ([]*Payment, error) {
	return s.scan(ctx, limit, func(sh *memShard, visit func(int)) {
		for w, bits := range sh.due {
			for bits != 0 {
				i := w*64 + mathbits.TrailingZeros64(bits)
				bits &= bits - 1
				if cur := sh.slot(i); !cur.EventsDue.After(before) {
					visit(i)
				}
			}
		}
	}, func(p *Payment) time.Time { return p.EventsDue })
}

// scan returns copies of the payments in the slots each shard's match
// visits (under the shard's read lock), ordered by key then id, at most
// limit (if positive).
func (s *MemoryStore) scan(ctx context.Context, limit int, match func(*memShard, func(slot int)), key func(*Payment) time.Time) ([]*Payment, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []*Payment
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		match(sh, func(i int) { out = append(out, sh.out(i)) })
		sh.mu.RUnlock()
	}
	slices.SortFunc(out, func(a, b *Payment) int {
		return cmp.Or(key(a).Compare(key(b)), cmp.Compare(a.ID, b.ID))
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// UpdateEvents implements EventStore.
func (s *MemoryStore) UpdateEvents(ctx context.Context, p *Payment) error {
	return s.compareAndSet(ctx, p, func(cur *Payment, _ *string) {
		p.EventsRevision++
		cur.Events, cur.EventsDue, cur.EventsRevision = p.Events, p.EventsDue, p.EventsRevision
	})
}

// ListDeadEvents implements EventStore.
func (s *MemoryStore) ListDeadEvents(ctx context.Context, after string, limit int) ([]*Payment, error) {
	var zero time.Time
	return s.scan(ctx, limit, func(sh *memShard, visit func(int)) {
		for i := range sh.n {
			if cur := sh.slot(i); cur.ID > after && cur.HasDeadEvents() {
				visit(i)
			}
		}
	}, func(*Payment) time.Time { return zero })
}

// encodeMeta encodes metadata for MemoryStore: the number of pairs, then
// each key and value after its length, the numbers as uvarints; "" for
// none. One allocation, of a few bytes more than the keys and values.
func encodeMeta(md map[string]string) string {
	if len(md) == 0 {
		return ""
	}
	n := uvarintLen(len(md))
	for k, v := range md {
		n += uvarintLen(len(k)) + len(k) + uvarintLen(len(v)) + len(v)
	}
	var b strings.Builder
	b.Grow(n)
	var num [binary.MaxVarintLen64]byte
	b.Write(binary.AppendUvarint(num[:0], uint64(len(md))))
	for k, v := range md {
		b.Write(binary.AppendUvarint(num[:0], uint64(len(k))))
		b.WriteString(k)
		b.Write(binary.AppendUvarint(num[:0], uint64(len(v))))
		b.WriteString(v)
	}
	return b.String()
}

// uvarintLen is the length of the uvarint of n.
func uvarintLen(n int) int { return (mathbits.Len64(uint64(n)|1) + 6) / 7 }

// metaReader reads what encodeMeta wrote.
type metaReader struct{ s string }

// num reads a uvarint.
func (r *metaReader) num() int {
	var n uint64
	for shift := 0; r.s != ""; shift += 7 {
		c := r.s[0]
		r.s = r.s[1:]
		n |= uint64(c&0x7f) << shift
		if c < 0x80 {
			break
		}
	}
	return int(n)
}

// str reads a length and that many bytes, sharing the encoded string.
func (r *metaReader) str() string {
	n := min(r.num(), len(r.s))
	v := r.s[:n]
	r.s = r.s[n:]
	return v
}

// decodeMeta returns a new map of the pairs s encodes (nil for ""); its
// strings share s.
func decodeMeta(s string) map[string]string {
	if s == "" {
		return nil
	}
	r := metaReader{s}
	n := r.num()
	md := make(map[string]string, n)
	for range n {
		k := r.str()
		md[k] = r.str()
	}
	return md
}

// sameMeta reports whether s encodes exactly the pairs of md, without
// allocating.
func sameMeta(s string, md map[string]string) bool {
	if s == "" {
		return len(md) == 0
	}
	r := metaReader{s}
	n := r.num()
	if n != len(md) {
		return false
	}
	for range n {
		k := r.str()
		v := r.str()
		if w, ok := md[k]; !ok || w != v {
			return false
		}
	}
	return true
}
