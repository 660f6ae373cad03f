// Package pgtext holds what payrail's PostgreSQL stores share about the
// values PostgreSQL cannot keep: a check made before the round trip, and
// the classification of the server's refusals.
package pgtext

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/payrail/payrail/internal/registry"
)

// MaxIndexedBytes is the longest value the stores accept in an indexed
// column: PostgreSQL refuses B-tree entries over about 2.7 kB, and an
// index may hold two such columns.
const MaxIndexedBytes = 1024

// Problem returns why v cannot be stored exactly in a text or jsonb
// column, or "": PostgreSQL text holds valid UTF-8 without NUL bytes (and
// a JSON encoding would replace invalid bytes by U+FFFD); max > 0 bounds
// its length in bytes. The reason never quotes v.
func Problem(v string, max int) string {
	switch {
	case max > 0 && len(v) > max:
		return fmt.Sprintf("is longer than %d bytes", max)
	case strings.IndexByte(v, 0) >= 0:
		return "contains a NUL byte"
	case !utf8.ValidString(v):
		return "is not valid UTF-8"
	}
	return ""
}

// Refused returns the SQLSTATE of err if the server refused the statement
// because of the values it carried: a data exception (class 22: invalid
// byte sequence, unsupported Unicode escape, string too long...) or a
// program limit (54000: an index row too large). Such a statement fails
// the same way on every attempt: it is the caller's input, not an outage.
// Callers report the code, not the server's message, which may quote the
// value.
func Refused(err error) (sqlstate string, ok bool) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "22") || pe.Code == "54000") {
		return pe.Code, true
	}
	return "", false
}

// ParseError rewrites an error of pgx's ParseConfig for the store URL u.
// pgx quotes the whole connection string, or the offending value, in its
// errors and hides only the password of the userinfo; a secret in a query
// parameter (a mistyped "passwd=", a token) would reach logs. The result
// names u redacted and nothing of pgx's text.
func ParseError(u *url.URL, err error) error {
	if _, ok := errors.AsType[*pgconn.ParseConfigError](err); ok {
		return fmt.Errorf("postgres: cannot parse %s: check its syntax, parameters and percent-encoding", registry.Redact(u))
	}
	return fmt.Errorf("postgres: cannot parse %s", registry.Redact(u))
}
