package redis_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/idempotency/driver"
	"github.com/payrail/payrail/idempotency/redis"
	"github.com/payrail/payrail/internal/testkit"
)

// commandLog is a go-redis hook that records every round trip the client
// makes: a command, or a whole pipeline, is one.
type commandLog struct {
	mu    sync.Mutex
	trips []string // command names; a pipeline is "pipeline:<names>"
	errs  []string
	total int64 // round trips ever recorded
}

func (l *commandLog) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (l *commandLog) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		err := next(ctx, cmd)
		l.add(cmd.Name(), err)
		return err
	}
}

func (l *commandLog) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		err := next(ctx, cmds)
		names := make([]string, len(cmds))
		for i, c := range cmds {
			names[i] = c.Name()
		}
		l.add("pipeline:"+strings.Join(names, ","), err)
		return err
	}
}

func (l *commandLog) add(name string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.trips = append(l.trips, name)
	l.total++
	if err != nil && err != goredis.Nil {
		l.errs = append(l.errs, name+": "+err.Error())
	}
}

// count returns how many round trips the hook has seen.
func (l *commandLog) count() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// urlHarness opens stores by URL (redis.Open) and counts their round trips
// with a commandLog hook on each store's client.
func urlHarness(u string) testkit.IdempotencyHarness {
	var (
		mu   sync.Mutex
		logs = map[driver.Store]*commandLog{}
	)
	return testkit.IdempotencyHarness{
		Open: func(ctx context.Context, tb testing.TB) (driver.Store, error) {
			s, err := redis.Open(ctx, u)
			if err != nil {
				return nil, err
			}
			l := new(commandLog)
			s.Client().AddHook(l)
			mu.Lock()
			logs[s] = l
			mu.Unlock()
			return s, nil
		},
		SharedClients: true,
		RoundTrips: func(s driver.Store) int64 {
			mu.Lock()
			defer mu.Unlock()
			return logs[s].count()
		},
	}
}

// take returns the round trips and errors recorded since the last take.
func (l *commandLog) take() (trips, errs []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	trips, errs = l.trips, l.errs
	l.trips, l.errs = nil, nil
	return trips, errs
}

// TestRoundTripsOpenedByURL checks the driver contract on the wire, counted
// by a go-redis hook: a request that executes costs exactly two round trips
// (Begin, a SET NX GET; Complete, an EVALSHA that the server answers without
// NOSCRIPT) and a replay one (the SET NX GET) — for a store opened by URL (how the server and
// idempotency.Open open it) and for a store built from a client in a process
// that has opened stores by URL before (the scripts are shared).
func TestRoundTripsOpenedByURL(t *testing.T) {
	u, _ := peer(t)
	ctx := context.Background()
	// Open through the portable API first: the store the server uses.
	portable, err := idempotency.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer portable.Close()
	byURL, err := redis.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer byURL.Close()
	o, err := goredis.ParseURL(strings.Split(u, "?")[0])
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(o)
	defer c.Close()
	fromClient := redis.New(c, redis.WithPrefix(byURL.Prefix()))

	for _, tc := range []struct {
		name string
		s    *redis.Store
	}{{"OpenedByURL", byURL}, {"NewAfterOpenByURL", fromClient}} {
		t.Run(tc.name, func(t *testing.T) {
			log := new(commandLog)
			tc.s.Client().AddHook(log)
			// A connection's handshake (HELLO, CLIENT SETINFO) is not a request's.
			if err := tc.s.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			log.take()
			m := "m-" + tc.name
			for i := range 3 {
				k := "k" + string(rune('0'+i))
				now := time.Now()
				res, err := tc.s.Begin(ctx, &driver.BeginRequest{Merchant: m, Key: k, Fingerprint: "fp", Token: "t",
					ResourceID: "pay", Lease: time.Minute, TTL: time.Hour, Now: now})
				if err != nil || res.Outcome != driver.Acquired {
					t.Fatalf("Begin: %v %v", res, err)
				}
				if err := tc.s.Complete(ctx, driver.CompleteRequest{Merchant: m, Key: k, Token: "t", Response: &driver.Response{StatusCode: 201, Body: []byte(`{"id":"pay"}`)}, Now: now, TTL: time.Hour}); err != nil {
					t.Fatalf("Complete: %v", err)
				}
				trips, errs := log.take()
				if len(trips) != 2 || trips[0] != "set" || trips[1] != "evalsha" || len(errs) != 0 {
					t.Fatalf("executed request: round trips %q (errors %q), want exactly [set evalsha] without errors", trips, errs)
				}
				res, err = tc.s.Begin(ctx, &driver.BeginRequest{Merchant: m, Key: k, Fingerprint: "fp", Token: "t2",
					ResourceID: "pay", Lease: time.Minute, TTL: time.Hour, Now: time.Now()})
				if err != nil || res.Outcome != driver.Replay || string(res.Record.Response.Body) != `{"id":"pay"}` {
					t.Fatalf("replay Begin: %v %v", res, err)
				}
				trips, errs = log.take()
				if len(trips) != 1 || trips[0] != "set" || len(errs) != 0 {
					t.Fatalf("replay: round trips %q (errors %q), want exactly [set] without errors", trips, errs)
				}
			}
		})
	}
}
