// Package retry is the SDK's one back-off: exponential, capped and
// randomised, on github.com/cenkalti/backoff/v5's ExponentialBackOff (the
// cap bounds the delay before randomisation; the randomised delay lies
// within ±Jitter of it). It serves both kinds of retry loop the SDK has:
// those that keep state between attempts (New) and those that only know the
// attempt number, such as a redelivery's delivery count or a payment's
// reconciliation attempts (Delay).
package retry

import (
	"math"
	"time"

	"github.com/cenkalti/backoff/v5"
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
	d := min(p.Initial, p.Max)
	if p.Multiplier > 1 && attempt > 1 {
		grown := float64(d) * math.Pow(p.Multiplier, float64(attempt-1))
		d = p.Max
		if grown < float64(p.Max) {
			d = time.Duration(grown)
		}
	}
	// The library randomises the capped delay.
	b := backoff.ExponentialBackOff{InitialInterval: d, RandomizationFactor: p.Jitter, Multiplier: 1, MaxInterval: d}
	b.Reset()
	return b.NextBackOff()
}

// New returns the policy's back-off for a loop that keeps it between
// attempts: NextBackOff after each failure, Reset after a success.
func (p Policy) New() *Backoff {
	b := &Backoff{b: backoff.ExponentialBackOff{
		InitialInterval:     min(p.Initial, p.Max),
		RandomizationFactor: p.Jitter,
		Multiplier:          max(p.Multiplier, 1),
		MaxInterval:         p.Max,
	}}
	b.Reset()
	return b
}

// Backoff is the state of a Policy's back-off between attempts. It is not
// safe for concurrent use.
type Backoff struct {
	b backoff.ExponentialBackOff
}

// Reset starts the sequence again from the policy's Initial delay.
func (b *Backoff) Reset() { b.b.Reset() }

// NextBackOff returns the delay before the next attempt and grows the
// following one.
func (b *Backoff) NextBackOff() time.Duration { return b.b.NextBackOff() }
