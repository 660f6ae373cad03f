// Package retry is the SDK's one back-off: exponential, capped and
// randomised, on github.com/cenkalti/backoff/v5's ExponentialBackOff (the
// cap bounds the delay before randomisation; the randomised delay lies
// within ±Jitter of it). It serves both kinds of retry loop the SDK has:
// those that keep state between attempts (New) and those that only know the
// attempt number, such as a redelivery's delivery count or a payment's
// reconciliation attempts (Delay).
package retry

import (
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

// maxSteps bounds how many times Delay grows the delay: enough to reach any
// cap from any start with any multiplier the SDK uses.
const maxSteps = 4096

// Delay returns the randomised delay after failed attempt number attempt
// (1-based; less than 1 counts as 1). It allocates nothing.
func (p Policy) Delay(attempt int) time.Duration {
	var b Backoff
	p.init(&b)
	if p.Multiplier > 1 {
		// Grow without randomising: the library randomises each value it
		// returns, from the current (capped) delay, which only grows.
		grow := p.exponential(0)
		grow.Reset()
		for i := 1; i < min(attempt, maxSteps); i++ {
			_ = grow.NextBackOff()
		}
		b.b.InitialInterval = grow.NextBackOff()
		b.b.Reset()
	}
	return b.NextBackOff()
}

// New returns the policy's back-off for a loop that keeps it between
// attempts: NextBackOff after each failure, Reset after a success.
func (p Policy) New() *Backoff {
	b := &Backoff{}
	p.init(b)
	return b
}

// exponential returns the library's back-off for p with the given
// randomisation factor.
func (p Policy) exponential(jitter float64) backoff.ExponentialBackOff {
	return backoff.ExponentialBackOff{
		InitialInterval:     min(p.Initial, p.Max),
		RandomizationFactor: jitter,
		Multiplier:          max(p.Multiplier, 1),
		MaxInterval:         p.Max,
	}
}

func (p Policy) init(b *Backoff) {
	b.b = p.exponential(p.Jitter)
	b.b.Reset()
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
