package servicebus

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/bus/driver"
	"github.com/payrail/payrail/internal/urlcheck"
)

// FuzzParseURL: a servicebus:// URL is either refused with an error
// wrapping driver.ErrInvalidURL that reveals none of its secrets (a
// connection string or key given as a parameter, credentials in the
// userinfo), or parsed into what it says.
func FuzzParseURL(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string, sub bool) {
		var cfg *config
		u, ok := urlcheck.Parse(t, raw, urlcheck.Wraps(driver.ErrInvalidURL), func(u *url.URL) (err error) {
			cfg, err = parseURL(u, sub)
			return err
		})
		if !ok {
			return
		}
		q := u.Query()
		urlcheck.Once(t, raw, q)
		if u.User != nil || u.Port() != "" || u.Fragment != "" {
			t.Fatalf("parseURL(%q) accepted a user, port or fragment", raw)
		}
		if cfg.entity != u.Host+strings.TrimRight(u.Path, "/") || cfg.entity == "" || strings.Contains(cfg.entity, "//") {
			t.Fatalf("parseURL(%q): entity %q", raw, cfg.entity)
		}
		if cfg.subscription != q.Get("subscription") || (!sub && cfg.subscription != "") {
			t.Fatalf("parseURL(%q): subscription %q", raw, cfg.subscription)
		}
		if ns := q.Get("namespace"); (ns == "") != (cfg.namespace == "") || !strings.HasPrefix(cfg.namespace, ns) || (cfg.namespace != "" && !strings.Contains(cfg.namespace, ".")) {
			t.Fatalf("parseURL(%q): namespace %q", raw, cfg.namespace)
		}
		if b, err := strconv.ParseBool(q.Get("sessions")); (err == nil && cfg.sessions != b) || (!q.Has("sessions") && cfg.sessions) {
			t.Fatalf("parseURL(%q): sessions %v", raw, cfg.sessions)
		}
		if cfg.lockDuration <= 0 || cfg.maxDeliveryCount < 1 || cfg.maxSessions < 1 || cfg.sessionIdle <= 0 {
			t.Fatalf("parseURL(%q): settings out of range: %+v", raw, cfg)
		}
		if !sub && (cfg.lockDuration != defaultLock || cfg.maxDeliveryCount != defaultMaxDelivery || cfg.maxSessions != defaultMaxSessions || cfg.sessionIdle != defaultSessionIdle) {
			t.Fatalf("parseURL(%q): subscription settings on a topic: %+v", raw, cfg)
		}
		if d, err := time.ParseDuration(q.Get("lock_duration")); err == nil && cfg.lockDuration != d {
			t.Fatalf("parseURL(%q): lock duration %v", raw, cfg.lockDuration)
		}
	})
}
