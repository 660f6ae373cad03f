package bench_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/idempotency"
	_ "github.com/payrail/payrail/idempotency/redis" // the redis:// idempotency store
	"github.com/payrail/payrail/internal/testkit"
	"github.com/payrail/payrail/payments"
	"github.com/payrail/payrail/payments/postgres"
)

// respBody is the stored response of the idempotency rows, a payment's size.
var respBody = []byte(`{"id":"pay_bench","merchant":"m","amount":1999,"currency":"EUR","payment_method":"pm_card_visa","origin":"web","capture_method":"automatic","status":"captured","amount_captured":1999,"amount_refunded":0,"refunds":[],"metadata":{"order":"42"},"created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}`)

// redisPeer checks the Redis peer (skips, or fails under CI=true, without
// it) and returns a raw client and a key prefix unique to tb, whose keys
// are deleted at its end.
func redisPeer(tb testing.TB) (*goredis.Client, string) {
	tb.Helper()
	o, err := goredis.ParseURL(testkit.StoreRedisURL())
	if err != nil {
		tb.Fatalf("redis URL: %v", err)
	}
	c := goredis.NewClient(o)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	testkit.StoreRequirePeer(tb, "Redis ("+o.Addr+")", c.Ping(ctx).Err())
	prefix := testkit.StoreUniqueName("payrail-bench:") + ":"
	tb.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		_ = c.Close()
	})
	return c, prefix
}

// openIdem opens the Redis idempotency store by URL, through the portable
// API, as the reference server does.
func openIdem(b *testing.B, prefix string) *idempotency.Store {
	sep := "?"
	if strings.Contains(testkit.StoreRedisURL(), "?") {
		sep = "&"
	}
	s, err := idempotency.Open(context.Background(), testkit.StoreRedisURL()+sep+"prefix="+url.QueryEscape(prefix))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

var idemSeq atomic.Int64

// benchIdemExecute is a request that executes: Begin (acquired) then
// Complete, on a new key each time.
func benchIdemExecute(b *testing.B) {
	_, prefix := redisPeer(b)
	s := openIdem(b, prefix)
	resp := &idempotency.Response{StatusCode: 201, Header: map[string]string{"Content-Type": "application/json"}, Body: respBody}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			k := fmt.Sprintf("bc-%d", idemSeq.Add(1))
			now := time.Now()
			res, err := s.Begin(ctx, &idempotency.BeginRequest{Merchant: "m", Key: k, Fingerprint: "fp", Token: "t",
				ResourceID: "pay", Lease: time.Minute, TTL: time.Hour, Now: now})
			if err != nil || res.Outcome != idempotency.Acquired {
				b.Errorf("Begin: %v %v", res, err)
				return
			}
			if err := s.Complete(ctx, idempotency.CompleteRequest{Merchant: "m", Key: k, Token: "t", Response: resp, Now: now, TTL: time.Hour}); err != nil {
				b.Errorf("Complete: %v", err)
				return
			}
		}
	})
}

// benchRedisSetNXSet is the raw cost of the same two writes: SET NX PX
// (claim) then SET XX PX (store the response).
func benchRedisSetNXSet(b *testing.B) {
	c, prefix := redisPeer(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			k := fmt.Sprintf("%sbase-%d", prefix, idemSeq.Add(1))
			if ok, err := c.SetNX(ctx, k, "in_progress:token", time.Minute).Result(); err != nil || !ok {
				b.Errorf("SET NX: %v %v", ok, err)
				return
			}
			if err := c.SetArgs(ctx, k, respBody, goredis.SetArgs{Mode: "XX", TTL: time.Hour}).Err(); err != nil {
				b.Errorf("SET XX: %v", err)
				return
			}
		}
	})
}

// benchIdemReplay is a retried request: Begin of a completed key (replay).
func benchIdemReplay(b *testing.B) {
	_, prefix := redisPeer(b)
	s := openIdem(b, prefix)
	ctx := context.Background()
	now := time.Now()
	if _, err := s.Begin(ctx, &idempotency.BeginRequest{Merchant: "m", Key: "replayed", Fingerprint: "fp", Token: "t",
		ResourceID: "pay", Lease: time.Minute, TTL: time.Hour, Now: now}); err != nil {
		b.Fatal(err)
	}
	resp := &idempotency.Response{StatusCode: 201, Header: map[string]string{"Content-Type": "application/json"}, Body: respBody}
	if err := s.Complete(ctx, idempotency.CompleteRequest{Merchant: "m", Key: "replayed", Token: "t", Response: resp, Now: now, TTL: time.Hour}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := s.Begin(ctx, &idempotency.BeginRequest{Merchant: "m", Key: "replayed", Fingerprint: "fp", Token: "t2",
				ResourceID: "pay", Lease: time.Minute, TTL: time.Hour, Now: time.Now()})
			if err != nil || res.Outcome != idempotency.Replay {
				b.Errorf("Begin: %v %v", res, err)
				return
			}
		}
	})
}

// benchRedisGet is one raw GET of a stored response.
func benchRedisGet(b *testing.B) {
	c, prefix := redisPeer(b)
	ctx := context.Background()
	if err := c.Set(ctx, prefix+"replayed", respBody, time.Hour).Err(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if v, err := c.Get(ctx, prefix+"replayed").Bytes(); err != nil || len(v) != len(respBody) {
				b.Errorf("GET: %d bytes, %v", len(v), err)
				return
			}
		}
	})
}

// pgTable migrates a payment table unique to tb (dropped at its end) with
// postgres.Migrate and returns the store URL naming it; it skips (fails
// under CI=true) without the server.
func pgTable(tb testing.TB) (storeURL, table string) {
	tb.Helper()
	conn := pgPeer(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	table = testkit.StoreUniqueName("pay_bench_")
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
	})
	return u.String(), table
}

var paySeq atomic.Int64

// newPayment returns a pending payment with a new id.
func newPayment() *payments.Payment {
	now := time.Now().UTC()
	return &payments.Payment{ID: fmt.Sprintf("pay_%d_%d", now.UnixNano(), paySeq.Add(1)), Merchant: "m", Amount: 1999,
		Currency: "EUR", PaymentMethod: "pm_card_visa", Origin: "web", CaptureMethod: payments.CaptureAutomatic,
		Status: payments.StatusPending, Metadata: map[string]string{"order": "42"}, CreatedAt: now, UpdatedAt: now}
}

// benchPgStore is the payment store opened by URL (payments.OpenStore):
// Create a pending payment, then Update it to captured.
func benchPgStore(b *testing.B) {
	u, _ := pgTable(b)
	s, err := payments.OpenStore(context.Background(), u)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			p := newPayment()
			if err := s.Create(ctx, p); err != nil {
				b.Errorf("Create: %v", err)
				return
			}
			p.Status, p.AmountCaptured, p.UpdatedAt = payments.StatusCaptured, p.Amount, time.Now().UTC()
			if err := s.Update(ctx, p); err != nil {
				b.Errorf("Update: %v", err)
				return
			}
		}
	})
}

// benchPgRaw is the same two writes with raw pgx on a pgxpool with its
// defaults, on a table of the same schema: INSERT … ON CONFLICT DO NOTHING
// and an UPDATE conditional on the version, the payment encoded with
// encoding/json each time as an application would.
func benchPgRaw(b *testing.B) {
	_, table := pgTable(b)
	pool, err := pgxpool.New(context.Background(), testkit.StorePostgresURL())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	if err := pool.Ping(context.Background()); err != nil { // connect, as OpenStore does
		b.Fatal(err)
	}
	t := pgx.Identifier{table}.Sanitize()
	insert := `INSERT INTO ` + t + ` (id, merchant, status, amount, currency, version, created_at, updated_at, payment)
VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8) ON CONFLICT (id) DO NOTHING`
	update := `UPDATE ` + t + ` SET status = $3, updated_at = $4, payment = $5, version = version + 1
WHERE id = $1 AND version = $2`
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			p := newPayment()
			doc, _ := json.Marshal(p)
			tag, err := pool.Exec(ctx, insert, p.ID, p.Merchant, string(p.Status), p.Amount, p.Currency, p.CreatedAt, p.UpdatedAt, doc)
			if err != nil || tag.RowsAffected() != 1 {
				b.Errorf("INSERT: %v %v", tag, err)
				return
			}
			p.Status, p.AmountCaptured, p.UpdatedAt = payments.StatusCaptured, p.Amount, time.Now().UTC()
			doc, _ = json.Marshal(p)
			tag, err = pool.Exec(ctx, update, p.ID, 1, string(p.Status), p.UpdatedAt, doc)
			if err != nil || tag.RowsAffected() != 1 {
				b.Errorf("UPDATE: %v %v", tag, err)
				return
			}
		}
	})
}

// pgPeer checks the PostgreSQL peer (skips, or fails under CI=true,
// without it) and returns a connection closed at tb's end.
func pgPeer(tb testing.TB) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testkit.StorePostgresURL())
	if err == nil {
		err = conn.Ping(ctx)
	}
	testkit.StoreRequirePeer(tb, "PostgreSQL", err)
	tb.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}
