// Package registry implements the database/sql-style driver registries shared
// by packages bus, gateway and idempotency.
package registry

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// Registry maps driver names to drivers of type D. The zero value is not
// usable; create one with New.
type Registry[D any] struct {
	kind    string            // "bus", "gateway", "idempotency"
	hints   map[string]string // driver name -> import path, for error messages
	unknown error             // sentinel wrapped by unknown-scheme errors
	invalid error             // sentinel wrapped by malformed-URL errors (may be nil)

	mu      sync.RWMutex
	drivers map[string]D
}

// New returns an empty registry. kind prefixes messages; hints maps the names
// of drivers shipped with payrail to their import paths; unknown is the
// sentinel returned (wrapped) for an unregistered scheme; invalid, if not
// nil, is wrapped by errors for malformed URLs.
func New[D any](kind string, hints map[string]string, unknown, invalid error) *Registry[D] {
	return &Registry[D]{kind: kind, hints: hints, unknown: unknown, invalid: invalid, drivers: map[string]D{}}
}

// Register makes d available under name. It panics if d is nil or name is
// empty or already registered, as database/sql.Register does.
func (r *Registry[D]) Register(name string, d D) {
	if any(d) == nil {
		panic(fmt.Sprintf("%s: Register driver %q is nil", r.kind, name))
	}
	if name == "" || strings.ContainsAny(name, ":/?#") {
		panic(fmt.Sprintf("%s: Register called with invalid driver name %q", r.kind, name))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.drivers[name]; dup {
		panic(fmt.Sprintf("%s: Register called twice for driver %q", r.kind, name))
	}
	r.drivers[name] = d
}

// Drivers returns the sorted names of the registered drivers.
func (r *Registry[D]) Drivers() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.drivers))
	for n := range r.drivers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Lookup parses rawURL and returns the driver registered for its scheme.
func (r *Registry[D]) Lookup(rawURL string) (D, *url.URL, error) {
	var zero D
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error repeats the whole URL, credentials included: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return zero, nil, r.invalidf("%s: malformed URL: %w", r.kind, err)
	}
	if u.Scheme == "" {
		return zero, nil, r.invalidf("%s: URL %q has no scheme; want <driver>://... with driver one of [%s]",
			r.kind, redact(u), strings.Join(r.Drivers(), ", "))
	}
	r.mu.RLock()
	d, ok := r.drivers[u.Scheme]
	r.mu.RUnlock()
	if !ok {
		// Name an import path only for drivers payrail ships: a guessed
		// path would send the user looking for a package that does not
		// exist.
		shipped := make([]string, 0, len(r.hints))
		for name := range r.hints {
			shipped = append(shipped, name)
		}
		slices.Sort(shipped)
		hint := fmt.Sprintf("payrail ships no %s driver for %q (its drivers: [%s]); register your own with Register",
			r.kind, u.Scheme, strings.Join(shipped, ", "))
		if p, known := r.hints[u.Scheme]; known {
			hint = fmt.Sprintf("add a blank import: _ %q", p)
		}
		return zero, nil, fmt.Errorf("%w: %s driver %q is not registered (registered: [%s]); %s",
			r.unknown, r.kind, u.Scheme, strings.Join(r.Drivers(), ", "), hint)
	}
	return d, u, nil
}

func (r *Registry[D]) invalidf(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	if r.invalid != nil {
		err = fmt.Errorf("%w: %w", r.invalid, err)
	}
	return err
}

// redact returns the URL as a string without its password, for messages.
func redact(u *url.URL) string { return Redact(u) }

// Redact returns u as a string safe for logs and error messages: the
// password and the values of query parameters whose names suggest a secret
// (key, secret, token, password, signature, credential, sas, connection
// string) are replaced by "xxxxx".
func Redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	if strings.Contains(c.Opaque, "@") {
		// A mistyped scheme:://user:password@host parses as opaque, with no User.
		c.Opaque = "xxxxx"
	}
	if c.User != nil {
		if _, has := c.User.Password(); has {
			c.User = url.UserPassword(c.User.Username(), "xxxxx")
		}
	}
	if c.RawQuery != "" {
		// Work on the raw parameters: url.ParseQuery drops those it cannot
		// decode (a value with a bad %-escape), which must be hidden too.
		params := strings.Split(c.RawQuery, "&")
		for i, p := range params {
			name, _, ok := strings.Cut(p, "=")
			if !ok {
				continue
			}
			if n, err := url.QueryUnescape(name); err == nil {
				name = n
			}
			if secretParam(name) {
				params[i] = p[:strings.IndexByte(p, '=')] + "=xxxxx"
			}
		}
		c.RawQuery = strings.Join(params, "&")
	}
	out := c.String()
	// url.URL drops the "//" of host-less URLs such as mock://; keep it.
	if c.Scheme != "" && c.Opaque == "" && !strings.HasPrefix(out, c.Scheme+"://") {
		out = c.Scheme + "://" + strings.TrimPrefix(out, c.Scheme+":")
	}
	return out
}

// secretParam reports whether a query parameter name suggests a secret
// value: names such as api_key, SharedAccessKey, token, password, secret,
// sig, connection_string (connection strings embed keys). Ordinary
// parameters that merely contain such letters (sasl=scram...) are left
// alone.
func secretParam(name string) bool {
	n := strings.ToLower(name)
	if c := strings.NewReplacer("_", "", "-", "", ".", "").Replace(n); strings.Contains(c, "connectionstring") || strings.Contains(c, "connstr") {
		return true
	}
	for _, w := range []string{"secret", "password", "passwd", "token", "credential", "apikey", "accesskey", "privatekey"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	switch n {
	case "key", "sig", "signature", "sas", "auth", "pwd":
		return true
	}
	return strings.HasSuffix(n, "key") // api_key, SharedAccessKey, client-key...
}
