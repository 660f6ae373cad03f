package postgres_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/payrail/payrail/internal/testkit"
	"github.com/payrail/payrail/payments"
	"github.com/payrail/payrail/payments/postgres"
)

// newTable migrates a table unique to the test (dropped at its end) and
// returns the store URL naming it; it skips (fails under CI=true) without
// the server.
func newTable(tb testing.TB) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testkit.StorePostgresURL())
	if err == nil {
		err = conn.Ping(ctx)
	}
	testkit.StoreRequirePeer(tb, "PostgreSQL", err)
	table := testkit.StoreUniqueName("pay_test_")
	u, _ := url.Parse(testkit.StorePostgresURL())
	q := u.Query()
	q.Set("table", table)
	u.RawQuery = q.Encode()
	if err := postgres.Migrate(ctx, u.String()); err != nil {
		tb.Fatalf("Migrate: %v", err)
	}
	tb.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+pgx.Identifier{table}.Sanitize()+", "+
			pgx.Identifier{table + "_routing_policy"}.Sanitize())
		_ = conn.Close(context.Background())
	})
	return u.String()
}

func TestConformance(t *testing.T) {
	urls := map[payments.Store]string{}
	testkit.RunPaymentStoreConformance(t, testkit.PaymentStoreHarness{
		Open: func(ctx context.Context, tb testing.TB) (payments.Store, error) {
			u := newTable(tb)
			s, err := payments.OpenStore(ctx, u) // through the registry, as deployments do
			if err == nil {
				urls[s] = u
			}
			return s, err
		},
		Reopen: func(ctx context.Context, tb testing.TB, s payments.Store) (payments.Store, error) {
			return postgres.Open(ctx, urls[s])
		},
		ClosedErrors: true,
	})
}

func TestMissingTable(t *testing.T) {
	newTable(t)
	u, _ := url.Parse(testkit.StorePostgresURL())
	q := u.Query()
	q.Set("table", testkit.StoreUniqueName("pay_absent_"))
	u.RawQuery = q.Encode()
	_, err := payments.OpenStore(context.Background(), u.String())
	if !errors.Is(err, postgres.ErrSchemaMissing) {
		t.Fatalf("OpenStore without schema: %v, want ErrSchemaMissing", err)
	}
	if _, err := payments.OpenStore(context.Background(), "postgres://127.0.0.1/test?table=no-good"); err == nil {
		t.Error("an invalid table name was accepted")
	}
}

func TestPing(t *testing.T) {
	s, err := postgres.Open(context.Background(), newTable(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if err := s.Ping(context.Background()); !errors.Is(err, postgres.ErrClosed) {
		t.Fatalf("Ping after Close: %v", err)
	}
}
