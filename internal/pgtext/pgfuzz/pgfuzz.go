// Package pgfuzz is the shared body of the PostgreSQL stores' URL fuzz
// targets (payments/postgres, idempotency/postgres), kept apart from
// internal/urlcheck so that the SDK core's module never requires pgx.
package pgfuzz

import (
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/payrail/payrail/internal/urlcheck"
)

// pgFileParams name files pgx reads while parsing: the fuzz targets leave
// them out rather than read the machine's files.
var pgFileParams = []string{"sslrootcert", "sslcert", "sslkey", "passfile", "service", "servicefile"}

// Postgres is the body of the postgres stores' URL fuzz targets: parse
// (the store's parseConfig) either refuses raw with an error that reveals
// none of its secrets, or returns the table it names (default
// defaultTable) and a pgx configuration with the user, password and
// database the URL gives. Parsing never connects.
func Postgres(t *testing.T, raw, defaultTable string, parse func(*url.URL) (*pgxpool.Config, string, error)) {
	// pgx may read the string differently from net/url (a '#' in the
	// userinfo hides the query from url.Parse): skip on the raw text.
	lower := strings.ToLower(raw)
	for _, p := range pgFileParams {
		if strings.Contains(lower, p) {
			return
		}
	}
	var cfg *pgxpool.Config
	var table string
	u, ok := urlcheck.Parse(t, raw, urlcheck.Prefixed("postgres: "), func(u *url.URL) (err error) {
		cfg, table, err = parse(u)
		return err
	})
	if !ok {
		return
	}
	q := u.Query()
	want := q.Get("table")
	if want == "" {
		want = defaultTable
	}
	if table != want {
		t.Fatalf("parseConfig(%q): table %q, want %q", raw, table, want)
	}
	if (u.Scheme != "postgres" && u.Scheme != "postgresql") || !strings.HasPrefix(strings.ToLower(raw), u.Scheme+"://") {
		return // pgx reads other strings (postgres:/db too) as keyword=value settings, not as URLs
	}
	cc := cfg.ConnConfig
	if name := u.User.Username(); name != "" && !q.Has("user") && cc.User != name {
		t.Fatalf("parseConfig(%q): user %q, want %q", raw, cc.User, name)
	}
	if pw, ok := u.User.Password(); ok && pw != "" && !q.Has("password") && cc.Password != pw {
		t.Fatalf("parseConfig(%q): the password is not the URL's", raw)
	}
	// pgx reads a fragment as part of the database name (db#x): left as pgx's.
	if db := strings.TrimPrefix(u.Path, "/"); db != "" && !q.Has("dbname") && u.Fragment == "" && cc.Database != db {
		t.Fatalf("parseConfig(%q): database %q, want %q", raw, cc.Database, db)
	}
}
