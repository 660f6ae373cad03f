package payments

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	mathbits "math/bits"
	"net/url"
	"slices"
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
// Payments returned by Get and ListStale share their Metadata map and
// their Events with the stored copy: treat them as read-only (the
// Processor never modifies metadata after creation, replaces Events rather
// than changing them in place, and hands its own callers deep copies).
type MemoryStore struct {
	seed   maphash.Seed
	shards [memShards]memShard
}

const memShards = 32

// memShard holds the store's own copy of each payment. Update overwrites
// that copy in place under the lock (one lookup, no allocation). Refunds
// slices are cloned on the way in and out (refunds are appended to);
// Metadata maps and Events slices are shared read-only (see Payment.Events).
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
	n     int // slots used
	// due: a bit per slot, set for the payments whose EventsDue is set
	// (ListEventsDue): no pointers for the collector to scan, and no
	// allocation per payment (a word per 64 slots).
	due []uint64
	_   [128 - 96]byte // one shard per cache line pair: no false sharing between cores
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
	sh, h := s.shard(p.ID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.find(p.ID, h) != nil {
		return ErrStoreConflict
	}
	i, c := sh.add(p.ID, h)
	*c = *p
	c.Refunds = refunds
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
	cur := sh.find(id, h)
	ok := cur != nil
	var p Payment
	if ok {
		p = *cur
	}
	sh.mu.RUnlock()
	if !ok || p.Merchant != merchant {
		return nil, ErrNotFound
	}
	p.Refunds = slices.Clone(p.Refunds)
	return &p, nil
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
	return s.compareAndSet(ctx, p, func(cur *Payment) {
		p.Version++
		*cur = *p
		cur.Refunds = refunds
	})
}

// compareAndSet calls set with the stored copy of p, under its shard's
// lock, if its stored Version and EventsRevision are p's; it returns ErrStoreConflict
// otherwise, ErrNotFound if the merchant has no such payment.
func (s *MemoryStore) compareAndSet(ctx context.Context, p *Payment, set func(cur *Payment)) error {
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
	set(cur)
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
	return s.scan(ctx, limit, func(sh *memShard, visit func(*Payment)) {
		for i := range sh.n {
			if cur := sh.slot(i); slices.Contains(statuses, cur.Status) && cur.UpdatedAt.Before(before) {
				visit(cur)
			}
		}
	}, func(p *Payment) time.Time { return p.UpdatedAt })
}

// ListEventsDue implements EventStore.
func (s *MemoryStore) ListEventsDue(ctx context.Context, before time.Time, limit int) ([]*Payment, error) {
	return s.scan(ctx, limit, func(sh *memShard, visit func(*Payment)) {
		for w, bits := range sh.due {
			for bits != 0 {
				i := w*64 + mathbits.TrailingZeros64(bits)
				bits &= bits - 1
				if cur := sh.slot(i); !cur.EventsDue.After(before) {
					visit(cur)
				}
			}
		}
	}, func(p *Payment) time.Time { return p.EventsDue })
}

// scan returns copies of the payments each shard's match visits (under the
// shard's read lock), ordered by key then id, at most limit (if positive).
func (s *MemoryStore) scan(ctx context.Context, limit int, match func(*memShard, func(*Payment)), key func(*Payment) time.Time) ([]*Payment, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []*Payment
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		match(sh, func(cur *Payment) {
			p := *cur
			p.Refunds = slices.Clone(cur.Refunds)
			out = append(out, &p)
		})
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
	return s.compareAndSet(ctx, p, func(cur *Payment) {
		p.EventsRevision++
		cur.Events, cur.EventsDue, cur.EventsRevision = p.Events, p.EventsDue, p.EventsRevision
	})
}

// ListDeadEvents implements EventStore.
func (s *MemoryStore) ListDeadEvents(ctx context.Context, after string, limit int) ([]*Payment, error) {
	var zero time.Time
	return s.scan(ctx, limit, func(sh *memShard, visit func(*Payment)) {
		for i := range sh.n {
			if cur := sh.slot(i); cur.ID > after && cur.HasDeadEvents() {
				visit(cur)
			}
		}
	}, func(*Payment) time.Time { return zero })
}
