package postgres_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/payrail/payrail/internal/testkit"
)

// BenchmarkStore measures the store: Begin+Complete (a request that
// executes) and Replay. Compare with BenchmarkBaseline in the same run.
func BenchmarkStore(b *testing.B) { testkit.BenchmarkIdempotencyStore(b, newHarness(b).harness()) }

// BenchmarkBaseline is the raw cost of the same two writes without the
// store's logic: a plain INSERT then a plain UPDATE by primary key, on a
// table of the same schema, on the same server.
func BenchmarkBaseline(b *testing.B) {
	_, table := peer(b)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testkit.StorePostgresURL())
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	t := pgx.Identifier{table}.Sanitize()
	insert := `INSERT INTO ` + t + ` (merchant, key, fingerprint, state, token, resource_id, lease_expires_at, created_at, expires_at)
VALUES ($1, $2, 'fp', 'in_progress', 't', 'pay', $3, $4, $5)`
	update := `UPDATE ` + t + ` SET state = 'completed', token = '', status_code = 201, headers = $3, body = $4, expires_at = $5
WHERE merchant = $1 AND key = $2`
	headers := map[string]string{"Content-Type": "application/json", "Location": "/payments/pay_bench"}
	body := []byte(`{"id":"pay_bench","status":"captured","amount":1999,"currency":"EUR"}`)
	var seq atomic.Int64
	b.Run("Insert+Update", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				k := fmt.Sprintf("base-%d", seq.Add(1))
				now := time.Now()
				if _, err := pool.Exec(ctx, insert, "bench", k, now.Add(time.Minute), now, now.Add(time.Hour)); err != nil {
					b.Errorf("INSERT: %v", err)
					return
				}
				if _, err := pool.Exec(ctx, update, "bench", k, headers, body, now.Add(time.Hour)); err != nil {
					b.Errorf("UPDATE: %v", err)
					return
				}
			}
		})
	})
}
