package inmemory

import (
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/payrail/payrail/bus/driver"
	"github.com/payrail/payrail/internal/urlcheck"
)

// FuzzParseURL: a topic or subscription URL is either refused with an
// error wrapping driver.ErrInvalidURL that reveals none of its secrets, or
// parsed into exactly what it says: the host as the topic and every
// parameter it gave, each given once.
func FuzzParseURL(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string, sub bool) {
		var cfg config
		u, ok := urlcheck.Parse(t, raw, urlcheck.Wraps(driver.ErrInvalidURL), func(u *url.URL) (err error) {
			cfg, err = parseURL(u, sub)
			return err
		})
		if !ok {
			return
		}
		q := u.Query()
		urlcheck.Once(t, raw, q)
		if cfg.topic != u.Host || cfg.topic == "" || u.User != nil || u.Fragment != "" {
			t.Fatalf("parseURL(%q): topic %q from host %q (user %v, fragment %q)", raw, cfg.topic, u.Host, u.User, u.Fragment)
		}
		if want, err := strconv.ParseBool(q.Get("create")); (err == nil && cfg.create != want) || (!q.Has("create") && !cfg.create) {
			t.Fatalf("parseURL(%q): create = %v", raw, cfg.create)
		}
		if cfg.subscription != q.Get("subscription") {
			t.Fatalf("parseURL(%q): subscription %q", raw, cfg.subscription)
		}
		s := cfg.settings
		if (s.ackDeadline != nil) != q.Has("ack_deadline") || (s.maxAttempts != nil) != q.Has("max_attempts") || (s.ordered != nil) != q.Has("ordered") {
			t.Fatalf("parseURL(%q): settings %+v do not match the parameters given", raw, s)
		}
		if !sub && (q.Has("subscription") || s != (settings{})) {
			t.Fatalf("parseURL(%q) accepted subscription parameters on a topic", raw)
		}
		if s.ackDeadline != nil {
			if d, err := time.ParseDuration(q.Get("ack_deadline")); err != nil || d != *s.ackDeadline || d <= 0 {
				t.Fatalf("parseURL(%q): ack_deadline %v", raw, *s.ackDeadline)
			}
		}
		if s.maxAttempts != nil {
			if n, err := strconv.Atoi(q.Get("max_attempts")); err != nil || n != *s.maxAttempts || n < 0 {
				t.Fatalf("parseURL(%q): max_attempts %v", raw, *s.maxAttempts)
			}
		}
		if s.ordered != nil {
			if b, err := strconv.ParseBool(q.Get("ordered")); err != nil || b != *s.ordered {
				t.Fatalf("parseURL(%q): ordered %v", raw, *s.ordered)
			}
		}
	})
}
