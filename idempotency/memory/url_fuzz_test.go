package memory

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/payrail/payrail/internal/urlcheck"
)

// FuzzOpen: a memory:// URL either opens a store holding at least the
// max_entries it asks for (default DefaultMaxEntries) or is refused with an
// error that reveals none of its secrets.
func FuzzOpen(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		var s *Store
		err = urlcheck.NoLeak(t, raw, urlcheck.Parsed(t, func(u *url.URL) error {
			d, err := opener{}.Open(context.Background(), u)
			if err == nil {
				s = d.(*Store)
			}
			return err
		}))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "memory: ") {
				t.Fatalf("Open(%q): %v", raw, err)
			}
			return
		}
		q := u.Query()
		if u.Host != "" || (u.Path != "" && u.Path != "/") || len(q) > 1 || (len(q) == 1 && !q.Has("max_entries")) {
			t.Fatalf("Open(%q) accepted a host, path or unknown parameter", raw)
		}
		want := DefaultMaxEntries
		if vs := q["max_entries"]; len(vs) > 0 {
			if want, err = strconv.Atoi(vs[len(vs)-1]); err != nil || want <= 0 {
				t.Fatalf("Open(%q) accepted max_entries %q", raw, vs[len(vs)-1])
			}
		}
		if s.max != want || s.limit < 1 || s.limit < want/shardCount || s.limit-1 > (want-1)/shardCount {
			t.Fatalf("Open(%q): max %d, %d records per shard: the store does not hold the %d records asked for", raw, s.max, s.limit, want)
		}
	})
}
