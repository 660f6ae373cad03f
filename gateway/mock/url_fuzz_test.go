package mock

import (
	"context"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/urlcheck"
)

// FuzzOpen: a mock:// URL either configures the mock exactly as its
// parameters say (the last value of each wins) or is refused with an error
// that reveals none of its secrets.
func FuzzOpen(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		var m *Mock
		u, ok := urlcheck.Parse(t, raw, urlcheck.Prefixed("mock: "), func(u *url.URL) error {
			g, err := opener{}.Open(context.Background(), u)
			if err == nil {
				m = g.(*Mock)
			}
			return err
		})
		if !ok {
			return
		}
		q := u.Query()
		last := func(k string) string { v, _ := urlcheck.Last(q, k); return v }
		for k := range q {
			if k != "latency" && k != "fail_rate" && k != "seed" {
				t.Fatalf("Open(%q) accepted the unknown parameter %q", raw, k)
			}
		}
		if d, err := time.ParseDuration(last("latency")); (err == nil && m.latency != d) || (err != nil && m.latency != 0) || m.latency < 0 {
			t.Fatalf("Open(%q): latency %v", raw, m.latency)
		}
		if r, err := strconv.ParseFloat(last("fail_rate"), 64); (err == nil && m.failRate != r) || (err != nil && m.failRate != 0) || !(m.failRate >= 0 && m.failRate <= 1) {
			t.Fatalf("Open(%q): fail rate %v", raw, m.failRate)
		}
		s, err := strconv.ParseUint(last("seed"), 10, 64)
		if err != nil {
			s = 1
		}
		if got, want := m.rng.Uint64(), New(WithSeed(s)).rng.Uint64(); got != want {
			t.Fatalf("Open(%q): the random source is not seeded with %d", raw, s)
		}
	})
}
