package redis

import (
	"net"
	"net/url"
	"testing"

	"github.com/payrail/payrail/internal/urlcheck"
)

// FuzzParseURL: a redis:// or rediss:// URL is either refused with an
// error that reveals none of its secrets (the password above all), or
// parsed into the address, credentials and key prefix it gives. Parsing
// never connects.
func FuzzParseURL(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		var prefix, addr, user, pass, network string
		u, ok := urlcheck.Parse(t, raw, urlcheck.Prefixed("redis: "), func(u *url.URL) error {
			o, p, err := parseURL(u)
			if err == nil {
				prefix, addr, user, pass, network = p, o.Addr, o.Username, o.Password, o.Network
			}
			return err
		})
		if !ok {
			return
		}
		want, given := urlcheck.Last(u.Query(), "prefix")
		if !given {
			want = DefaultPrefix
		}
		if prefix != want {
			t.Fatalf("parseURL(%q): prefix %q, want %q", raw, prefix, want)
		}
		if u.Scheme != "redis" && u.Scheme != "rediss" {
			return // go-redis's unix:// URLs, not registered by this driver
		}
		host, _, err := net.SplitHostPort(addr)
		if network != "tcp" || err != nil || (host != u.Hostname() && !(u.Hostname() == "" && host == "localhost")) {
			t.Fatalf("parseURL(%q): address %s %q from host %q", raw, network, addr, u.Host)
		}
		if pw, ok := u.User.Password(); ok && (pass != pw || user != u.User.Username()) {
			t.Fatalf("parseURL(%q): credentials do not match the userinfo", raw)
		}
	})
}
