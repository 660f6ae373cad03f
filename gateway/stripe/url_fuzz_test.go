package stripe

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/internal/urlcheck"
)

// fuzzKey is the API key the fuzz target's environment holds.
const fuzzKey = "sk_test_FuzzKeyNeverInErrors42"

// FuzzOpen: a stripe:// URL either configures the driver as its parameters
// say, taking the key only from the environment (never from the URL:
// parameters or userinfo), or is refused with an error revealing neither
// the URL's secrets nor the API key. Open makes no request.
func FuzzOpen(f *testing.F) {
	f.Setenv(DefaultAPIKeyEnv, fuzzKey)
	f.Setenv("PAYRAIL_FUZZ_STRIPE_KEY", fuzzKey)
	f.Fuzz(func(t *testing.T, raw string) {
		if u, err := url.Parse(raw); err == nil && u.Query().Has("api_key_file") {
			return // a file name: the fuzzer must not read the machine's files
		}
		var g *Gateway
		refused := func(err error) bool {
			return strings.HasPrefix(err.Error(), "stripe: ") && !strings.Contains(err.Error(), fuzzKey)
		}
		u, ok := urlcheck.Parse(t, raw, refused, func(u *url.URL) error {
			d, err := opener{}.Open(context.Background(), u)
			if err == nil {
				g = d.(*Gateway)
			}
			return err
		})
		if !ok {
			return
		}
		q := u.Query()
		last := func(k string) string { v, _ := urlcheck.Last(q, k); return v }
		if u.Host != "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.Opaque != "" {
			t.Fatalf("Open(%q) accepted a host, path, userinfo or opaque part, which it ignores", raw)
		}
		for _, k := range []string{"api_key", "key", "secret_key"} {
			if q.Has(k) {
				t.Fatalf("Open(%q) accepted a key in the URL", raw)
			}
		}
		if env := last("api_key_env"); env != "" && env != DefaultAPIKeyEnv && env != "PAYRAIL_FUZZ_STRIPE_KEY" {
			t.Fatalf("Open(%q) found a key in %s, which is unset", raw, env)
		}
		if d, err := time.ParseDuration(last("lookup_window")); (err == nil && g.window != d) || (err != nil && g.window != time.Hour) {
			t.Fatalf("Open(%q): lookup window %v", raw, g.window)
		}
		if n, err := strconv.Atoi(last("lookup_max_scan")); (err == nil && g.maxScan != n) || (err != nil && g.maxScan != 1000) {
			t.Fatalf("Open(%q): lookup max scan %d", raw, g.maxScan)
		}
	})
}
