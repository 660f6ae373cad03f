package chaos

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Fault kinds counted in a Report.
const (
	FaultGatewayPre      = "gateway_5xx_not_processed"    // 5xx before the provider did anything
	FaultGatewayPost     = "gateway_timeout_after_charge" // the provider charged, the caller got a timeout
	FaultGatewayPost5xx  = "gateway_5xx_after_charge"     // the provider charged, the caller got a 5xx
	FaultGatewaySlow     = "gateway_slow"                 // a call delayed by the slow latency
	FaultLookup          = "gateway_lookup_failure"       // Lookup failed (not a not-found)
	FaultDuplicatePub    = "bus_duplicate_publish"        // a command published twice
	FaultKill            = "kill_9"                       // an instance killed
	FaultSIGTERM         = "sigterm"                      // an instance shut down gracefully under load
	FaultPostgresDrop    = "postgres_connections_dropped" // pg_terminate_backend of every other session
	FaultRedisDrop       = "redis_connections_dropped"    // CLIENT KILL TYPE normal
	FaultLostAnswer      = "gateway_answer_lost_on_kill"  // a gateway call that returned into a killed instance
	FaultClientDuplicate = "client_duplicate_submission"  // a client re-sent an answered order
)

// Faults sets the probabilities (each in [0,1]) of the injected faults.
type Faults struct {
	// GatewayPre: a gateway call fails with a transient, not-processed 5xx
	// before reaching the provider.
	GatewayPre float64
	// GatewayPost: an authorization reaches the provider (which may charge)
	// and the caller gets an ambiguous error instead of the answer: half
	// timeouts (KindTransient, code timeout), half 5xx (KindUnknown).
	GatewayPost float64
	// GatewaySlow: a gateway call is delayed by SlowLatency first.
	GatewaySlow float64
	// Lookup: a Lookup fails with a transient error (not a not-found).
	Lookup float64
	// DuplicatePublish: a published command is published a second time.
	DuplicatePublish float64
	// ClientDuplicate: a client submits an order again after its definite
	// answer (same key, same body).
	ClientDuplicate float64
}

// DefaultFaults are the probabilities the soak tests use.
func DefaultFaults() Faults {
	return Faults{GatewayPre: 0.05, GatewayPost: 0.04, GatewaySlow: 0.03, Lookup: 0.2,
		DuplicatePublish: 0.05, ClientDuplicate: 0.05}
}

// Dice is a seeded random source shared by the fault injectors, safe for
// concurrent use, that can be switched off (the end phase stops faults) and
// counts the faults injected by kind.
type Dice struct {
	mu     sync.Mutex
	rng    *rand.Rand
	off    atomic.Bool
	counts sync.Map // kind -> *atomic.Int64
}

// NewDice returns a Dice seeded with seed.
func NewDice(seed uint64) *Dice {
	return &Dice{rng: rand.New(rand.NewPCG(seed, seed^0x5bd1e995))}
}

// Roll reports whether a fault of probability p happens now, counting it
// under kind (unless empty) when it does. It is always false once Stop was called.
func (d *Dice) Roll(p float64, kind string) bool {
	if p <= 0 || d.off.Load() {
		return false
	}
	d.mu.Lock()
	hit := d.rng.Float64() < p
	d.mu.Unlock()
	if hit && kind != "" {
		d.Count(kind)
	}
	return hit
}

// IntN returns a seeded random integer in [0,n).
func (d *Dice) IntN(n int) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rng.IntN(n)
}

// Stop switches every fault off; Start switches them on again.
func (d *Dice) Stop() { d.off.Store(true) }

// Start switches faults on (the default).
func (d *Dice) Start() { d.off.Store(false) }

// Count counts one fault of kind (for faults the harness injects itself).
func (d *Dice) Count(kind string) {
	v, _ := d.counts.LoadOrStore(kind, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// Counts returns the faults injected so far, by kind.
func (d *Dice) Counts() map[string]int64 {
	out := map[string]int64{}
	d.counts.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

// formatCounts renders counts sorted by kind.
func formatCounts(m map[string]int64) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, " %s=%d", k, m[k])
	}
	return strings.TrimSpace(b.String())
}
