package redis

import (
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/payrail/payrail/internal/urlcheck"
)

// FuzzParseURL: a redis:// or rediss:// URL is either refused with an
// error that reveals none of its secrets (the password above all), or
// parsed into the address, credentials and key prefix it gives. Parsing
// never connects.
func FuzzParseURL(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		var prefix string
		var addr, user, pass, network string
		err = urlcheck.NoLeak(t, raw, urlcheck.Parsed(t, func(u *url.URL) error {
			o, p, err := parseURL(u)
			if err == nil {
				prefix, addr, user, pass, network = p, o.Addr, o.Username, o.Password, o.Network
			}
			return err
		}))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "redis: ") {
				t.Fatalf("parseURL(%q): %v", raw, err)
			}
			return
		}
		q := u.Query()
		want := DefaultPrefix
		if vs := q["prefix"]; len(vs) > 0 {
			want = vs[len(vs)-1]
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
