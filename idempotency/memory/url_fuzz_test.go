package memory

import (
	"context"
	"net/url"
	"strconv"
	"testing"

	"github.com/payrail/payrail/internal/urlcheck"
)

// FuzzOpen: a memory:// URL either opens a store holding at least the
// max_entries it asks for (default DefaultMaxEntries) or is refused with an
// error that reveals none of its secrets.
func FuzzOpen(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		var s *Store
		u, ok := urlcheck.Parse(t, raw, urlcheck.Prefixed("memory: "), func(u *url.URL) error {
			d, err := opener{}.Open(context.Background(), u)
			if err == nil {
				s = d.(*Store)
			}
			return err
		})
		if !ok {
			return
		}
		q := u.Query()
		if u.Host != "" || (u.Path != "" && u.Path != "/") || len(q) > 1 || (len(q) == 1 && !q.Has("max_entries")) {
			t.Fatalf("Open(%q) accepted a host, path or unknown parameter", raw)
		}
		want := DefaultMaxEntries
		if v, given := urlcheck.Last(q, "max_entries"); given {
			var err error
			if want, err = strconv.Atoi(v); err != nil || want <= 0 {
				t.Fatalf("Open(%q) accepted max_entries %q", raw, v)
			}
		}
		// The shards in use (64-shift bits of them) hold at least the
		// records asked for, and no shard more than its rounded-up share.
		n := 1 << (64 - s.shift)
		if s.max != want || s.limit < 1 || s.limit < want/n+min(1, want%n) || s.limit-1 > (want-1)/n {
			t.Fatalf("Open(%q): max %d, %d records per shard: the store does not hold the %d records asked for", raw, s.max, s.limit, want)
		}
	})
}
