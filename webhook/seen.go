package webhook

import (
	"container/heap"
	"context"
	"fmt"
	"sync"
	"time"
)

// SeenStore records the webhook ids a receiver has accepted, for
// [WithSeenStore]. Implementations must be safe for concurrent use, and
// Claim must be atomic: of concurrent claims of one id, one wins.
//
// [MemorySeenStore] serves one process. A receiver running several
// replicas behind a load balancer needs a store they share (for example
// Redis: SET id 1 NX PX ttl for Claim, DEL for Release), or a replay
// sent to another replica is accepted.
type SeenStore interface {
	// Claim records id for ttl and reports true, unless id is already
	// recorded and has not expired: then it reports false.
	Claim(ctx context.Context, id string, ttl time.Duration) (bool, error)
	// Release removes id, so that a later Claim of it succeeds. Releasing
	// an unknown id is not an error.
	Release(ctx context.Context, id string) error
}

// DefaultSeenEntries is the default capacity of a MemorySeenStore.
const DefaultSeenEntries = 1 << 20

// MemorySeenStore is an in-process SeenStore whose entries expire. It
// holds at most a fixed number of unexpired ids; when full, Claim fails
// with ErrSeenStoreFull rather than forget an id early (which would let a
// replay through). Only correctly signed deliveries reach it, so its size
// follows the sender's traffic over one tolerance window.
type MemorySeenStore struct {
	mu     sync.Mutex
	max    int
	until  map[string]time.Time
	expiry expiryHeap
}

// NewMemorySeenStore returns a MemorySeenStore holding at most maxEntries
// unexpired ids (DefaultSeenEntries if maxEntries ≤ 0).
func NewMemorySeenStore(maxEntries int) *MemorySeenStore {
	if maxEntries <= 0 {
		maxEntries = DefaultSeenEntries
	}
	return &MemorySeenStore{max: maxEntries, until: make(map[string]time.Time)}
}

// Claim implements SeenStore.
func (s *MemorySeenStore) Claim(_ context.Context, id string, ttl time.Duration) (bool, error) {
	now := time.Now()
	until := now.Add(ttl)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	if u, ok := s.until[id]; ok && u.After(now) {
		return false, nil
	}
	if !until.After(now) {
		return true, nil // already expired: nothing to remember
	}
	if len(s.until) >= s.max {
		return false, fmt.Errorf("%w: %d unexpired ids", ErrSeenStoreFull, len(s.until))
	}
	s.until[id] = until
	heap.Push(&s.expiry, expiryEntry{id: id, until: until})
	return true, nil
}

// Release implements SeenStore.
func (s *MemorySeenStore) Release(_ context.Context, id string) error {
	s.mu.Lock()
	delete(s.until, id)
	s.mu.Unlock()
	return nil
}

// Len returns the number of ids held (expired ones are dropped lazily).
func (s *MemorySeenStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(time.Now())
	return len(s.until)
}

// expire drops the ids whose time has come. A heap entry whose id was
// released, or claimed again with another time, is skipped.
func (s *MemorySeenStore) expire(now time.Time) {
	for len(s.expiry) > 0 && !s.expiry[0].until.After(now) {
		e := heap.Pop(&s.expiry).(expiryEntry)
		if u, ok := s.until[e.id]; ok && u.Equal(e.until) {
			delete(s.until, e.id)
		}
	}
	// Released ids leave their heap entries behind; rebuild when those
	// dominate, so the heap stays proportional to the map.
	if len(s.expiry) > 64 && len(s.expiry) > 4*len(s.until) {
		live := s.expiry[:0]
		for _, e := range s.expiry {
			if u, ok := s.until[e.id]; ok && u.Equal(e.until) {
				live = append(live, e)
			}
		}
		s.expiry = live
		heap.Init(&s.expiry)
	}
}

type expiryEntry struct {
	id    string
	until time.Time
}

type expiryHeap []expiryEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].until.Before(h[j].until) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
