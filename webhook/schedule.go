package webhook

import (
	"math"
	"math/rand/v2"
	"time"
)

// Schedule is the retry schedule of a delivery: exponential back-off with
// jitter, over a bounded period. The zero value is the default schedule
// (see the fields' defaults): 13 attempts over about 68 hours, the first
// immediately and the next after about 5 s, 20 s, 80 s, 5 min, 21 min,
// 85 min, 5.7 h, then every 12 h.
type Schedule struct {
	// Initial is the nominal delay after the first failed attempt (default
	// 5 s).
	Initial time.Duration
	// Factor multiplies the nominal delay after each failure (default 4).
	Factor float64
	// MaxDelay caps the nominal delay (default 12 h).
	MaxDelay time.Duration
	// Period bounds the retries: no attempt is scheduled whose nominal
	// time since the first attempt would exceed it (default 72 h).
	Period time.Duration
	// Jitter spreads every delay uniformly over ±Jitter of its nominal
	// value, so that endpoints that failed together are not retried in
	// lock step (default 0.2; negative: none).
	Jitter float64
}

// DefaultPeriod is how long a delivery is retried by default.
const DefaultPeriod = 72 * time.Hour

func (s Schedule) withDefaults() Schedule {
	if s.Initial <= 0 {
		s.Initial = 5 * time.Second
	}
	if s.Factor < 1 {
		s.Factor = 4
	}
	if s.MaxDelay <= 0 {
		s.MaxDelay = 12 * time.Hour
	}
	if s.Period <= 0 {
		s.Period = DefaultPeriod
	}
	if s.Jitter == 0 {
		s.Jitter = 0.2
	}
	if s.Jitter < 0 {
		s.Jitter = 0
	}
	s.Jitter = min(s.Jitter, 1)
	return s
}

// nominal returns the unjittered delay after the n-th failed attempt.
func (s Schedule) nominal(n int) time.Duration {
	d := float64(s.Initial) * math.Pow(s.Factor, float64(n-1))
	if d >= float64(s.MaxDelay) || math.IsInf(d, 0) || math.IsNaN(d) {
		return s.MaxDelay
	}
	return time.Duration(d)
}

// NextAttempt says when to make the next attempt after attempt attempts
// have failed: the delay to wait, jittered, and whether to try at all
// (false once the schedule's period is spent: dead-letter the delivery).
// NextAttempt(0) is (0, true): the first attempt is immediate. Whether the
// schedule gives up depends only on attempt, never on the jitter.
func (s Schedule) NextAttempt(attempt int) (time.Duration, bool) {
	if attempt <= 0 {
		return 0, true
	}
	s = s.withDefaults()
	var elapsed time.Duration
	for n := 1; n <= attempt; n++ {
		elapsed += s.nominal(n)
		if elapsed > s.Period {
			return 0, false
		}
	}
	d := s.nominal(attempt)
	if s.Jitter > 0 {
		d = time.Duration(float64(d) * (1 + s.Jitter*(2*rand.Float64()-1)))
	}
	return d, true
}

// After is NextAttempt for a delivery whose last attempt had result r: it
// waits at least as long as the endpoint's Retry-After asked, and never
// retries a result whose outcome is not Retry.
func (s Schedule) After(attempt int, r Result) (time.Duration, bool) {
	if r.Outcome != Retry {
		return 0, false
	}
	d, ok := s.NextAttempt(attempt)
	if !ok {
		return 0, false
	}
	return max(d, r.RetryAfter), true
}
