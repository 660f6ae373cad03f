package webhook_test

import (
	"testing"
	"time"

	"github.com/payrail/payrail/webhook"
)

func TestDefaultScheduleSpansThreeDays(t *testing.T) {
	exact := webhook.Schedule{Jitter: -1} // the defaults, without jitter
	want := []time.Duration{
		5 * time.Second, 20 * time.Second, 80 * time.Second, 320 * time.Second, 1280 * time.Second,
		5120 * time.Second, 20480 * time.Second, 12 * time.Hour, 12 * time.Hour, 12 * time.Hour, 12 * time.Hour, 12 * time.Hour,
	}
	if d, ok := exact.NextAttempt(0); d != 0 || !ok {
		t.Fatalf("NextAttempt(0) = %v, %v; the first attempt is immediate", d, ok)
	}
	var elapsed time.Duration
	for i, w := range want {
		d, ok := exact.NextAttempt(i + 1)
		if !ok || d != w {
			t.Fatalf("NextAttempt(%d) = %v, %v; want %v", i+1, d, ok, w)
		}
		elapsed += d
	}
	if _, ok := exact.NextAttempt(len(want) + 1); ok {
		t.Fatalf("the schedule goes on after %d attempts", len(want)+1)
	}
	if elapsed <= 60*time.Hour || elapsed > webhook.DefaultPeriod {
		t.Fatalf("the last attempt comes %v after the first, want about 3 days", elapsed)
	}
	for _, n := range []int{100, 1 << 30} {
		if _, ok := exact.NextAttempt(n); ok {
			t.Fatalf("NextAttempt(%d) keeps trying", n)
		}
	}
}

func TestScheduleJitter(t *testing.T) {
	var s webhook.Schedule // defaults: ±20 %
	seen := map[time.Duration]bool{}
	for range 1000 {
		d, ok := s.NextAttempt(3) // nominal 80 s
		if !ok || d < 64*time.Second || d > 96*time.Second {
			t.Fatalf("NextAttempt(3) = %v, %v; want 80 s ± 20 %%", d, ok)
		}
		seen[d] = true
		// Giving up never depends on the draw.
		if _, ok := s.NextAttempt(13); ok {
			t.Fatal("NextAttempt(13) retried")
		}
		if _, ok := s.NextAttempt(12); !ok {
			t.Fatal("NextAttempt(12) gave up")
		}
	}
	if len(seen) < 100 {
		t.Fatalf("only %d distinct delays in 1000 draws: no jitter", len(seen))
	}
}

func TestScheduleCustomPeriod(t *testing.T) {
	s := webhook.Schedule{Initial: time.Minute, Factor: 2, MaxDelay: 10 * time.Minute, Period: time.Hour, Jitter: -1}
	var attempts []time.Duration
	for n := 1; ; n++ {
		d, ok := s.NextAttempt(n)
		if !ok {
			break
		}
		attempts = append(attempts, d)
	}
	// 1+2+4+8+10+10+10+10 = 55 min; one more 10 min would pass the hour.
	want := []time.Duration{1, 2, 4, 8, 10, 10, 10, 10}
	if len(attempts) != len(want) {
		t.Fatalf("delays %v, want %v minutes", attempts, want)
	}
	for i := range want {
		if attempts[i] != want[i]*time.Minute {
			t.Fatalf("delays %v, want %v minutes", attempts, want)
		}
	}
}

func TestScheduleAfterResult(t *testing.T) {
	s := webhook.Schedule{Jitter: -1}
	if d, ok := s.After(1, webhook.Result{Outcome: webhook.Retry, RetryAfter: time.Hour}); !ok || d != time.Hour {
		t.Fatalf("Retry-After 1 h: %v, %v", d, ok)
	}
	if d, ok := s.After(1, webhook.Result{Outcome: webhook.Retry, RetryAfter: time.Second}); !ok || d != 5*time.Second {
		t.Fatalf("Retry-After shorter than the schedule: %v, %v", d, ok)
	}
	for _, o := range []webhook.Outcome{webhook.Delivered, webhook.Disable, webhook.Undeliverable} {
		if _, ok := s.After(1, webhook.Result{Outcome: o}); ok {
			t.Fatalf("After retries a %v result", o)
		}
	}
	if _, ok := s.After(13, webhook.Result{Outcome: webhook.Retry}); ok {
		t.Fatal("After retries past the period")
	}
}
