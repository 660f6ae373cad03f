package memory

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/payrail/payrail/idempotency/driver"
)

// sameShardKeys returns n keys of merchant "m" that share one shard of s.
func sameShardKeys(t *testing.T, s *Store, n int) []string {
	t.Helper()
	var keys []string
	var target *shard
	for i := 0; len(keys) < n; i++ {
		if i > 100_000 {
			t.Fatal("no keys share a shard")
		}
		k := "k" + strconv.Itoa(i)
		sh := s.shard("m", k)
		if target == nil {
			target = sh
		}
		if sh == target {
			keys = append(keys, k)
		}
	}
	return keys
}

func req(key, token string, now time.Time, ttl time.Duration) *driver.BeginRequest {
	return &driver.BeginRequest{Merchant: "m", Key: key, Fingerprint: "fp", Token: token, ResourceID: "pay_" + key,
		Lease: 10 * time.Second, TTL: ttl, Now: now}
}

func mustBegin(t *testing.T, s *Store, r *driver.BeginRequest, want driver.Outcome) *driver.BeginResult {
	t.Helper()
	res, err := s.Begin(context.Background(), r)
	if err != nil {
		t.Fatalf("Begin %s: %v", r.Key, err)
	}
	if res.Outcome != want {
		t.Fatalf("Begin %s: %v, want %v", r.Key, res.Outcome, want)
	}
	return res
}

func mustComplete(t *testing.T, s *Store, key string, now time.Time) {
	t.Helper()
	if err := s.Complete(context.Background(), "m", key, "t-"+key, &driver.Response{StatusCode: 200}, now, time.Hour); err != nil {
		t.Fatalf("Complete %s: %v", key, err)
	}
}

// present returns which of keys have a record.
func present(s *Store, keys ...string) string {
	out := ""
	for _, k := range keys {
		if _, err := s.Get(context.Background(), "m", k); err == nil {
			out += k + " "
		}
	}
	return out
}

// A full shard evicts expired records at the front of its insertion order
// first, then the oldest completed (or expired) record; in-progress ones
// never.
func TestEviction(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	t.Run("all in progress", func(t *testing.T) {
		s := New(WithMaxEntries(3 * shardCount))
		k := sameShardKeys(t, s, 4)
		for _, key := range k[:3] {
			mustBegin(t, s, req(key, "t-"+key, now, time.Hour), driver.Acquired)
		}
		if _, err := s.Begin(context.Background(), req(k[3], "t", now, time.Hour)); !errors.Is(err, ErrFull) {
			t.Fatalf("Begin on a shard full of in-progress records: %v, want ErrFull", err)
		}
		if got, want := present(s, k...), fmt.Sprint(k[0], " ", k[1], " ", k[2], " "); got != want {
			t.Fatalf("records %q, want %q", got, want)
		}
	})
	t.Run("oldest completed", func(t *testing.T) {
		s := New(WithMaxEntries(3 * shardCount))
		k := sameShardKeys(t, s, 5)
		for _, key := range k[:3] {
			mustBegin(t, s, req(key, "t-"+key, now, time.Hour), driver.Acquired)
		}
		mustComplete(t, s, k[2], now) // completed first, but inserted after k[1]
		mustComplete(t, s, k[1], now)
		mustBegin(t, s, req(k[3], "t-"+k[3], now, time.Hour), driver.Acquired)
		if got, want := present(s, k...), fmt.Sprint(k[0], " ", k[2], " ", k[3], " "); got != want {
			t.Fatalf("after one eviction: records %q, want %q", got, want)
		}
		mustBegin(t, s, req(k[4], "t-"+k[4], now, time.Hour), driver.Acquired)
		if got, want := present(s, k...), fmt.Sprint(k[0], " ", k[3], " ", k[4], " "); got != want {
			t.Fatalf("after two evictions: records %q, want %q", got, want)
		}
		if s.Len() != 3 {
			t.Fatalf("Len %d, want 3", s.Len())
		}
	})
	t.Run("expired first", func(t *testing.T) {
		s := New(WithMaxEntries(3 * shardCount))
		k := sameShardKeys(t, s, 4)
		mustBegin(t, s, req(k[0], "t-"+k[0], now, time.Minute), driver.Acquired) // in progress, expires first
		mustBegin(t, s, req(k[1], "t-"+k[1], now, time.Hour), driver.Acquired)
		mustComplete(t, s, k[1], now)
		mustBegin(t, s, req(k[2], "t-"+k[2], now, time.Hour), driver.Acquired)
		later := now.Add(2 * time.Minute)
		mustBegin(t, s, req(k[3], "t-"+k[3], later, time.Hour), driver.Acquired)
		if got, want := present(s, k...), fmt.Sprint(k[1], " ", k[2], " ", k[3], " "); got != want {
			t.Fatalf("records %q, want %q (the expired in-progress record evicted, not the completed one)", got, want)
		}
	})
	t.Run("released keys", func(t *testing.T) {
		s := New(WithMaxEntries(2 * shardCount))
		k := sameShardKeys(t, s, 4)
		ctx := context.Background()
		for range 50 { // the insertion order accumulates released keys
			mustBegin(t, s, req(k[0], "t", now, time.Hour), driver.Acquired)
			if err := s.Release(ctx, "m", k[0], "t"); err != nil {
				t.Fatal(err)
			}
		}
		mustBegin(t, s, req(k[1], "t-"+k[1], now, time.Hour), driver.Acquired)
		mustBegin(t, s, req(k[2], "t-"+k[2], now, time.Hour), driver.Acquired)
		if _, err := s.Begin(ctx, req(k[3], "t", now, time.Hour)); !errors.Is(err, ErrFull) {
			t.Fatalf("Begin: %v, want ErrFull", err)
		}
		mustComplete(t, s, k[1], now)
		mustBegin(t, s, req(k[3], "t-"+k[3], now, time.Hour), driver.Acquired)
		if got, want := present(s, k...), fmt.Sprint(k[2], " ", k[3], " "); got != want {
			t.Fatalf("records %q, want %q", got, want)
		}
		sh := s.shard("m", k[0])
		if sh.used > 2 {
			t.Errorf("%d slots used for at most 2 live records", sh.used)
		}
	})
}

// Freed slots are reused and cleared, so that a shard's storage is bounded
// by its live records and keeps nothing of the records it dropped.
func TestSlotReuse(t *testing.T) {
	s := New()
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	k := sameShardKeys(t, s, 3)
	sh := s.shard("m", k[0])
	for i := range 1000 {
		key := k[i%3]
		mustBegin(t, s, req(key, "t", now, time.Hour), driver.Acquired)
		if i%2 == 0 {
			if err := s.Release(ctx, "m", key, "t"); err != nil {
				t.Fatal(err)
			}
			continue
		}
		rec, err := s.Get(ctx, "m", key)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	if sh.used != 1 || len(sh.free) != 1 || s.Len() != 0 {
		t.Fatalf("used %d, free %d, Len %d; want 1, 1, 0", sh.used, len(sh.free), s.Len())
	}
	if *sh.slot(sh.free[0]) != (record{}) {
		t.Fatalf("freed slot keeps %+v", *sh.slot(sh.free[0]))
	}
	// Many live records: slots grow chunk by chunk and are all distinct.
	for i := range 3 * chunkSize {
		mustBegin(t, s, &driver.BeginRequest{Merchant: "n", Key: strconv.Itoa(i), Fingerprint: strconv.Itoa(i),
			Lease: time.Second, TTL: time.Hour, Now: now}, driver.Acquired)
	}
	for i := range 3 * chunkSize {
		rec, err := s.Get(ctx, "n", strconv.Itoa(i))
		if err != nil || rec.Fingerprint != strconv.Itoa(i) {
			t.Fatalf("record %d: %+v %v", i, rec, err)
		}
	}
}

// Times come back as the same instants, over the whole time.Time range.
func TestTimesRoundTrip(t *testing.T) {
	s := New()
	ctx := context.Background()
	for i, now := range []time.Time{
		time.Now(), // with a monotonic reading
		time.Date(2030, 1, 2, 3, 4, 5, 999_999_999, time.FixedZone("X", 5*3600+1800)),
		time.Unix(0, 1),
		{}, // zero
		time.Date(1500, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(2260, 1, 1, 0, 0, 0, 0, time.UTC), // + TTL: past int64 nanoseconds
	} {
		key := strconv.Itoa(i)
		r := req(key, "t", now, math.MaxInt64)
		r.Lease = 1500 * time.Millisecond
		rec := mustBegin(t, s, r, driver.Acquired).Record
		for _, c := range []struct {
			what      string
			got, want time.Time
		}{
			{"CreatedAt", rec.CreatedAt, now},
			{"LeaseExpiresAt", rec.LeaseExpiresAt, now.Add(r.Lease)},
			{"ExpiresAt", rec.ExpiresAt, now.Add(r.TTL)},
		} {
			if !c.got.Equal(c.want) {
				t.Errorf("%v: %s %v, want %v", now, c.what, c.got, c.want)
			}
		}
		// Still in progress one nanosecond before the lease ends, then taken over.
		mustBegin(t, s, req(key, "t2", now.Add(r.Lease-1), time.Hour), driver.InProgress)
		mustBegin(t, s, req(key, "t3", now.Add(r.Lease), time.Hour), driver.Reacquired)
		got, err := s.Get(ctx, "m", key)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, got); err != nil {
			t.Errorf("%v: Delete of the record as read: %v", now, err)
		}
	}
}

// Records handed out are copies: changing them changes nothing stored.
func TestRecordsAreCopies(t *testing.T) {
	s := New()
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	res := mustBegin(t, s, req("a", "t", now, time.Hour), driver.Acquired)
	res.Record.Token, res.Record.Fingerprint, res.Record.State = "x", "y", driver.StateCompleted
	got, err := s.Get(ctx, "m", "a")
	if err != nil {
		t.Fatal(err)
	}
	if got.Token != "t" || got.Fingerprint != "fp" || got.State != driver.StateInProgress {
		t.Fatalf("stored record changed through Begin's result: %+v", got)
	}
	got.Token = "z"
	list, err := s.List(ctx, driver.Filter{})
	if err != nil || len(list) != 1 || list[0].Token != "t" {
		t.Fatalf("List after changing Get's record: %+v %v", list, err)
	}
	list[0].Token = "w"
	if err := s.Complete(ctx, "m", "a", "t", nil, now, time.Hour); err != nil { // "t" still owns the key
		t.Fatal(err)
	}
}

// The shard hash spreads keys of common shapes evenly.
func TestShardSpread(t *testing.T) {
	s := New()
	shapes := map[string]func(i int) (string, string){
		"counter": func(i int) (string, string) { return "m", "k" + strconv.Itoa(i) },
		"merchants": func(i int) (string, string) {
			return "merchant-" + strconv.Itoa(i%7), "order-" + strconv.Itoa(1_000_000+i)
		},
		"suffix": func(i int) (string, string) { return "m", "pay_" + strconv.Itoa(1_000_000+i) + "XYZ:authorize" },
		"uuid-like": func(i int) (string, string) {
			return "acct_1Nv0FGQ9RKHgCVdK", fmt.Sprintf("%08x-0d7b-4f7e-9a63-3b8f5e0c2d41", i)
		},
		"same key":   func(i int) (string, string) { return "merchant-" + strconv.Itoa(i), "order-1" },
		"empty keys": func(i int) (string, string) { return "m" + strconv.Itoa(i), "" },
	}
	for name, f := range shapes {
		// Distinct keys, 676 per shard on average: with a random (seeded)
		// hash the bounds below are more than 10 standard deviations away.
		const n = 676 * shardCount
		var count [shardCount]int
		for i := range n {
			m, k := f(i)
			sh := s.shard(m, k)
			for j := range s.shards {
				if sh == &s.shards[j] {
					count[j]++
				}
			}
		}
		for j, c := range count {
			if c < n/shardCount/2 || c > n/shardCount*2 {
				t.Errorf("%s: shard %d has %d of %d keys: %v", name, j, c, n, count)
				break
			}
		}
	}
}
