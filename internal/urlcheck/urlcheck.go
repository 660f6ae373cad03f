// Package urlcheck holds the checks shared by the fuzz targets of payrail's
// URL openers: finding the secrets a URL carries and verifying that an
// opener's error never reveals them. It is test support: only _test.go
// files import it, and it depends on nothing of payrail but the registry,
// so that drivers' internal tests can use it without import cycles.
package urlcheck

import (
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/payrail/payrail/internal/registry"
)

// MinSecretLen is the shortest secret whose appearance in an error message
// counts as a leak by itself: shorter ones (a, ab, xyz) match ordinary text
// too often. Secrets of any length are still caught by the marker check.
const MinSecretLen = 4

// SecretParam reports whether a query parameter of that name carries a
// secret: whatever registry.Redact hides, plus connection strings (which
// embed keys, as Service Bus and database connection strings do).
func SecretParam(name string) bool {
	probe := "x://?" + url.QueryEscape(name) + "=v"
	u, err := url.Parse(probe)
	if err == nil && registry.Redact(u) != probe {
		return true
	}
	n := strings.NewReplacer("_", "", "-", "", ".", "").Replace(strings.ToLower(name))
	return strings.Contains(n, "connectionstring") || strings.Contains(n, "connstr")
}

// span is a secret's position in a raw URL.
type span struct{ start, end int }

// secretSpans locates the secrets of raw without requiring it to parse:
// the password of the userinfo and the values of secret-looking query
// parameters, as a lenient reader (and a human) would find them.
func secretSpans(raw string) []span {
	var out []span
	off := 0 // where the authority (or, without one, the URL) starts
	if i := strings.Index(raw, "://"); i >= 0 && !strings.ContainsAny(raw[:i], "/?#") {
		off = i + 3
		auth := raw[off:]
		if j := strings.IndexAny(auth, "/?#"); j >= 0 {
			auth = auth[:j]
		}
		if at := strings.LastIndex(auth, "@"); at >= 0 {
			if c := strings.Index(auth[:at], ":"); c >= 0 && c+1 < at {
				out = append(out, span{off + c + 1, off + at})
			}
		}
	}
	head := raw[off:] // up to the fragment, which holds no parameters
	if h := strings.Index(head, "#"); h >= 0 {
		head = head[:h]
	}
	q := strings.Index(head, "?")
	if q < 0 {
		return out
	}
	pos := off + q + 1 // start of the current parameter
	query := head[q+1:]
	for _, part := range strings.Split(query, "&") {
		start := pos
		pos += len(part) + 1
		rawName, value, hasValue := strings.Cut(part, "=")
		if !hasValue || value == "" {
			continue
		}
		name := rawName
		if un, err := url.QueryUnescape(rawName); err == nil {
			name = un
		}
		if SecretParam(name) {
			out = append(out, span{start + len(rawName) + 1, start + len(part)})
		}
	}
	return out
}

// Secrets returns the secrets raw carries, each as written and, when
// different, percent-decoded.
func Secrets(raw string) []string {
	var out []string
	for _, s := range secretSpans(raw) {
		v := raw[s.start:s.end]
		out = append(out, v)
		if d, err := url.PathUnescape(v); err == nil && d != v {
			out = append(out, d)
		}
		if d, err := url.QueryUnescape(v); err == nil && d != v && d != out[len(out)-1] {
			out = append(out, d)
		}
	}
	return out
}

// markerPrefix starts the values that replace secrets in WithMarkers.
const markerPrefix = "Qx7Mark"

// WithMarkers returns raw with every secret replaced by a distinct marker
// (letters and digits only, so the URL parses as before), and the markers.
// It returns ok false if raw already contains a marker-like string.
func WithMarkers(raw string) (marked string, markers []string, ok bool) {
	if strings.Contains(raw, markerPrefix) {
		return raw, nil, false
	}
	spans := secretSpans(raw)
	var b strings.Builder
	last := 0
	for i, s := range spans {
		if s.start < last { // overlapping spans: keep the first
			continue
		}
		m := markerPrefix + strconv.Itoa(i) + "Z"
		b.WriteString(raw[last:s.start])
		b.WriteString(m)
		markers = append(markers, m)
		last = s.end
	}
	b.WriteString(raw[last:])
	return b.String(), markers, true
}

// NoLeak calls open with raw and, if it fails, checks that the error
// reveals no secret of raw. A secret of at least MinSecretLen bytes found
// in the message is a leak unless the message open gives for raw with its
// secrets replaced by markers contains it too (then it is the message's
// own text, or another part of the URL); a marker found in that second
// message is always a leak. It returns open's error.
func NoLeak(t testing.TB, raw string, open func(raw string) error) error {
	t.Helper()
	err := open(raw)
	if err == nil {
		return nil
	}
	if err.Error() == "" {
		t.Fatalf("%q: an error with an empty message", raw)
	}
	secrets := Secrets(raw)
	if len(secrets) == 0 {
		return err
	}
	marked, markers, ok := WithMarkers(raw)
	if !ok {
		return err
	}
	err2 := open(marked)
	msg2 := ""
	if err2 != nil {
		msg2 = err2.Error()
	}
	for _, m := range markers {
		if strings.Contains(msg2, m) {
			t.Fatalf("the error for %q reveals a secret (marker %s): %s", marked, m, msg2)
		}
	}
	for _, s := range secrets {
		if len(s) >= MinSecretLen && strings.Contains(err.Error(), s) && !strings.Contains(msg2, s) {
			t.Fatalf("the error for %q reveals the secret %q: %s", raw, s, err)
		}
	}
	return err
}

// Parsed wraps an opener of parsed URLs for NoLeak: unparseable markers
// cannot arise (markers keep the URL parseable), so a parse failure of the
// marked URL is reported as the test's own fault.
func Parsed(t testing.TB, open func(u *url.URL) error) func(string) error {
	return func(raw string) error {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("urlcheck: %q does not parse: %v", raw, err)
		}
		return open(u)
	}
}

// Parse is the common start of a driver's URL fuzz target: raw, if it
// parses, goes to parse through NoLeak, and a refusal must satisfy
// refused (an error class). It returns the parsed URL and whether parse
// accepted it; u is nil when raw does not parse.
func Parse(t *testing.T, raw string, refused func(error) bool, parse func(*url.URL) error) (u *url.URL, accepted bool) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		return nil, false
	}
	if err := NoLeak(t, raw, Parsed(t, parse)); err != nil {
		if !refused(err) {
			t.Fatalf("%q refused with an unexpected error: %v", raw, err)
		}
		return u, false
	}
	return u, true
}

// Wraps is a refused predicate for Parse: the error wraps sentinel.
func Wraps(sentinel error) func(error) bool {
	return func(err error) bool { return errors.Is(err, sentinel) }
}

// Prefixed is a refused predicate for Parse: the message starts with prefix.
func Prefixed(prefix string) func(error) bool {
	return func(err error) bool { return strings.HasPrefix(err.Error(), prefix) }
}

// Once fails t if the accepted URL raw gave a parameter more than once.
func Once(t *testing.T, raw string, q url.Values) {
	t.Helper()
	for name, vs := range q {
		if len(vs) != 1 {
			t.Fatalf("%q accepted with %s given %d times", raw, name, len(vs))
		}
	}
}

// Last returns the last value of the parameter k, as the lenient openers
// read it, and whether it was given.
func Last(q url.Values, k string) (string, bool) {
	vs := q[k]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}
