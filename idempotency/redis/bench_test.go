package redis_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/internal/testkit"
)

// BenchmarkStore measures the store: Begin+Complete (a request that
// executes) and Replay. Compare with BenchmarkBaseline in the same run.
func BenchmarkStore(b *testing.B) { testkit.BenchmarkIdempotencyStore(b, newHarness(b)) }

// BenchmarkStoreOpenedByURL is BenchmarkStore on a store opened by URL, as
// idempotency.Open and the server open it (round trips counted by a hook).
func BenchmarkStoreOpenedByURL(b *testing.B) {
	u, _ := peer(b)
	testkit.BenchmarkIdempotencyStore(b, urlHarness(u))
}

// BenchmarkBaseline is the raw cost of the same two writes without the
// store's logic: SET NX PX (claim) then SET XX PX (store the response), on
// the same server, with the same response size.
func BenchmarkBaseline(b *testing.B) {
	_, prefix := peer(b)
	o, err := goredis.ParseURL(testkit.StoreRedisURL())
	if err != nil {
		b.Fatal(err)
	}
	c := goredis.NewClient(o)
	defer c.Close()
	body := []byte(`{"id":"pay_bench","status":"captured","amount":1999,"currency":"EUR"}`)
	var seq atomic.Int64
	b.Run("SetNX+Set", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			for pb.Next() {
				k := fmt.Sprintf("%sbase-%d", prefix, seq.Add(1))
				if ok, err := c.SetNX(ctx, k, "in_progress:token", time.Minute).Result(); err != nil || !ok {
					b.Errorf("SETNX: %v %v", ok, err)
					return
				}
				if err := c.SetArgs(ctx, k, body, goredis.SetArgs{Mode: "XX", TTL: time.Hour}).Err(); err != nil {
					b.Errorf("SET: %v", err)
					return
				}
			}
		})
	})
}
