package redis_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/idempotency/driver"
	"github.com/payrail/payrail/idempotency/redis"
	"github.com/payrail/payrail/internal/testkit"
)

// peer returns the test server's URL with a key prefix unique to this test
// (its keys are deleted at the end), or skips (fails under CI=true).
func peer(tb testing.TB) (urlstr, prefix string) {
	tb.Helper()
	o, err := goredis.ParseURL(testkit.StoreRedisURL())
	if err != nil {
		tb.Fatalf("PAYRAIL_TEST_REDIS_URL: %v", err)
	}
	c := goredis.NewClient(o)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	testkit.StoreRequirePeer(tb, "Redis ("+o.Addr+")", c.Ping(ctx).Err())
	prefix = testkit.StoreUniqueName("payrail-test:") + ":"
	tb.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		_ = c.Close()
	})
	sep := "?"
	if strings.Contains(testkit.StoreRedisURL(), "?") {
		sep = "&"
	}
	return testkit.StoreRedisURL() + sep + "prefix=" + prefix, prefix
}

type countingHarness struct {
	prefix string
	mu     sync.Mutex
	trips  map[driver.Store]*atomic.Int64
}

func (h *countingHarness) open(ctx context.Context, tb testing.TB) (driver.Store, error) {
	o, err := goredis.ParseURL(testkit.StoreRedisURL())
	if err != nil {
		return nil, err
	}
	trips := new(atomic.Int64)
	d := &net.Dialer{Timeout: 5 * time.Second}
	o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return testkit.NewStoreCountingConn(c, trips), nil
	}
	c := goredis.NewClient(o)
	tb.Cleanup(func() { _ = c.Close() })
	s := redis.New(c, redis.WithPrefix(h.prefix))
	h.mu.Lock()
	h.trips[s] = trips
	h.mu.Unlock()
	return s, nil
}

func newHarness(tb testing.TB) testkit.IdempotencyHarness {
	_, prefix := peer(tb)
	h := &countingHarness{prefix: prefix, trips: map[driver.Store]*atomic.Int64{}}
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

func TestConformance(t *testing.T) { testkit.RunIdempotencyConformance(t, newHarness(t)) }

// TestConformanceOpenedByURL runs the suite on stores opened by URL, their
// round trips counted by a go-redis hook.
func TestConformanceOpenedByURL(t *testing.T) {
	u, _ := peer(t)
	testkit.RunIdempotencyConformance(t, urlHarness(u))
}

func TestRecordsExpireInRedis(t *testing.T) {
	u, prefix := peer(t)
	ctx := context.Background()
	s, err := redis.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	if _, err := s.Begin(ctx, &driver.BeginRequest{Merchant: "m", Key: "k", Fingerprint: "f", Token: "t",
		Lease: time.Second, TTL: time.Hour, Now: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, driver.CompleteRequest{Merchant: "m", Key: "k", Token: "t", Response: &driver.Response{StatusCode: 200}, Now: now, TTL: 90 * time.Second}); err != nil {
		t.Fatal(err)
	}
	ttl, err := s.Client().PTTL(ctx, prefix+"m:k").Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 80*time.Second || ttl > 90*time.Second {
		t.Fatalf("PTTL of a completed record = %s, want about 90s (the completion TTL)", ttl)
	}
}

func TestPortableOpenAndBadURLs(t *testing.T) {
	u, _ := peer(t)
	ctx := context.Background()
	s, err := idempotency.Open(ctx, u)
	if err != nil {
		t.Fatalf("idempotency.Open: %v", err)
	}
	defer s.Close()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := idempotency.Open(ctx, "redis://127.0.0.1:6379/0?bogus_option=1"); err == nil {
		t.Error("an unknown URL option was accepted")
	}
	_, err = idempotency.Open(ctx, "redis://:s3cr3t@127.0.0.1:1/0?dial_timeout=200ms")
	if err == nil {
		t.Fatal("Open of a closed port succeeded")
	}
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("error leaks the password: %v", err)
	}
}

func TestForeignKeyTypeIsAnError(t *testing.T) {
	u, prefix := peer(t)
	ctx := context.Background()
	s, err := redis.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// A value that is not a record, and a key of another type (a hash, as
	// earlier versions of the store wrote): errors, never a new claim.
	s.Client().Set(ctx, prefix+"m:k", "not a record", time.Minute)
	s.Client().HSet(ctx, prefix+"m:h", "st", "completed", "fp", "f")
	s.Client().Expire(ctx, prefix+"m:h", time.Minute)
	for _, k := range []string{"k", "h"} {
		res, err := s.Begin(ctx, &driver.BeginRequest{Merchant: "m", Key: k, Fingerprint: "f", Token: "t",
			Lease: time.Second, TTL: time.Hour, Now: time.Now()})
		if err == nil || errors.Is(err, driver.ErrLeaseLost) {
			t.Fatalf("Begin over the foreign key %q: %v %v, want an error", k, res, err)
		}
		if err := s.Complete(ctx, driver.CompleteRequest{Merchant: "m", Key: k, Token: "t", Now: time.Now(), TTL: time.Hour}); err == nil {
			t.Fatalf("Complete over the foreign key %q succeeded", k)
		}
	}
	if v, _ := s.Client().Get(ctx, prefix+"m:k").Result(); v != "not a record" {
		t.Fatalf("the foreign value became %q", v)
	}
}
