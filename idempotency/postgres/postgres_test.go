package postgres_test

import (
	"context"
	"errors"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/idempotency/driver"
	"github.com/payrail/payrail/idempotency/postgres"
	"github.com/payrail/payrail/internal/testkit"
)

// peer returns a URL of the test server with a fresh table migrated for
// this test (dropped at its end), or skips (fails under CI=true).
func peer(tb testing.TB) (urlstr, table string) {
	tb.Helper()
	base := testkit.StorePostgresURL()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err == nil {
		err = conn.Ping(ctx)
	}
	testkit.StoreRequirePeer(tb, "PostgreSQL ("+testkit.StorePostgresURL()+")", err)
	table = testkit.StoreUniqueName("idem_test_")
	urlstr = withTable(tb, base, table)
	if err := postgres.Migrate(ctx, urlstr); err != nil {
		tb.Fatalf("Migrate: %v", err)
	}
	tb.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+pgx.Identifier{table}.Sanitize())
		_ = conn.Close(context.Background())
	})
	return urlstr, table
}

func withTable(tb testing.TB, base, table string) string {
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatal(err)
	}
	q := u.Query()
	q.Set("table", table)
	u.RawQuery = q.Encode()
	return u.String()
}

// countingHarness opens clients with their own pools whose connections
// count round trips.
type countingHarness struct {
	url, table string
	mu         sync.Mutex
	trips      map[driver.Store]*atomic.Int64
}

func (h *countingHarness) open(ctx context.Context, tb testing.TB) (driver.Store, error) {
	cfg, err := pgxpool.ParseConfig(testkit.StorePostgresURL())
	if err != nil {
		return nil, err
	}
	trips := new(atomic.Int64)
	dial := cfg.ConnConfig.DialFunc
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return testkit.NewStoreCountingConn(c, trips), nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	tb.Cleanup(pool.Close)
	s, err := postgres.New(ctx, pool, postgres.WithTable(h.table))
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.trips[s] = trips
	h.mu.Unlock()
	return s, nil
}

func (h *countingHarness) harness() testkit.IdempotencyHarness {
	return testkit.IdempotencyHarness{
		Open:          h.open,
		SharedClients: true,
		RoundTrips: func(s driver.Store) int64 {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.trips[s].Load()
		},
	}
}

func newHarness(tb testing.TB) *countingHarness {
	u, table := peer(tb)
	return &countingHarness{url: u, table: table, trips: map[driver.Store]*atomic.Int64{}}
}

func TestConformance(t *testing.T) {
	testkit.RunIdempotencyConformance(t, newHarness(t).harness())
}

// TestConformanceOpenedByURL runs the suite on stores opened through the
// registry, as deployments do.
func TestConformanceOpenedByURL(t *testing.T) {
	u, _ := peer(t)
	testkit.RunIdempotencyConformance(t, testkit.IdempotencyHarness{
		Open: func(ctx context.Context, tb testing.TB) (driver.Store, error) {
			return postgres.Open(ctx, u)
		},
		SharedClients: true,
	})
}

func TestPortableOpen(t *testing.T) {
	u, _ := peer(t)
	ctx := context.Background()
	s, err := idempotency.Open(ctx, u)
	if err != nil {
		t.Fatalf("idempotency.Open: %v", err)
	}
	defer s.Close()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	res, err := s.Begin(ctx, &idempotency.BeginRequest{Merchant: "acme", Key: "k", Fingerprint: "fp", ResourceID: "pay_1"})
	if err != nil || res.Outcome != idempotency.Acquired {
		t.Fatalf("Begin: %v %v", res, err)
	}
	recs, err := s.List(ctx, idempotency.Filter{Merchant: "acme"})
	if err != nil || len(recs) != 1 || recs[0].ResourceID != "pay_1" {
		t.Fatalf("List: %v %v", recs, err)
	}
}

func TestMissingTableIsAClearError(t *testing.T) {
	peer(t) // server reachable
	ctx := context.Background()
	u := withTable(t, testkit.StorePostgresURL(), testkit.StoreUniqueName("idem_absent_"))
	_, err := postgres.Open(ctx, u)
	if !errors.Is(err, postgres.ErrSchemaMissing) {
		t.Fatalf("Open without schema: %v, want ErrSchemaMissing", err)
	}
	_, err = idempotency.Open(ctx, u)
	if !errors.Is(err, postgres.ErrSchemaMissing) {
		t.Fatalf("idempotency.Open without schema: %v, want ErrSchemaMissing", err)
	}
}

func TestDroppedTableIsAClearError(t *testing.T) {
	u, table := peer(t)
	ctx := context.Background()
	s, err := postgres.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Pool().Exec(ctx, "DROP TABLE "+pgx.Identifier{table}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	_, err = s.Begin(ctx, &driver.BeginRequest{Merchant: "m", Key: "k", Fingerprint: "f", Token: "t", Lease: time.Second, TTL: time.Hour, Now: time.Now()})
	if !errors.Is(err, postgres.ErrSchemaMissing) {
		t.Fatalf("Begin on a dropped table: %v, want ErrSchemaMissing", err)
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	u, _ := peer(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- postgres.Migrate(ctx, u) }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent Migrate: %v", err)
		}
	}
}

func TestBadURLs(t *testing.T) {
	ctx := context.Background()
	for _, u := range []string{
		"postgres://127.0.0.1/test?table=bad-name",
		"postgres://127.0.0.1/test?table=1abc",
		"postgres://127.0.0.1/test?table=a;drop",
	} {
		if _, err := idempotency.Open(ctx, u); err == nil {
			t.Errorf("Open(%q) succeeded, want an error", u)
		}
	}
	// The password never appears in errors.
	_, err := idempotency.Open(ctx, "postgres://u:s3cr3t@127.0.0.1:1/test?connect_timeout=1")
	if err == nil {
		t.Fatal("Open of a closed port succeeded")
	}
	if msg := err.Error(); containsSecret(msg) {
		t.Errorf("error leaks the password: %s", msg)
	}
}

func containsSecret(s string) bool {
	for i := 0; i+6 <= len(s); i++ {
		if s[i:i+6] == "s3cr3t" {
			return true
		}
	}
	return false
}

func TestSchemaSQL(t *testing.T) {
	sql, err := postgres.SchemaSQL("custom_tbl")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CREATE TABLE IF NOT EXISTS custom_tbl", "custom_tbl_expires_at_idx", "PRIMARY KEY (merchant, key)"} {
		if !contains(sql, want) {
			t.Errorf("schema lacks %q", want)
		}
	}
	if _, err := postgres.SchemaSQL("x y"); err == nil {
		t.Error("SchemaSQL accepted an invalid table name")
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
