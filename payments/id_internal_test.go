package payments

import (
	"regexp"
	"testing"
)

func TestNewIDFormat(t *testing.T) {
	re := regexp.MustCompile(`^pay_[A-Z2-7]{26}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := newID("pay")
		if !re.MatchString(id) || seen[id] {
			t.Fatalf("newID = %q (seen before: %v)", id, seen[id])
		}
		seen[id] = true
	}
	if raceEnabled {
		return // allocation counts differ under the race detector
	}
	if n := testing.AllocsPerRun(100, func() { _ = newID("pay") }); n != 1 {
		t.Errorf("newID allocates %v times, want 1", n)
	}
}
