// Package postgres is a PostgreSQL idempotency store, registered as
// "postgres". It keeps one row per (merchant, key) in one table and is safe
// for any number of processes sharing the database.
//
// URL: postgres://user:password@host:5432/db?sslmode=disable&table=payrail_idempotency
//
// Every parameter pgx understands (sslmode, pool_max_conns, search_path...)
// is passed to pgx; table names the store's table (default
// payrail_idempotency, letters, digits and underscores).
//
// # Schema
//
// The schema is applied explicitly, never at start: run
// `go run ./examples/opsctl db migrate` with IDEMPOTENCY_URL set, call
// Migrate, or apply schema.sql (SchemaSQL) with psql. Open fails with
// ErrSchemaMissing when the table does not exist.
//
// # Round trips
//
// Begin is one statement — an INSERT … ON CONFLICT … DO UPDATE … WHERE the
// record expired or its lease lapsed, RETURNING the claimed row, with a
// fallback read of the existing row in the same statement — so a request
// that executes costs two round trips (Begin, then Complete, a conditional
// UPDATE) and a replay one. Only when two Begins race on a key that did not
// exist when the loser's statement started does the loser run the statement
// a second time. Extend is a conditional UPDATE and Release a conditional
// DELETE, both on the lease token.
//
// Expired rows are not deleted by PostgreSQL: a Begin on an expired key
// replaces its row, and `opsctl keys purge` deletes the others.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/idempotency/driver"
	"github.com/payrail/payrail/internal/pgtext"
)

func init() { idempotency.Register("postgres", opener{}) }

type opener struct{}

func (opener) Open(ctx context.Context, u *url.URL) (driver.Store, error) {
	return OpenURL(ctx, u)
}

// ErrSchemaMissing is returned by Open when the store's table does not
// exist: apply the schema first (Migrate, `opsctl db migrate`).
var ErrSchemaMissing = errors.New("postgres: idempotency table missing")

// Option configures a Store.
type Option func(*Store)

// WithTable sets the table name (default DefaultTable).
func WithTable(name string) Option { return func(s *Store) { s.table = name } }

// Store is the PostgreSQL idempotency store. It implements driver.Store,
// driver.Admin and driver.Pinger.
type Store struct {
	pool     *pgxpool.Pool
	ownPool  bool
	table    string
	closed   atomic.Bool
	qBegin   string
	qDone    string
	qExtend  string
	qRelease string
	qGet     string
	qList    string
	qDelete  string
}

var tableRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

func validTable(name string) error {
	if !tableRE.MatchString(name) {
		return fmt.Errorf("postgres: table %q: want 1 to 63 letters, digits or underscores, not starting with a digit", name)
	}
	return nil
}

// splitURL removes the store's own parameters from u and returns the pgx
// connection string and the table name.
func splitURL(u *url.URL) (connURL, table string, err error) {
	c := *u
	q := c.Query()
	table = DefaultTable
	if t := q.Get("table"); t != "" {
		table = t
	}
	if err := validTable(table); err != nil {
		return "", "", err
	}
	q.Del("table")
	c.RawQuery = q.Encode()
	if c.Scheme == "postgresql" {
		c.Scheme = "postgres"
	}
	return c.String(), table, nil
}

// The interfaces Store implements.
var (
	_ driver.Store  = (*Store)(nil)
	_ driver.Admin  = (*Store)(nil)
	_ driver.Pinger = (*Store)(nil)
)

// Open opens the store at urlstr (see the package documentation), with its
// own connection pool, and checks that its table exists.
func Open(ctx context.Context, urlstr string, opts ...Option) (*Store, error) {
	u, err := url.Parse(urlstr)
	if err != nil {
		return nil, errors.New("postgres: malformed URL")
	}
	return OpenURL(ctx, u, opts...)
}

// parseConfig reads the pool configuration and table name from u; it does
// not connect.
func parseConfig(u *url.URL) (*pgxpool.Config, string, error) {
	connURL, table, err := splitURL(u)
	if err != nil {
		return nil, "", err
	}
	if !strings.HasPrefix(connURL, "postgres://") {
		// pgx would read it as keyword=value settings and quote it in its error.
		return nil, "", errors.New("postgres: want a postgres://[user[:password]@]host[:port]/database URL")
	}
	cfg, err := pgxpool.ParseConfig(connURL)
	if err != nil {
		return nil, "", pgtext.ParseError(u, err) // never pgx's text: it quotes the whole string
	}
	return cfg, table, nil
}

// OpenURL is Open with a parsed URL.
func OpenURL(ctx context.Context, u *url.URL, opts ...Option) (*Store, error) {
	cfg, table, err := parseConfig(u)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	s, err := New(ctx, pool, append([]Option{WithTable(table)}, opts...)...)
	if err != nil {
		pool.Close()
		return nil, err
	}
	s.ownPool = true
	return s, nil
}

// New returns a store over an existing pool, which it does not close. It
// checks that the table exists (ErrSchemaMissing otherwise).
func New(ctx context.Context, pool *pgxpool.Pool, opts ...Option) (*Store, error) {
	s := &Store{pool: pool, table: DefaultTable}
	for _, o := range opts {
		o(s)
	}
	if err := validTable(s.table); err != nil {
		return nil, err
	}
	var exists bool
	err := pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, s.table).Scan(&exists)
	if err != nil {
		return nil, fmt.Errorf("postgres: checking table %s: %w", s.table, ctxErr(ctx, err))
	}
	if !exists {
		return nil, fmt.Errorf("%w: table %q does not exist in the database; apply the schema first: `opsctl db migrate` with IDEMPOTENCY_URL set, or postgres.Migrate", ErrSchemaMissing, s.table)
	}
	s.prepare()
	return s, nil
}

const cols = `fingerprint, state, token, resource_id, lease_expires_at, status_code, headers, body, created_at, expires_at`

func (s *Store) prepare() {
	t := pgx.Identifier{s.table}.Sanitize()
	// $1 merchant, $2 key, $3 fingerprint, $4 token, $5 resource id,
	// $6 now, $7 lease expiry, $8 record expiry.
	s.qBegin = `WITH up AS (
	INSERT INTO ` + t + ` AS r (merchant, key, fingerprint, state, token, resource_id, lease_expires_at, created_at, expires_at)
	VALUES ($1, $2, $3, 'in_progress', $4, $5, $7, $6, $8)
	ON CONFLICT (merchant, key) DO UPDATE SET
		fingerprint      = CASE WHEN r.expires_at <= $6 THEN EXCLUDED.fingerprint ELSE r.fingerprint END,
		resource_id      = CASE WHEN r.expires_at <= $6 THEN EXCLUDED.resource_id ELSE r.resource_id END,
		created_at       = CASE WHEN r.expires_at <= $6 THEN EXCLUDED.created_at ELSE r.created_at END,
		expires_at       = CASE WHEN r.expires_at <= $6 THEN EXCLUDED.expires_at ELSE r.expires_at END,
		state            = 'in_progress',
		token            = EXCLUDED.token,
		lease_expires_at = EXCLUDED.lease_expires_at,
		status_code      = 0,
		headers          = NULL,
		body             = NULL
	WHERE r.expires_at <= $6
	   OR (r.state = 'in_progress' AND r.fingerprint = EXCLUDED.fingerprint AND r.lease_expires_at <= $6)
	RETURNING ` + cols + `, true AS claimed, r.created_at = $6 AS fresh
)
SELECT * FROM up
UNION ALL
SELECT fingerprint, state, token, resource_id, lease_expires_at, status_code, headers,
	CASE WHEN state = 'completed' AND fingerprint = $3 THEN body END, created_at, expires_at, false, false
FROM ` + t + ` WHERE merchant = $1 AND key = $2 AND NOT EXISTS (SELECT 1 FROM up)`
	s.qDone = `UPDATE ` + t + ` SET state = 'completed', token = '', status_code = $4, headers = $5, body = $6, expires_at = $7
WHERE merchant = $1 AND key = $2 AND state = 'in_progress' AND token = $3`
	s.qExtend = `UPDATE ` + t + ` SET lease_expires_at = $4
WHERE merchant = $1 AND key = $2 AND state = 'in_progress' AND token = $3`
	s.qRelease = `DELETE FROM ` + t + ` WHERE merchant = $1 AND key = $2 AND state = 'in_progress' AND token = $3`
	s.qGet = `SELECT merchant, key, ` + cols + ` FROM ` + t + ` WHERE merchant = $1 AND key = $2`
	s.qList = `SELECT merchant, key, ` + cols + ` FROM ` + t + `
WHERE ($1 = '' OR merchant = $1) AND ($2 = '' OR state = $2) AND (merchant, key) > ($3, $4)
ORDER BY merchant, key LIMIT $5`
	s.qDelete = `DELETE FROM ` + t + ` WHERE merchant = $1 AND key = $2 AND state = $3 AND token = $4 AND expires_at = $5`
}

// Table returns the store's table name.
func (s *Store) Table() string { return s.table }

// Pool returns the store's connection pool (the escape hatch to pgx).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// ctxErr makes err match the context's error with errors.Is when the
// context ended, whatever pgx wrapped.
func ctxErr(ctx context.Context, err error) error {
	if c := ctx.Err(); c != nil && !errors.Is(err, c) {
		return fmt.Errorf("%w: %w", c, err)
	}
	return err
}

func (s *Store) fail(ctx context.Context, op string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" { // undefined_table
		return fmt.Errorf("postgres: %s: %w: table %q was dropped; apply the schema (opsctl db migrate)", op, ErrSchemaMissing, s.table)
	}
	if code, ok := pgtext.Refused(err); ok {
		// The server's message may quote the value: keep the code only.
		return fmt.Errorf("postgres: %s: %w: SQLSTATE %s", op, driver.ErrInvalidInput, code)
	}
	return fmt.Errorf("postgres: %s: %w", op, ctxErr(ctx, err))
}

// MaxIndexedBytes is the longest merchant and key the store accepts: both
// make the primary key, and PostgreSQL refuses index entries over about
// 2.7 kB.
const MaxIndexedBytes = pgtext.MaxIndexedBytes

// storable reports whether a record of merchant and key with token could
// exist: the writes conditional on a token answer ErrLeaseLost for the
// others, and Get ErrNotFound, without a round trip.
func storable(merchant, key, token string) bool {
	return pgtext.Problem(merchant, MaxIndexedBytes) == "" && pgtext.Problem(key, MaxIndexedBytes) == "" && pgtext.Problem(token, 0) == ""
}

// validateBegin refuses, before the round trip, a request with a value the
// store cannot keep exactly; the error names the field, never the value.
func validateBegin(r *driver.BeginRequest) error {
	for _, f := range [...]struct {
		name, v string
		max     int
	}{
		{"merchant", r.Merchant, MaxIndexedBytes}, {"key", r.Key, MaxIndexedBytes},
		{"fingerprint", r.Fingerprint, 0}, {"token", r.Token, 0}, {"resource id", r.ResourceID, 0},
	} {
		if why := pgtext.Problem(f.v, f.max); why != "" {
			return fmt.Errorf("postgres: begin: %w: %s %s", driver.ErrInvalidInput, f.name, why)
		}
	}
	return nil
}

func validateHeaders(h map[string]string) error {
	for k, v := range h {
		if why := pgtext.Problem(k, 0); why != "" {
			return fmt.Errorf("postgres: complete: %w: a header name %s", driver.ErrInvalidInput, why)
		}
		if why := pgtext.Problem(v, 0); why != "" {
			return fmt.Errorf("postgres: complete: %w: a header value %s", driver.ErrInvalidInput, why)
		}
	}
	return nil
}

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return driver.ErrClosed
	}
	return ctx.Err()
}

// maxBeginAttempts bounds the statement's re-runs after a race on a new key.
const maxBeginAttempts = 5

// Begin implements driver.Store.
func (s *Store) Begin(ctx context.Context, r *driver.BeginRequest) (*driver.BeginResult, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if err := validateBegin(r); err != nil {
		return nil, err
	}
	for range maxBeginAttempts {
		var (
			rec            driver.Record
			state          string
			status         int32
			headers        map[string]string
			body           []byte
			claimed, fresh bool
		)
		err := s.pool.QueryRow(ctx, s.qBegin, r.Merchant, r.Key, r.Fingerprint, r.Token, r.ResourceID,
			r.Now, r.Now.Add(r.Lease), r.Now.Add(r.TTL)).Scan(
			&rec.Fingerprint, &state, &rec.Token, &rec.ResourceID, &rec.LeaseExpiresAt, &status, &headers, &body,
			&rec.CreatedAt, &rec.ExpiresAt, &claimed, &fresh)
		if errors.Is(err, pgx.ErrNoRows) {
			// The key was inserted by a transaction that committed after
			// this statement's snapshot: run it again to see the row.
			continue
		}
		if err != nil {
			return nil, s.fail(ctx, "begin", err)
		}
		rec.Merchant, rec.Key, rec.State = r.Merchant, r.Key, driver.State(state)
		if rec.State == driver.StateCompleted {
			rec.Response = &driver.Response{StatusCode: int(status), Header: headers, Body: body}
		}
		out := &driver.BeginResult{Record: &rec}
		switch {
		case claimed && fresh:
			out.Outcome = driver.Acquired
		case claimed:
			out.Outcome = driver.Reacquired
		case rec.Fingerprint != r.Fingerprint:
			out.Outcome = driver.Mismatch
		case rec.State == driver.StateCompleted:
			out.Outcome = driver.Replay
		default:
			out.Outcome = driver.InProgress
		}
		return out, nil
	}
	return nil, fmt.Errorf("postgres: begin %s/%s: no result after %d attempts under contention", r.Merchant, r.Key, maxBeginAttempts)
}

// exec1 runs a write conditional on the record of merchant and key being
// held by token: ErrLeaseLost if no row matched, or if no such record can
// exist.
func (s *Store) exec1(ctx context.Context, op, merchant, key, token, sql string, args ...any) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if !storable(merchant, key, token) {
		return driver.ErrLeaseLost
	}
	tag, err := s.pool.Exec(ctx, sql, args...)
	if err != nil {
		return s.fail(ctx, op, err)
	}
	if tag.RowsAffected() == 0 {
		return driver.ErrLeaseLost
	}
	return nil
}

// Complete implements driver.Store.
func (s *Store) Complete(ctx context.Context, r driver.CompleteRequest) error {
	resp := r.Response
	if resp == nil {
		resp = &driver.Response{}
	}
	var headers map[string]string
	if len(resp.Header) > 0 {
		if err := validateHeaders(resp.Header); err != nil {
			return err
		}
		headers = resp.Header
	}
	return s.exec1(ctx, "complete", r.Merchant, r.Key, r.Token, s.qDone, r.Merchant, r.Key, r.Token, int32(resp.StatusCode), headers, resp.Body, r.Now.Add(r.TTL))
}

// Extend implements driver.Store.
func (s *Store) Extend(ctx context.Context, r driver.ExtendRequest) error {
	return s.exec1(ctx, "extend", r.Merchant, r.Key, r.Token, s.qExtend, r.Merchant, r.Key, r.Token, r.Now.Add(r.Lease))
}

// Release implements driver.Store.
func (s *Store) Release(ctx context.Context, merchant, key, token string) error {
	return s.exec1(ctx, "release", merchant, key, token, s.qRelease, merchant, key, token)
}

func scanRecord(row pgx.Row) (*driver.Record, error) {
	var (
		rec     driver.Record
		state   string
		status  int32
		headers map[string]string
		body    []byte
	)
	if err := row.Scan(&rec.Merchant, &rec.Key, &rec.Fingerprint, &state, &rec.Token, &rec.ResourceID,
		&rec.LeaseExpiresAt, &status, &headers, &body, &rec.CreatedAt, &rec.ExpiresAt); err != nil {
		return nil, err
	}
	rec.State = driver.State(state)
	if rec.State == driver.StateCompleted {
		rec.Response = &driver.Response{StatusCode: int(status), Header: headers, Body: body}
	}
	return &rec, nil
}

// DefaultListLimit is List's page size when the filter sets none.
const DefaultListLimit = 100

// List implements driver.Admin.
func (s *Store) List(ctx context.Context, f driver.Filter) ([]*driver.Record, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	rows, err := s.pool.Query(ctx, s.qList, f.Merchant, string(f.State), f.AfterMerchant, f.AfterKey, limit)
	if err != nil {
		return nil, s.fail(ctx, "list", err)
	}
	defer rows.Close()
	var out []*driver.Record
	for rows.Next() {
		rec, err := scanRecord(rows)
		if err != nil {
			return nil, s.fail(ctx, "list", err)
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, "list", err)
	}
	return out, nil
}

// Get implements driver.Admin.
func (s *Store) Get(ctx context.Context, merchant, key string) (*driver.Record, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if !storable(merchant, key, "") {
		return nil, driver.ErrNotFound
	}
	rec, err := scanRecord(s.pool.QueryRow(ctx, s.qGet, merchant, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, driver.ErrNotFound
	}
	if err != nil {
		return nil, s.fail(ctx, "get", err)
	}
	return rec, nil
}

// Delete implements driver.Admin: it deletes the row only if its state,
// token and expiry are still those of r.
func (s *Store) Delete(ctx context.Context, r *driver.Record) error {
	return s.exec1(ctx, "delete", r.Merchant, r.Key, r.Token, s.qDelete, r.Merchant, r.Key, string(r.State), r.Token, r.ExpiresAt)
}

// Ping implements driver.Pinger.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := s.pool.Ping(ctx); err != nil {
		return s.fail(ctx, "ping", err)
	}
	return nil
}

// Close implements driver.Store. It closes the pool if Open created it.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return driver.ErrClosed
	}
	if s.ownPool {
		s.pool.Close()
	}
	return nil
}
