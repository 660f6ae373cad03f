package registry_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/payrail/payrail/internal/registry"
	"github.com/payrail/payrail/internal/urlcheck"
)

// FuzzRedact: whatever the URL, Redact hides its password and the values
// of its secret-looking parameters, and keeps what identifies the
// resource (scheme, host, path, user name) so that messages stay useful.
func FuzzRedact(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		red := registry.Redact(u)
		marked, markers, ok := urlcheck.WithMarkers(raw)
		if !ok {
			return
		}
		mu, err := url.Parse(marked)
		if err != nil {
			t.Fatalf("marking %q broke it: %v", raw, err)
		}
		mred := registry.Redact(mu)
		for _, m := range markers {
			if strings.Contains(mred, m) {
				t.Fatalf("Redact(%q) = %q keeps the secret %s", marked, mred, m)
			}
		}
		for _, s := range urlcheck.Secrets(raw) {
			if len(s) >= urlcheck.MinSecretLen && strings.Contains(red, s) && !strings.Contains(mred, s) {
				t.Fatalf("Redact(%q) = %q keeps the secret %q", raw, red, s)
			}
		}
		if u.Opaque != "" || u.Scheme == "" {
			return // no authority to compare (and String may prefix a relative path with ./)
		}
		back, err := url.Parse(red)
		if err != nil {
			t.Fatalf("Redact(%q) = %q does not parse: %v", raw, red, err)
		}
		if back.Scheme != u.Scheme || back.Host != u.Host || back.Path != u.Path || back.User.Username() != u.User.Username() {
			t.Fatalf("Redact(%q) = %q changed the scheme, host, path or user: %#v", raw, red, back)
		}
	})
}

// FuzzLookup: Lookup parses any string without panicking, refuses a
// malformed or scheme-less URL with the invalid sentinel and an
// unregistered scheme with the unknown one, and never repeats a secret of
// the URL in its error.
func FuzzLookup(f *testing.F) {
	r := registry.New[string]("fuzz", map[string]string{"known": "example.com/known"}, errUnknownDriver, errInvalidURL)
	r.Register("reg", "driver")
	f.Fuzz(func(t *testing.T, raw string) {
		var d string
		var u *url.URL
		err := urlcheck.NoLeak(t, raw, func(s string) (err error) {
			d, u, err = r.Lookup(s)
			return err
		})
		switch {
		case err == nil:
			if d != "driver" || u == nil || u.Scheme != "reg" {
				t.Fatalf("Lookup(%q) = %q, %v", raw, d, u)
			}
		case errors.Is(err, errUnknownDriver):
			if p, perr := url.Parse(raw); perr != nil || p.Scheme == "" || p.Scheme == "reg" {
				t.Fatalf("Lookup(%q): unknown driver for a URL that is malformed or registered: %v", raw, err)
			}
		case errors.Is(err, errInvalidURL):
			if p, perr := url.Parse(raw); perr == nil && p.Scheme != "" {
				t.Fatalf("Lookup(%q): invalid URL for a well-formed one: %v", raw, err)
			}
		default:
			t.Fatalf("Lookup(%q): error without a sentinel: %v", raw, err)
		}
	})
}

var (
	errUnknownDriver = errors.New("unknown driver")
	errInvalidURL    = errors.New("invalid URL")
)
