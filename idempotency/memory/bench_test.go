package memory_test

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/idempotency/driver"
	"github.com/payrail/payrail/idempotency/memory"
	"github.com/payrail/payrail/internal/testkit"
)

// benchKeys returns n distinct idempotency keys shaped like client keys.
func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "order-" + strconv.Itoa(1_000_000+i)
	}
	return keys
}

// roomy returns a store large enough that n in-progress records never fill
// a shard.
func roomy(n int) *memory.Store { return memory.New(memory.WithMaxEntries(2*n + 4096)) }

func beginReq(key string, now time.Time) *driver.BeginRequest {
	return &driver.BeginRequest{Merchant: "merchant-a", Key: key, Fingerprint: "fp-0123456789abcdef",
		Token: "tok-0123456789", ResourceID: "pay_0123456789", Lease: 30 * time.Second, TTL: 24 * time.Hour, Now: now}
}

var benchResp = &driver.Response{StatusCode: 201, Header: map[string]string{"Content-Type": "application/json"}, Body: []byte(`{"id":"pay_0123456789"}`)}

// BenchmarkBegin measures Begin on new keys (the first call of every request).
func BenchmarkBegin(b *testing.B) {
	keys := benchKeys(b.N)
	s := roomy(b.N)
	ctx := context.Background()
	req := beginReq("", time.Now())
	before := testkit.HeapObjects()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		req.Key = keys[i]
		res, err := s.Begin(ctx, req)
		if err != nil || res.Outcome != driver.Acquired {
			b.Fatalf("Begin: %v %v", res, err)
		}
	}
	b.StopTimer()
	testkit.ReportRetained(b, before)
	if s.Len() != b.N {
		b.Fatalf("Len %d, want %d", s.Len(), b.N)
	}
}

// BenchmarkComplete measures Complete of in-progress keys. As in real
// traffic, each key completes shortly after its Begin: keys are begun (not
// timed) in batches of completeBatch, then completed (timed).
func BenchmarkComplete(b *testing.B) {
	const completeBatch = 1000
	keys := benchKeys(b.N)
	s := roomy(b.N)
	ctx := context.Background()
	now := time.Now()
	req := beginReq("", now)
	before := testkit.HeapObjects()
	b.ReportAllocs()
	b.ResetTimer()
	for lo := 0; lo < b.N; lo += completeBatch {
		batch := keys[lo:min(lo+completeBatch, b.N)]
		b.StopTimer()
		for _, k := range batch {
			req.Key = k
			if _, err := s.Begin(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		for _, k := range batch {
			if err := s.Complete(ctx, driver.CompleteRequest{Merchant: "merchant-a", Key: k, Token: req.Token, Response: benchResp, Now: now, TTL: time.Hour}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	testkit.ReportRetained(b, before)
	rec, err := s.Get(ctx, "merchant-a", keys[b.N-1])
	if err != nil || rec.State != driver.StateCompleted || rec.Response != benchResp || rec.Token != "" {
		b.Fatalf("last record %+v, %v", rec, err)
	}
}

// BenchmarkBeginCompleteFull measures a request that executes against a
// store in its steady state: the clock moves so that, as each new key
// arrives, the record begun capacity/2 requests earlier expires and is
// reclaimed (half the capacity leaves room for the shards' unevenness).
func BenchmarkBeginCompleteFull(b *testing.B) {
	const capacity = 4096
	s := memory.New(memory.WithMaxEntries(capacity))
	keys := benchKeys(b.N + capacity)
	ctx := context.Background()
	start := time.Now()
	const step = time.Millisecond // between requests
	req := beginReq("", start)
	req.TTL = capacity / 2 * step
	i := 0
	run := func(k string) {
		req.Key = k
		req.Now = start.Add(time.Duration(i) * step)
		i++
		res, err := s.Begin(ctx, req)
		if err != nil || res.Outcome != driver.Acquired {
			b.Fatalf("Begin: %v %v", res, err)
		}
		if err := s.Complete(ctx, driver.CompleteRequest{Merchant: req.Merchant, Key: k, Token: req.Token, Response: benchResp, Now: req.Now, TTL: req.TTL}); err != nil {
			b.Fatal(err)
		}
	}
	for _, k := range keys[b.N:] { // fill the store
		run(k)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for _, k := range keys[:b.N] {
		run(k)
	}
	b.StopTimer()
	// The live records, and a few expired ones whose shard has not had a
	// new key since they fell due.
	if n := s.Len(); n < capacity/2 || n > capacity/2+64 {
		b.Fatalf("Len %d, want %d (+ a few): expired records not reclaimed", n, capacity/2)
	}
}

// BenchmarkRecordCost measures the heap a store retains per record, as the
// processor creates them: a client key (a UUID), a fingerprint (64 hex
// digits), a lease token (32), a payment id, and once completed a response
// with a typical payment body of about 600 bytes and the shared JSON header
// set. Keys are begun and completed one after the other, so that a
// completed record has one expiry-queue entry; under concurrency it may
// have two (24 B more). Run it with -benchtime 200000x (or more) so that
// slices' growth averages out; the package documentation quotes its
// figures.
func BenchmarkRecordCost(b *testing.B) {
	header := map[string]string{"Content-Type": "application/json"}
	for _, completed := range []bool{true, false} {
		name := "in_progress"
		if completed {
			name = "completed"
		}
		b.Run(name, func(b *testing.B) {
			s := roomy(b.N)
			ctx := context.Background()
			now := time.Now()
			objs, heap := testkit.HeapObjects(), testkit.HeapBytes()
			for i := range b.N {
				// Per-request strings, allocated like the processor's.
				n := strconv.Itoa(10_000_000 + i)
				r := &driver.BeginRequest{Merchant: "merchant-a",
					Key:         "3f1c9a2e-7b4d-4e8a-9c1f-" + n + "0d2b",
					Fingerprint: strings.Repeat(n[:8], 8),
					Token:       strings.Repeat(n[:8], 4),
					ResourceID:  "pay_ABCDEFGHIJKLMNOPQR" + n,
					Lease:       30 * time.Second, TTL: 24 * time.Hour, Now: now.Add(time.Duration(i) * 100 * time.Millisecond)}
				if _, err := s.Begin(ctx, r); err != nil {
					b.Fatal(err)
				}
				if completed {
					body := bytes.Repeat([]byte{'x'}, 601) // payment JSON and its newline
					resp := &driver.Response{StatusCode: 201, Header: header, Body: body}
					// Completed after the gateway's answer.
					if err := s.Complete(ctx, driver.CompleteRequest{Merchant: r.Merchant, Key: r.Key, Token: r.Token, Response: resp, Now: r.Now.Add(50 * time.Millisecond), TTL: r.TTL}); err != nil {
						b.Fatal(err)
					}
				}
			}
			testkit.ReportRetainedBytes(b, heap)
			testkit.ReportRetained(b, objs)
			if s.Len() != b.N {
				b.Fatalf("Len %d, want %d", s.Len(), b.N)
			}
		})
	}
}

// BenchmarkReplay measures Begin on a completed key.
func BenchmarkReplay(b *testing.B) {
	s := memory.New()
	ctx := context.Background()
	now := time.Now()
	req := beginReq("replayed", now)
	if _, err := s.Begin(ctx, req); err != nil {
		b.Fatal(err)
	}
	if err := s.Complete(ctx, driver.CompleteRequest{Merchant: req.Merchant, Key: req.Key, Token: req.Token, Response: benchResp, Now: now, TTL: time.Hour}); err != nil {
		b.Fatal(err)
	}
	req.Token = "tok-other"
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		res, err := s.Begin(ctx, req)
		if err != nil || res.Outcome != driver.Replay || res.Record.Response != benchResp {
			b.Fatalf("Begin: %v %v", res, err)
		}
	}
}

// The hot path allocates only the result handed to the caller.
func TestAllocations(t *testing.T) {
	testkit.SkipAllocsUnderRace(t)
	s := memory.New()
	ctx := context.Background()
	now := time.Now()
	const runs = 1000
	keys := make([]string, runs+1) // AllocsPerRun runs once more to warm up
	for i := range keys {
		keys[i] = "key-" + strconv.Itoa(i)
	}
	r := beginReq("", now)
	i := 0
	if a := testing.AllocsPerRun(runs, func() {
		r.Key = keys[i]
		i++
		if res, err := s.Begin(ctx, r); err != nil || res.Outcome != driver.Acquired {
			t.Fatal(res, err)
		}
	}); a != 1 {
		t.Errorf("Begin of a new key: %v allocations, want 1", a)
	}
	resp := &driver.Response{StatusCode: 201}
	i = 0
	if a := testing.AllocsPerRun(runs, func() {
		if err := s.Complete(ctx, driver.CompleteRequest{Merchant: r.Merchant, Key: keys[i], Token: r.Token, Response: resp, Now: now, TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
		i++
	}); a != 0 {
		t.Errorf("Complete: %v allocations, want 0", a)
	}
	r.Key = keys[0]
	if a := testing.AllocsPerRun(runs, func() {
		if res, err := s.Begin(ctx, r); err != nil || res.Outcome != driver.Replay || res.Record.Response.StatusCode != resp.StatusCode {
			t.Fatal(res, err)
		}
	}); a != 1 {
		t.Errorf("Begin replay: %v allocations, want 1", a)
	}
}
