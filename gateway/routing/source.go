package routing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Source is where the processes of a deployment share the routing policy:
// API servers and standalone workers, several replicas each. A Router
// given a Source (WithSource) writes every policy change to it first and
// follows the changes other processes write, so that a change made
// through any process's /admin/routes moves all traffic, async included,
// within the poll interval.
//
// A Source stores the policy as JSON with a version that increases by one
// with every change; implementations must be safe for concurrent use by
// several processes. payments/postgres provides one in the payment store's
// database; NewMemorySource one for the routers of a single process.
type Source interface {
	// Load returns the stored policy and its version, or version 0 and a
	// nil policy when none is stored yet.
	Load(ctx context.Context) (policy []byte, version uint64, err error)
	// CompareAndSwap stores policy if the stored version is still old (0:
	// none is stored) and returns the new version, or ErrVersionMismatch
	// (wrapped) if another process changed it first.
	CompareAndSwap(ctx context.Context, old uint64, policy []byte) (uint64, error)
}

// DefaultPollInterval is how often a Router with a Source looks for a
// policy changed by another process.
const DefaultPollInterval = 2 * time.Second

// WithSource shares the router's policy through src (see Source), polling
// it every interval (DefaultPollInterval if interval <= 0). Call Sync once
// before serving and run Watch for the router's lifetime.
func WithSource(src Source, interval time.Duration) Option {
	return func(o *options) {
		o.src = src
		o.poll = interval
	}
}

// SourceStatus is what a Router knows of its Source, for operators (the
// worker's and server's /admin/routes show the effective policy and
// version; this says whether they follow the shared one).
type SourceStatus struct {
	// Shared is false without a Source.
	Shared bool `json:"shared"`
	// Version is the source version of the policy in force (0 before the
	// first Sync).
	Version uint64 `json:"version"`
	// LastSync is when the source was last read successfully.
	LastSync time.Time `json:"last_sync,omitzero"`
	// Error is the last failure to read or apply the shared policy (a
	// policy naming a gateway this process does not have keeps the
	// previous one in force), empty when the last poll succeeded.
	Error string `json:"error,omitempty"`
}

// sourceState is the Router's view of its Source.
type sourceState struct {
	src  Source
	poll time.Duration

	mu     sync.Mutex
	status SourceStatus
}

func (s *sourceState) set(f func(*SourceStatus)) {
	s.mu.Lock()
	f(&s.status)
	s.mu.Unlock()
}

// SourceStatus reports the router's view of its shared policy source.
func (r *Router) SourceStatus() SourceStatus {
	if r.src == nil {
		return SourceStatus{}
	}
	r.src.mu.Lock()
	defer r.src.mu.Unlock()
	st := r.src.status
	st.Shared = true
	return st
}

// ErrNoSource is returned by Sync and Watch on a Router without a Source.
var ErrNoSource = errors.New("routing: the router has no policy source (WithSource)")

// Sync reads the shared policy and puts it in force. When the source holds
// none yet, the router's current policy (from New) is stored as its first
// version, so that the first process to start seeds it. A stored policy
// this router cannot apply (it names a gateway this process lacks) is an
// error and the current policy stays.
func (r *Router) Sync(ctx context.Context) error {
	if r.src == nil {
		return ErrNoSource
	}
	data, v, err := r.src.src.Load(ctx)
	if err != nil {
		r.src.set(func(s *SourceStatus) { s.Error = "load: " + err.Error() })
		return fmt.Errorf("routing: reading the shared policy: %w", err)
	}
	if v == 0 {
		cur := r.cur.Load()
		body, err := json.Marshal(cur.policy)
		if err != nil {
			return fmt.Errorf("routing: encoding the policy: %w", err)
		}
		nv, err := r.src.src.CompareAndSwap(ctx, 0, body)
		if errors.Is(err, ErrVersionMismatch) {
			return r.Sync(ctx) // another process seeded it first
		}
		if err != nil {
			r.src.set(func(s *SourceStatus) { s.Error = "seed: " + err.Error() })
			return fmt.Errorf("routing: seeding the shared policy: %w", err)
		}
		data, v = body, nv
	}
	return r.applyShared(data, v)
}

// applyShared puts the shared policy data at version v in force, unless
// it is already.
func (r *Router) applyShared(data []byte, v uint64) error {
	now := time.Now()
	r.setMu.Lock()
	defer r.setMu.Unlock()
	old := r.cur.Load()
	if old.sourceVersion == v {
		r.src.set(func(s *SourceStatus) { s.Version, s.LastSync, s.Error = v, now, "" })
		return nil
	}
	p, err := decodePolicy(data)
	var c *compiled
	if err == nil {
		c, err = r.compile(p)
	}
	if err != nil {
		r.src.set(func(s *SourceStatus) {
			s.LastSync = now
			s.Error = fmt.Sprintf("shared policy version %d not applied: %v", v, err)
		})
		r.log.Error("routing: the shared policy cannot be applied here; the current policy stays",
			"version", v, "in_force", old.sourceVersion, "error", err)
		return fmt.Errorf("routing: shared policy version %d: %w", v, err)
	}
	c.sourceVersion, c.version = v, v
	r.cur.Store(c)
	r.src.set(func(s *SourceStatus) { s.Version, s.LastSync, s.Error = v, now, "" })
	if old.sourceVersion != 0 {
		r.log.Warn("routing: shared policy changed", "from_version", old.sourceVersion, "version", v, "policy", c.summary())
	}
	return nil
}

// Watch polls the source every poll interval and puts policies changed by
// other processes in force, until ctx is done; it returns nil then.
// Failures are logged and recorded in SourceStatus, and retried at the
// next poll.
func (r *Router) Watch(ctx context.Context) error {
	if r.src == nil {
		return ErrNoSource
	}
	t := time.NewTicker(r.src.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := r.Sync(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("routing: polling the shared policy failed", "error", err)
		}
	}
}

// setShared validates p, stores it in the source if the shared version is
// still ifVersion (0: whatever it is now), and puts it in force.
func (r *Router) setShared(ctx context.Context, p Policy, ifVersion uint64) (uint64, error) {
	// Validate against this router's gateways before anything is stored.
	if _, err := p.normalize(func(name string) bool { _, ok := r.byName[name]; return ok }); err != nil {
		return r.Version(), err
	}
	body, err := json.Marshal(p)
	if err != nil {
		return r.Version(), fmt.Errorf("routing: encoding the policy: %w", err)
	}
	old := ifVersion
	if old == 0 {
		_, cur, err := r.src.src.Load(ctx)
		if err != nil {
			return r.Version(), fmt.Errorf("routing: reading the shared policy: %w", err)
		}
		old = cur
	}
	v, err := r.src.src.CompareAndSwap(ctx, old, body)
	if err != nil {
		if errors.Is(err, ErrVersionMismatch) {
			_ = r.Sync(ctx) // show the caller the version now in force
			return r.Version(), ErrVersionMismatch
		}
		return r.Version(), fmt.Errorf("routing: storing the shared policy: %w", err)
	}
	if err := r.applyShared(body, v); err != nil {
		return r.Version(), err
	}
	return v, nil
}

// MemorySource is a Source in memory, shared by the routers of one
// process (tests, several routers in one binary). The zero value is
// empty and ready.
type MemorySource struct {
	mu      sync.Mutex
	policy  []byte
	version uint64
}

// NewMemorySource returns an empty MemorySource.
func NewMemorySource() *MemorySource { return &MemorySource{} }

// Load implements Source.
func (m *MemorySource) Load(context.Context) ([]byte, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]byte(nil), m.policy...), m.version, nil
}

// CompareAndSwap implements Source.
func (m *MemorySource) CompareAndSwap(_ context.Context, old uint64, policy []byte) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.version != old {
		return 0, fmt.Errorf("routing: memory source at version %d, not %d: %w", m.version, old, ErrVersionMismatch)
	}
	m.policy = append([]byte(nil), policy...)
	m.version++
	return m.version, nil
}
