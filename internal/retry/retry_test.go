package retry

import (
	"testing"
	"time"
)

// Without jitter the delays are the exact exponential sequence, capped.
func TestDelaySequence(t *testing.T) {
	p := Policy{Initial: 200 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2}
	want := []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		1600 * time.Millisecond, 3200 * time.Millisecond, 5 * time.Second, 5 * time.Second}
	for i, w := range want {
		if got := p.Delay(i + 1); got != w {
			t.Errorf("Delay(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := p.Delay(0); got != want[0] {
		t.Errorf("Delay(0) = %v, want %v", got, want[0])
	}
	if got := p.Delay(1 << 30); got != p.Max {
		t.Errorf("Delay(1<<30) = %v, want the cap %v", got, p.Max)
	}
	b := p.New()
	for i, w := range want {
		if got := b.NextBackOff(); got != w {
			t.Errorf("New: NextBackOff #%d = %v, want %v", i+1, got, w)
		}
	}
	b.Reset()
	if got := b.NextBackOff(); got != want[0] {
		t.Errorf("after Reset: %v, want %v", got, want[0])
	}
}

// With jitter every delay stays within ±Jitter of the un-randomised one,
// and the draws are spread over that range.
func TestDelayJitterBounds(t *testing.T) {
	p := Policy{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: 0.2}
	for attempt, base := range map[int]time.Duration{1: 100 * time.Millisecond, 3: 400 * time.Millisecond, 9: time.Second} {
		lo, hi := time.Duration(float64(base)*0.8), time.Duration(float64(base)*1.2)+1
		seen := map[time.Duration]bool{}
		for range 200 {
			d := p.Delay(attempt)
			if d < lo || d > hi {
				t.Fatalf("Delay(%d) = %v, outside [%v, %v]", attempt, d, lo, hi)
			}
			seen[d] = true
		}
		if len(seen) < 50 {
			t.Errorf("Delay(%d): %d distinct values in 200 draws: not randomised", attempt, len(seen))
		}
	}
}

// An Initial above Max is Max; a Multiplier of 1 or less never grows.
func TestDelayDegenerate(t *testing.T) {
	if got := (Policy{Initial: time.Minute, Max: time.Second, Multiplier: 2}).Delay(1); got != time.Second {
		t.Errorf("Initial above Max: %v, want %v", got, time.Second)
	}
	for _, m := range []float64{0, 0.5, 1} {
		if got := (Policy{Initial: time.Second, Max: time.Minute, Multiplier: m}).Delay(10); got != time.Second {
			t.Errorf("Multiplier %v: Delay(10) = %v, want %v", m, got, time.Second)
		}
	}
}

func TestDelayAllocatesNothing(t *testing.T) {
	p := Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2, Jitter: 0.2}
	if n := testing.AllocsPerRun(100, func() { _ = p.Delay(7) }); n != 0 {
		t.Fatalf("Delay allocates %v times", n)
	}
}
