package memory

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/idempotency"
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
	if err := s.Complete(context.Background(), driver.CompleteRequest{Merchant: "m", Key: key, Token: "t-" + key, Response: &driver.Response{StatusCode: 200}, Now: now, TTL: time.Hour}); err != nil {
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

// fill begins n keys "k0".."k<n-1>" at now with ttl, completing them
// (as one request each, with a response naming the key) unless inProgress.
func fill(t *testing.T, s *Store, n int, now time.Time, ttl time.Duration, inProgress bool) []string {
	t.Helper()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
		mustBegin(t, s, req(keys[i], "t-"+keys[i], now, ttl), driver.Acquired)
		if !inProgress {
			resp := &driver.Response{StatusCode: 201, Body: []byte(keys[i])}
			if err := s.Complete(context.Background(), driver.CompleteRequest{Merchant: "m", Key: keys[i], Token: "t-" + keys[i], Response: resp, Now: now, TTL: ttl}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return keys
}

// wantFull checks that Begin of a new key at now is refused with ErrFull,
// without naming the key.
func wantFull(t *testing.T, s *Store, key string, now time.Time) {
	t.Helper()
	key = "never-stored-" + key
	res, err := s.Begin(context.Background(), req(key, "t-"+key, now, time.Hour))
	if !errors.Is(err, idempotency.ErrFull) || !errors.Is(err, ErrFull) {
		t.Fatalf("Begin %s of a full store: %v %v, want ErrFull", key, res, err)
	}
	if strings.Contains(err.Error(), key) {
		t.Errorf("error names the key: %v", err)
	}
}

// A full store refuses new keys and forgets no unexpired record, completed
// or in progress; expired records make room, first as they fall due.
func TestFull(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	const n, ttl = 50, time.Hour
	t.Run("completed records are kept for their TTL", func(t *testing.T) {
		s := New(WithMaxEntries(n))
		keys := fill(t, s, n, now, ttl, false)
		for _, at := range []time.Time{now, now.Add(ttl / 2), now.Add(ttl - 1)} {
			wantFull(t, s, "new", at)
			for _, k := range keys { // every retry still replays its response
				res := mustBegin(t, s, req(k, "t-retry", at, ttl), driver.Replay)
				if string(res.Record.Response.Body) != k {
					t.Fatalf("replay of %s: %q", k, res.Record.Response.Body)
				}
			}
		}
		if s.Len() != n {
			t.Fatalf("Len %d, want %d", s.Len(), n)
		}
		// Expired, they make room for new keys, one each.
		later := now.Add(ttl)
		for i := range n {
			mustBegin(t, s, req("new"+strconv.Itoa(i), "t", later, ttl), driver.Acquired)
		}
		wantFull(t, s, "one-too-many", later)
		if got := present(s, keys...); got != "" {
			t.Fatalf("expired records kept: %q", got)
		}
	})
	t.Run("in-progress records are never removed", func(t *testing.T) {
		s := New(WithMaxEntries(n))
		keys := fill(t, s, n, now, ttl, true)
		wantFull(t, s, "new", now)
		// Leases lapsed (crashed requests): the records stay, so that a retry
		// resumes the same resource.
		at := now.Add(ttl / 2)
		wantFull(t, s, "new", at)
		for _, k := range keys {
			res := mustBegin(t, s, req(k, "t2-"+k, at, ttl), driver.Reacquired)
			if res.Record.ResourceID != "pay_"+k {
				t.Fatalf("resumed %s as %s", k, res.Record.ResourceID)
			}
		}
		// A released key makes room.
		if err := s.Release(ctx, "m", keys[7], "t2-"+keys[7]); err != nil {
			t.Fatal(err)
		}
		mustBegin(t, s, req("new", "t", at, ttl), driver.Acquired)
		wantFull(t, s, "new2", at)
		mustBegin(t, s, req("new2", "t", now.Add(ttl), ttl), driver.Acquired) // k0 expired
	})
	t.Run("the record that expired goes, whatever its place", func(t *testing.T) {
		s := New(WithMaxEntries(4))
		// a: begun first, completed half an hour later: expires at 1h30.
		mustBegin(t, s, req("a", "t-a", now, ttl), driver.Acquired)
		// b: begun next, in progress: expires at 1h01.
		mustBegin(t, s, req("b", "t-b", now.Add(time.Minute), ttl), driver.Acquired)
		if err := s.Complete(ctx, driver.CompleteRequest{Merchant: "m", Key: "a", Token: "t-a", Response: &driver.Response{StatusCode: 201}, Now: now.Add(30 * time.Minute), TTL: ttl}); err != nil {
			t.Fatal(err)
		}
		// c: a shorter TTL, inserted last: expires first, at 0h40.
		mustBegin(t, s, req("c", "t-c", now.Add(30*time.Minute), 10*time.Minute), driver.Acquired)
		mustBegin(t, s, req("d", "t-d", now.Add(30*time.Minute), ttl), driver.Acquired) // 1h30
		for _, step := range []struct {
			at        time.Duration
			key, want string
		}{
			{39 * time.Minute, "", "a b c d "},
			{40 * time.Minute, "e", "a b d e "}, // c expired
			{60 * time.Minute, "", "a b d e "},
			{61 * time.Minute, "f", "a d e f "}, // b expired, a was extended
			{89 * time.Minute, "", "a d e f "},
			{90 * time.Minute, "g", "e f g "}, // a and d expired: two reclaimed per new key
		} {
			at := now.Add(step.at)
			if step.key == "" {
				wantFull(t, s, "x", at)
			} else {
				mustBegin(t, s, req(step.key, "t", at, ttl), driver.Acquired)
			}
			if got := present(s, "a", "b", "c", "d", "e", "f", "g"); got != step.want {
				t.Fatalf("at %v: records %q, want %q", step.at, got, step.want)
			}
		}
	})
	t.Run("expired records are reclaimed before the store is full", func(t *testing.T) {
		s := New(WithMaxEntries(1000))
		fill(t, s, 100, now, time.Minute, false)
		later := now.Add(2 * time.Minute)
		for i := range 100 {
			mustBegin(t, s, req("new"+strconv.Itoa(i), "t", later, ttl), driver.Acquired)
		}
		if s.Len() != 100 {
			t.Fatalf("Len %d: expired records kept", s.Len())
		}
	})
	t.Run("released keys", func(t *testing.T) {
		s := New(WithMaxEntries(2))
		for range 500 { // the expiry queue accumulates stale entries
			mustBegin(t, s, req("a", "t", now, time.Hour), driver.Acquired)
			if err := s.Release(ctx, "m", "a", "t"); err != nil {
				t.Fatal(err)
			}
		}
		mustBegin(t, s, req("b", "t-b", now, time.Hour), driver.Acquired)
		mustBegin(t, s, req("c", "t-c", now, time.Hour), driver.Acquired)
		wantFull(t, s, "d", now)
		mustComplete(t, s, "b", now)
		wantFull(t, s, "d", now)
		if got := present(s, "a", "b", "c", "d"); got != "b c " {
			t.Fatalf("records %q", got)
		}
		sh := s.shard("m", "a")
		if sh.used > 2 || len(sh.order) > 2*2+64 {
			t.Errorf("%d slots used and %d queue entries for 2 live records", sh.used, len(sh.order))
		}
	})
}

// A bound below 2048 records is exact: one shard. Larger ones are spread
// over up to shardCount shards of at least minShardRecords.
func TestBound(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for _, n := range []int{1, 7, 2047} {
		s := New(WithMaxEntries(n))
		fill(t, s, n, now, time.Hour, false)
		wantFull(t, s, "new", now)
	}
	for _, c := range []struct{ max, shards, limit int }{
		{2048, 2, 1024}, {5000, 4, 1250}, {32 * 1024, 32, 1024}, {DefaultMaxEntries, 32, (DefaultMaxEntries + 31) / 32},
	} {
		s := New(WithMaxEntries(c.max))
		if shards := 1 << (64 - s.shift); shards != c.shards || s.limit != c.limit {
			t.Errorf("max %d: %d shards of %d, want %d of %d", c.max, shards, s.limit, c.shards, c.limit)
		}
	}
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
	if !reflect.ValueOf(*sh.slot(sh.free[0])).IsZero() {
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
	if err := s.Complete(ctx, driver.CompleteRequest{Merchant: "m", Key: "a", Token: "t", Response: nil, Now: now, TTL: time.Hour}); err != nil { // "t" still owns the key
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

// Random operations on a small store, with TTLs of several lengths (so that
// entries arrive out of expiry order), checked against a model: Begin of a new key is refused exactly
// when the store holds its bound of unexpired records, and every unexpired
// record is there, completed ones replaying their response.
func TestFullModel(t *testing.T) {
	const bound = 40
	ttls := []time.Duration{time.Minute, 7 * time.Minute, time.Hour, 61 * time.Minute, 3 * time.Hour}
	type rec struct {
		expires   time.Time
		completed bool
		token     string
	}
	refused, maxRuns := 0, 0
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		s := New(WithMaxEntries(bound))
		ctx := context.Background()
		model := map[string]*rec{}
		now := time.Unix(1_700_000_000, 0)
		live := func() (n int) {
			for _, r := range model {
				if now.Before(r.expires) {
					n++
				}
			}
			return n
		}
		for op := range 3000 {
			key := "k" + strconv.Itoa(rng.IntN(200))
			r := model[key]
			if r != nil && !now.Before(r.expires) {
				delete(model, key)
				r = nil
			}
			switch x := rng.IntN(10); {
			case x < 5: // Begin
				ttl := ttls[rng.IntN(len(ttls))]
				token := "t" + strconv.Itoa(op)
				res, err := s.Begin(ctx, req(key, token, now, ttl))
				switch {
				case r == nil && live() >= bound:
					if !errors.Is(err, idempotency.ErrFull) {
						t.Fatalf("seed %d op %d: Begin %s of a full store: %v %v", seed, op, key, res, err)
					}
					refused++
				case err != nil:
					t.Fatalf("seed %d op %d: Begin %s with %d of %d records: %v", seed, op, key, live(), bound, err)
				case r == nil:
					if res.Outcome != driver.Acquired {
						t.Fatalf("seed %d op %d: Begin %s: %v, want acquired", seed, op, key, res.Outcome)
					}
					model[key] = &rec{expires: now.Add(ttl), token: token}
				case r.completed:
					if res.Outcome != driver.Replay || string(res.Record.Response.Body) != key {
						t.Fatalf("seed %d op %d: Begin %s: %v, want replay", seed, op, key, res.Outcome)
					}
				default:
					if res.Outcome != driver.InProgress && res.Outcome != driver.Reacquired {
						t.Fatalf("seed %d op %d: Begin %s: %v, want in progress", seed, op, key, res.Outcome)
					}
					if res.Outcome == driver.Reacquired {
						r.token = token
					}
				}
			case x < 8: // Complete
				if r == nil || r.completed {
					continue
				}
				ttl := ttls[rng.IntN(len(ttls))]
				resp := &driver.Response{StatusCode: 201, Body: []byte(key)}
				if err := s.Complete(ctx, driver.CompleteRequest{Merchant: "m", Key: key, Token: r.token, Response: resp, Now: now, TTL: ttl}); err != nil {
					t.Fatalf("seed %d op %d: Complete %s: %v", seed, op, key, err)
				}
				r.completed, r.expires = true, now.Add(ttl)
			case x < 9: // Release
				if r == nil || r.completed {
					continue
				}
				if err := s.Release(ctx, "m", key, r.token); err != nil {
					t.Fatalf("seed %d op %d: Release %s: %v", seed, op, key, err)
				}
				delete(model, key)
			default: // the clock moves
				now = now.Add(time.Duration(rng.Int64N(int64(20 * time.Minute))))
			}
			maxRuns = max(maxRuns, 1+len(s.shards[0].more))
		}
		for key, r := range model {
			if !now.Before(r.expires) {
				continue
			}
			got, err := s.Get(ctx, "m", key)
			if err != nil || got.ExpiresAt.Compare(r.expires) != 0 || (got.State == driver.StateCompleted) != r.completed {
				t.Fatalf("seed %d: record %s: %+v %v, want %+v", seed, key, got, err, r)
			}
		}
	}
	if refused < 100 || maxRuns < 2 {
		t.Fatalf("%d refusals and at most %d runs: the cases are not exercised", refused, maxRuns)
	}
	t.Logf("%d refusals, up to %d runs", refused, maxRuns)
}

// Keys whose hashes collide are told apart: the second is indexed by key
// (spill), is found while the first is held and after it is removed, and
// removing either leaves the other where it was.
func TestHashCollisions(t *testing.T) {
	sh := &shard{}
	const h = 7
	a, b, c := recKey{"m", "a"}, recKey{"m", "b"}, recKey{"n", "a"}
	add := func(k recKey) int {
		return sh.add(k, h, &record{merchant: k.merchant, key: k.key, fingerprint: k.key}, 10)
	}
	want := func(k recKey, slot int, found bool) {
		t.Helper()
		i, ok := sh.find(k, h)
		if ok != found || ok && i != slot {
			t.Fatalf("find(%v) = %d, %v; want %d, %v", k, i, ok, slot, found)
		}
		if ok && !sh.slot(i).is(k) {
			t.Fatalf("find(%v): slot %d holds %+v", k, i, *sh.slot(i))
		}
	}
	ia, ib := add(a), add(b)
	if ia == ib || sh.index.Spilled() != 1 || sh.len() != 2 {
		t.Fatalf("slots %d, %d; spilled %d; len %d", ia, ib, sh.index.Spilled(), sh.len())
	}
	want(a, ia, true)
	want(b, ib, true)
	want(c, 0, false)
	sh.remove(ia, h)
	want(a, 0, false)
	want(b, ib, true)
	ic := add(c) // takes the hash's index entry, free again
	if sh.index.Spilled() != 1 || sh.len() != 2 {
		t.Fatalf("spilled %d; len %d", sh.index.Spilled(), sh.len())
	}
	want(b, ib, true)
	want(c, ic, true)
	sh.remove(ib, h)
	want(b, 0, false)
	want(c, ic, true)
	if sh.index.Spilled() != 0 || sh.len() != 1 {
		t.Fatalf("spilled %d; len %d", sh.index.Spilled(), sh.len())
	}
}
