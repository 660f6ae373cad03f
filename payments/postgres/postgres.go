// Package postgres is a PostgreSQL payment store, registered with
// payments.RegisterStore as "postgres", built on pgx/v5.
//
// URL: postgres://user:password@host:5432/db?sslmode=disable&table=payrail_payments
//
// Every parameter pgx understands (sslmode, pool_max_conns, ...) is passed
// to pgx; table names the store's table (default payrail_payments).
//
// Each payment is one row: its JSON representation plus the columns the
// store queries (merchant, status, updated_at) and the optimistic-
// concurrency version. Create is an INSERT … ON CONFLICT DO NOTHING, Update
// an UPDATE conditional on the version read (one statement that also tells
// a stale version from a missing payment), ListStale an index scan on
// (status, updated_at).
//
// # Values the store refuses
//
// PostgreSQL text holds valid UTF-8 without NUL bytes, and the payment's
// JSON encoding would replace invalid bytes by U+FFFD: a payment with a
// NUL byte or invalid UTF-8 in any string, or an id or status longer than
// MaxIndexedBytes, is refused before the round trip with an error matching
// payments.ErrStoreInvalid (naming the field, never quoting the value), and
// Get by such an id or merchant returns payments.ErrNotFound. Server
// errors caused by the values sent (SQLSTATE class 22, 54000) match
// payments.ErrStoreInvalid too; every other failure is an outage.
//
// # Schema
//
// Applied explicitly, never at start: `go run ./examples/opsctl db migrate`
// with PAYMENTS_STORE_URL set, Migrate, or schema.sql (SchemaSQL) with psql.
// Open fails with ErrSchemaMissing when the table does not exist.
package postgres

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/payrail/payrail/internal/dbtel"
	"github.com/payrail/payrail/internal/pgtext"
	"github.com/payrail/payrail/payments"
	"github.com/payrail/payrail/telemetry"
)

func init() { payments.RegisterStore("postgres", opener{}) }

type opener struct{}

func (opener) Open(ctx context.Context, u *url.URL) (payments.Store, error) { return OpenURL(ctx, u) }

//go:embed schema.sql
var schemaSQL string

// DefaultTable is the table a store uses unless the URL's table parameter
// or WithTable names another.
const DefaultTable = "payrail_payments"

// ErrSchemaMissing is returned by Open when the store's table does not
// exist: apply the schema first (Migrate, `opsctl db migrate`).
var ErrSchemaMissing = errors.New("postgres: payments table missing")

// ErrClosed is returned by every operation on a closed store.
var ErrClosed = errors.New("postgres: payment store closed")

var tableRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

func validTable(name string) error {
	if !tableRE.MatchString(name) {
		return fmt.Errorf("postgres: table %q: want 1 to 63 letters, digits or underscores, not starting with a digit", name)
	}
	return nil
}

// SchemaSQL returns the schema statements for table (DefaultTable if
// empty): what Migrate executes.
func SchemaSQL(table string) (string, error) {
	if table == "" {
		table = DefaultTable
	}
	if err := validTable(table); err != nil {
		return "", err
	}
	return strings.ReplaceAll(schemaSQL, DefaultTable, table), nil
}

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

const migrateLockID = 0x70617972_70617931 // "payr" "pay1"

// Migrate creates or upgrades the store's schema in the database urlstr
// names (including its table parameter). Idempotent, and safe to run from
// several processes at once.
func Migrate(ctx context.Context, urlstr string) error {
	u, err := url.Parse(urlstr)
	if err != nil {
		return errors.New("postgres: malformed URL")
	}
	connURL, table, err := splitURL(u)
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, connURL)
	if err != nil {
		return fmt.Errorf("postgres: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	sql, _ := SchemaSQL(table)
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrateLockID)); err != nil {
		return fmt.Errorf("postgres: migrate: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
		return fmt.Errorf("postgres: migrate %s: %w", table, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: commit: %w", err)
	}
	return nil
}

// Option configures a Store.
type Option func(*Store)

// WithTable sets the table name (default DefaultTable).
func WithTable(name string) Option { return func(s *Store) { s.table = name } }

// WithTelemetry sets the OpenTelemetry providers of the store's spans and
// metrics (default, and nil fields: the application's globals). The store
// follows the database client conventions: a client span per operation
// ("INSERT payments", "SELECT payments", "UPDATE payments") and the
// histogram db.client.operation.duration, with db.system.name postgresql,
// db.operation.name, db.collection.name (the table) and error.type
// (not_found, conflict, invalid_input, canceled, timeout, _OTHER) on
// failure. Payment data is never recorded.
func WithTelemetry(t telemetry.Providers) Option { return func(s *Store) { s.providers = t } }

// Store is the PostgreSQL payment store; it implements payments.Store.
type Store struct {
	pool    *pgxpool.Pool
	ownPool bool
	table   string
	closed  atomic.Bool

	providers telemetry.Providers
	tel       *dbtel.Telemetry

	qCreate, qGet, qUpdate, qStale, qDue, qEvents, qDead string
}

var _ payments.Store = (*Store)(nil)

// Open opens the store at urlstr with its own pool and checks its table.
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

// New returns a store over an existing pool, which it does not close, after
// checking that the table exists (ErrSchemaMissing otherwise).
func New(ctx context.Context, pool *pgxpool.Pool, opts ...Option) (*Store, error) {
	s := &Store{pool: pool, table: DefaultTable}
	for _, o := range opts {
		o(s)
	}
	if err := validTable(s.table); err != nil {
		return nil, err
	}
	s.tel = dbtel.New(dbtel.Config{Providers: s.providers, Scope: "github.com/payrail/payrail/payments/postgres",
		System: "postgresql", Collection: s.table, Ops: opNames[:], Errors: errorClasses})
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, s.table).Scan(&exists); err != nil {
		return nil, fmt.Errorf("postgres: checking table %s: %w", s.table, ctxErr(ctx, err))
	}
	if !exists {
		return nil, fmt.Errorf("%w: table %q does not exist in the database; apply the schema first: `opsctl db migrate` with PAYMENTS_STORE_URL set, or postgres.Migrate", ErrSchemaMissing, s.table)
	}
	t := pgx.Identifier{s.table}.Sanitize()
	s.qCreate = `INSERT INTO ` + t + ` (id, merchant, status, amount, currency, version, created_at, updated_at, payment)
VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8) ON CONFLICT (id) DO NOTHING`
	s.qGet = `SELECT payment, version FROM ` + t + ` WHERE id = $1 AND merchant = $2`
	s.qUpdate = `WITH u AS (
	UPDATE ` + t + ` SET status = $4, amount = $5, currency = $6, updated_at = $7, payment = $8, version = version + 1
	WHERE id = $1 AND merchant = $2 AND version = $3 AND ` + eventsRev + ` = $9
	RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM u), EXISTS (SELECT 1 FROM ` + t + ` WHERE id = $1 AND merchant = $2)`
	s.qStale = `SELECT payment, version FROM ` + t + ` WHERE status = ANY($1) AND updated_at < $2
ORDER BY updated_at, id LIMIT $3`
	s.qDue = `SELECT payment, version FROM ` + t + ` WHERE payment ? 'payrail_events_due' AND payment->>'payrail_events_due' <= $1
ORDER BY payment->>'payrail_events_due', id LIMIT $2`
	s.qDead = `SELECT payment, version FROM ` + t + ` WHERE payment ? 'payrail_events_dead' AND id > $1 ORDER BY id LIMIT $2`
	s.qEvents = `WITH u AS (
	UPDATE ` + t + ` SET payment = (payment - 'payrail_events' - 'payrail_events_due' - 'payrail_events_dead' - 'payrail_events_rev') || $4::jsonb
	WHERE id = $1 AND merchant = $2 AND version = $3 AND ` + eventsRev + ` = $5
	RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM u), EXISTS (SELECT 1 FROM ` + t + ` WHERE id = $1 AND merchant = $2)`
	return s, nil
}

// Pool returns the store's connection pool (the escape hatch to pgx).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Table returns the table name.
func (s *Store) Table() string { return s.table }

func ctxErr(ctx context.Context, err error) error {
	if c := ctx.Err(); c != nil && !errors.Is(err, c) {
		return fmt.Errorf("%w: %w", c, err)
	}
	return err
}

func (s *Store) fail(ctx context.Context, op string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" {
		return fmt.Errorf("postgres: %s: %w: table %q was dropped; apply the schema (opsctl db migrate)", op, ErrSchemaMissing, s.table)
	}
	if code, ok := pgtext.Refused(err); ok {
		// The server's message may quote the value: keep the code and
		// the column only.
		return fmt.Errorf("postgres: %s: %w: SQLSTATE %s%s", op, payments.ErrStoreInvalid, code, column(pe))
	}
	return fmt.Errorf("postgres: %s: %w", op, ctxErr(ctx, err))
}

func column(pe *pgconn.PgError) string {
	if pe.ColumnName != "" {
		return " (column " + pe.ColumnName + ")"
	}
	return ""
}

// MaxIndexedBytes is the longest id and status the store accepts: both
// are indexed, and PostgreSQL refuses index entries over about 2.7 kB.
const MaxIndexedBytes = pgtext.MaxIndexedBytes

// validate refuses, before any round trip, a payment holding a value the
// store cannot keep exactly; the error names the field, never the value.
func validate(p *payments.Payment) error {
	var (
		field, why string
		refund     = -1 // the index of the refund being checked
	)
	check := func(name, v string, max int) bool {
		r := pgtext.Problem(v, max)
		if r == "" {
			return true
		}
		field, why = name, r
		if refund >= 0 {
			field = fmt.Sprintf("refunds[%d].%s", refund, name)
		}
		return false
	}
	ok := check("id", p.ID, MaxIndexedBytes) && check("merchant", p.Merchant, 0) &&
		check("status", string(p.Status), MaxIndexedBytes) && check("currency", p.Currency, 0) &&
		check("payment_method", p.PaymentMethod, 0) && check("origin", p.Origin, 0) &&
		check("capture_method", string(p.CaptureMethod), 0) && check("gateway", p.Gateway, 0) &&
		check("gateway_reference", p.GatewayReference, 0) && check("decline_code", p.DeclineCode, 0) &&
		check("failure_code", p.FailureCode, 0)
	for k, v := range p.Metadata {
		ok = ok && check("a metadata key", k, 0) && check("a metadata value", v, 0)
	}
	for i := range p.Refunds {
		r := &p.Refunds[i]
		refund = i
		ok = ok && check("id", r.ID, 0) && check("payment_id", r.PaymentID, 0) &&
			check("currency", r.Currency, 0) && check("status", r.Status, 0) &&
			check("gateway_reference", r.GatewayReference, 0)
	}
	if !ok {
		return fmt.Errorf("postgres: %w: %s %s", payments.ErrStoreInvalid, field, why)
	}
	return nil
}

// storable reports whether a payment with this id and merchant could be
// stored; Get answers ErrNotFound for the others without asking.
func storable(merchant, id string) bool {
	return pgtext.Problem(id, MaxIndexedBytes) == "" && pgtext.Problem(merchant, 0) == ""
}

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return ctx.Err()
}

// document is a payment as stored in the payment column: its API
// representation plus the store-only fields that payments.Payment keeps
// out of it (json:"-").
type document struct {
	payments.Payment
	AttemptUntil      *time.Time       `json:"payrail_attempt_until,omitempty"`
	ReconcileAttempts int              `json:"payrail_reconcile_attempts,omitempty"`
	Events            []payments.Event `json:"payrail_events,omitempty"`
	EventsDue         string           `json:"payrail_events_due,omitempty"`
	EventsRevision    int64            `json:"payrail_events_rev,omitempty"`
}

// appendEventsIndex appends the members the outbox's indexes are on:
// payrail_events_due (ListEventsDue) and payrail_events_dead
// (ListDeadEvents), each only when set.
func appendEventsIndex(b []byte, p *payments.Payment) []byte {
	if !p.EventsDue.IsZero() {
		b = append(b, `,"payrail_events_due":"`...)
		b = append(p.EventsDue.UTC().AppendFormat(b, dueLayout), '"')
	}
	if p.HasDeadEvents() {
		b = append(b, `,"payrail_events_dead":true`...)
	}
	return b
}

// eventsRev is the stored payment's EventsRevision, in SQL.
const eventsRev = `coalesce((payment->>'payrail_events_rev')::bigint, 0)`

// dueLayout formats EventsDue in the document: fixed width, in UTC, so
// that the text sorts as the time does (the ListEventsDue index is on the
// text: a cast to timestamptz is not immutable, so it cannot be indexed).
const dueLayout = "2006-01-02T15:04:05.000000000Z"

func formatDue(t time.Time) string { return t.UTC().Format(dueLayout) }

func encode(p *payments.Payment) ([]byte, error) {
	b, err := json.Marshal(p) // the API representation (Payment.MarshalJSON)
	if err != nil {
		return nil, fmt.Errorf("postgres: encoding payment %s: %w", p.ID, err)
	}
	if !p.AttemptUntil.IsZero() && len(b) > 1 && b[len(b)-1] == '}' {
		b = append(b[:len(b)-1], `,"payrail_attempt_until":`...)
		b = p.AttemptUntil.UTC().AppendFormat(append(b, '"'), time.RFC3339Nano)
		b = append(b, '"', '}')
	}
	if p.ReconcileAttempts > 0 && len(b) > 1 && b[len(b)-1] == '}' {
		b = append(b[:len(b)-1], `,"payrail_reconcile_attempts":`...)
		b = append(strconv.AppendInt(b, int64(p.ReconcileAttempts), 10), '}')
	}
	if len(p.Events) > 0 && len(b) > 1 && b[len(b)-1] == '}' {
		evs, err := json.Marshal(p.Events)
		if err != nil {
			return nil, fmt.Errorf("postgres: encoding the events of payment %s: %w", p.ID, err)
		}
		b = append(append(b[:len(b)-1], `,"payrail_events":`...), evs...)
		b = appendEventsIndex(b, p)
		b = append(b, '}')
	}
	if p.EventsRevision > 0 && len(b) > 1 && b[len(b)-1] == '}' {
		b = append(b[:len(b)-1], `,"payrail_events_rev":`...)
		b = append(strconv.AppendInt(b, p.EventsRevision, 10), '}')
	}
	return b, nil
}

// Store operations, as db.operation.name.
const (
	opCreate = iota
	opGet
	opUpdate
	opListStale
	opListEventsDue
	opUpdateEvents
	opListDeadEvents
)

var opNames = [...]string{opCreate: "INSERT", opGet: "SELECT", opUpdate: "UPDATE", opListStale: "SELECT", opListEventsDue: "SELECT", opUpdateEvents: "UPDATE", opListDeadEvents: "SELECT"}

// errorClasses are the store's error.type values.
var errorClasses = []dbtel.ErrorClass{
	{Err: payments.ErrNotFound, Type: "not_found"}, {Err: payments.ErrStoreConflict, Type: "conflict"},
	{Err: payments.ErrStoreInvalid, Type: "invalid_input"},
}

// Create implements payments.Store.
func (s *Store) Create(ctx context.Context, p *payments.Payment) error {
	ctx, op := s.tel.Start(ctx, opCreate)
	return s.tel.End(ctx, op, s.create(ctx, p))
}

// Get implements payments.Store.
func (s *Store) Get(ctx context.Context, merchant, id string) (*payments.Payment, error) {
	ctx, op := s.tel.Start(ctx, opGet)
	p, err := s.get(ctx, merchant, id)
	return p, s.tel.End(ctx, op, err)
}

// Update implements payments.Store.
func (s *Store) Update(ctx context.Context, p *payments.Payment) error {
	ctx, op := s.tel.Start(ctx, opUpdate)
	return s.tel.End(ctx, op, s.update(ctx, p))
}

// ListStale implements payments.Store.
func (s *Store) ListStale(ctx context.Context, statuses []payments.Status, before time.Time, limit int) ([]*payments.Payment, error) {
	ctx, op := s.tel.Start(ctx, opListStale)
	ps, err := s.listStale(ctx, statuses, before, limit)
	return ps, s.tel.End(ctx, op, err)
}

func (s *Store) create(ctx context.Context, p *payments.Payment) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := validate(p); err != nil {
		return err
	}
	doc, err := encode(p)
	if err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, s.qCreate, p.ID, p.Merchant, string(p.Status), p.Amount, p.Currency, p.CreatedAt, p.UpdatedAt, doc)
	if err != nil {
		return s.fail(ctx, "create", err)
	}
	if tag.RowsAffected() == 0 {
		return payments.ErrStoreConflict
	}
	p.Version = 1
	return nil
}

func decode(doc []byte, version int64) (*payments.Payment, error) {
	var d document
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("postgres: decoding payment: %w", err)
	}
	p := &d.Payment
	if d.AttemptUntil != nil {
		p.AttemptUntil = *d.AttemptUntil
	}
	p.ReconcileAttempts = d.ReconcileAttempts
	p.Events = d.Events
	p.EventsRevision = d.EventsRevision
	if d.EventsDue != "" {
		due, err := time.Parse(dueLayout, d.EventsDue)
		if err != nil {
			return nil, fmt.Errorf("postgres: decoding payment: payrail_events_due: %w", err)
		}
		p.EventsDue = due
	}
	p.Version = version
	return p, nil
}

func (s *Store) get(ctx context.Context, merchant, id string) (*payments.Payment, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if !storable(merchant, id) {
		return nil, payments.ErrNotFound
	}
	var (
		doc     []byte
		version int64
	)
	err := s.pool.QueryRow(ctx, s.qGet, id, merchant).Scan(&doc, &version)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, payments.ErrNotFound
	}
	if err != nil {
		return nil, s.fail(ctx, "get", err)
	}
	return decode(doc, version)
}

func (s *Store) update(ctx context.Context, p *payments.Payment) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := validate(p); err != nil {
		return err
	}
	doc, err := encode(p)
	if err != nil {
		return err
	}
	var updated, exists bool
	err = s.pool.QueryRow(ctx, s.qUpdate, p.ID, p.Merchant, p.Version, string(p.Status), p.Amount, p.Currency, p.UpdatedAt, doc, p.EventsRevision).
		Scan(&updated, &exists)
	if err != nil {
		return s.fail(ctx, "update", err)
	}
	switch {
	case updated:
		p.Version++
		return nil
	case exists:
		return payments.ErrStoreConflict
	}
	return payments.ErrNotFound
}

func (s *Store) listStale(ctx context.Context, statuses []payments.Status, before time.Time, limit int) ([]*payments.Payment, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	st := make([]string, len(statuses))
	for i, v := range statuses {
		st[i] = string(v)
	}
	return s.list(ctx, "list stale", s.qStale, st, before, limitArg(limit))
}

// limitArg is a LIMIT parameter: NULL (no limit) unless limit is positive.
func limitArg(limit int) *int {
	if limit > 0 {
		return &limit
	}
	return nil
}

// list runs a query returning (payment, version) rows and decodes them.
func (s *Store) list(ctx context.Context, op, query string, args ...any) ([]*payments.Payment, error) {
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	defer rows.Close()
	var out []*payments.Payment
	for rows.Next() {
		var (
			doc     []byte
			version int64
		)
		if err := rows.Scan(&doc, &version); err != nil {
			return nil, s.fail(ctx, op, err)
		}
		p, err := decode(doc, version)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	return out, nil
}

// ListEventsDue implements payments.EventStore, over the
// payrail_payments_events_due_idx index of schema.sql.
func (s *Store) ListEventsDue(ctx context.Context, before time.Time, limit int) ([]*payments.Payment, error) {
	ctx, op := s.tel.Start(ctx, opListEventsDue)
	ps, err := s.listEventsDue(ctx, before, limit)
	return ps, s.tel.End(ctx, op, err)
}

// UpdateEvents implements payments.EventStore: it replaces the events of
// the payment's document in place, without changing its version.
func (s *Store) UpdateEvents(ctx context.Context, p *payments.Payment) error {
	ctx, op := s.tel.Start(ctx, opUpdateEvents)
	return s.tel.End(ctx, op, s.updateEvents(ctx, p))
}

func (s *Store) updateEvents(ctx context.Context, p *payments.Payment) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if !storable(p.Merchant, p.ID) {
		return payments.ErrNotFound
	}
	evs, err := json.Marshal(p.Events)
	if err != nil {
		return fmt.Errorf("postgres: encoding the events of payment %s: %w", p.ID, err)
	}
	patch := appendEventsIndex(append([]byte(`{"payrail_events":`), evs...), p)
	patch = append(strconv.AppendInt(append(patch, `,"payrail_events_rev":`...), p.EventsRevision+1, 10), '}')
	var updated, exists bool
	if err := s.pool.QueryRow(ctx, s.qEvents, p.ID, p.Merchant, p.Version, string(patch), p.EventsRevision).Scan(&updated, &exists); err != nil {
		return s.fail(ctx, "update events", err)
	}
	switch {
	case updated:
		p.EventsRevision++
		return nil
	case exists:
		return payments.ErrStoreConflict
	}
	return payments.ErrNotFound
}

func (s *Store) listEventsDue(ctx context.Context, before time.Time, limit int) ([]*payments.Payment, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	return s.list(ctx, "list events due", s.qDue, formatDue(before), limitArg(limit))
}

// ListDeadEvents implements payments.EventStore, over the
// payrail_payments_events_dead_idx index of schema.sql.
func (s *Store) ListDeadEvents(ctx context.Context, after string, limit int) ([]*payments.Payment, error) {
	ctx, op := s.tel.Start(ctx, opListDeadEvents)
	ps, err := s.listDead(ctx, after, limit)
	return ps, s.tel.End(ctx, op, err)
}

func (s *Store) listDead(ctx context.Context, after string, limit int) ([]*payments.Payment, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	return s.list(ctx, "list dead events", s.qDead, after, limitArg(limit))
}

// Ping checks the database connection, for readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := s.pool.Ping(ctx); err != nil {
		return s.fail(ctx, "ping", err)
	}
	return nil
}

// Close implements payments.Store; it closes the pool if Open created it.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return ErrClosed
	}
	if s.ownPool {
		s.pool.Close()
	}
	return nil
}
