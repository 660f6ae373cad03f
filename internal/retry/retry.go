// Package retry is the SDK's one back-off: exponential, capped and
// randomised. It serves both kinds of retry loop the SDK has: those that
// keep state between attempts (New) and those that only know the attempt
// number, such as a redelivery's delivery count or a payment's
// reconciliation attempts (Delay).
//
// Its semantics are those of github.com/cenkalti/backoff/v5's
// ExponentialBackOff (the cap bounds the delay before randomisation; the
// randomised delay lies within ±Jitter of it), and Backoff has that
// library's NextBackOff/Reset methods. The library itself is not imported:
// it would be the 26th module of an embedder's graph for the SDK core, whose
// budget is 25 (.ci/core-graph.sh), for some twenty lines of arithmetic.
package retry

import (
	"math/rand/v2"
	"time"
)

// Policy is an exponential back-off: the delay after attempt n (1-based) is
// Initial·Multiplier^(n-1), capped at Max, then randomised within ±Jitter
// of itself.
type Policy struct {
	// Initial is the delay after the first attempt; a value above Max is
	// Max.
	Initial time.Duration
	// Max caps the delay before randomisation.
	Max time.Duration
	// Multiplier grows the delay after each attempt; 1 or less keeps it at
	// Initial.
	Multiplier float64
	// Jitter randomises each delay within ±Jitter of itself (0: none).
	Jitter float64
}

// Delay returns the randomised delay after failed attempt number attempt
// (1-based; less than 1 counts as 1). It allocates nothing.
func (p Policy) Delay(attempt int) time.Duration {
	b := Backoff{p: p}
	b.Reset()
	if p.Multiplier > 1 {
		for i := 1; i < attempt && b.cur < p.Max; i++ {
			b.grow()
		}
	}
	return b.NextBackOff()
}

// New returns the policy's back-off for a loop that keeps it between
// attempts: NextBackOff after each failure, Reset after a success.
func (p Policy) New() *Backoff {
	b := &Backoff{p: p}
	b.Reset()
	return b
}

// Backoff is the state of a Policy's back-off between attempts. It is not
// safe for concurrent use.
type Backoff struct {
	p   Policy
	cur time.Duration // the next delay before randomisation
}

// Reset starts the sequence again from the policy's Initial delay.
func (b *Backoff) Reset() { b.cur = min(b.p.Initial, b.p.Max) }

// NextBackOff returns the delay before the next attempt and grows the
// following one.
func (b *Backoff) NextBackOff() time.Duration {
	d := b.cur
	if b.p.Multiplier > 1 {
		b.grow()
	}
	if j := b.p.Jitter; j > 0 {
		return time.Duration(float64(d) * (1 - j + 2*j*rand.Float64()))
	}
	return d
}

// grow multiplies the current delay, up to Max.
func (b *Backoff) grow() {
	if float64(b.cur) >= float64(b.p.Max)/b.p.Multiplier {
		b.cur = b.p.Max
	} else {
		b.cur = time.Duration(float64(b.cur) * b.p.Multiplier)
	}
}
