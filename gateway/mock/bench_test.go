package mock

import (
	"context"
	"strconv"
	"testing"

	"github.com/payrail/payrail/gateway/driver"
	"github.com/payrail/payrail/internal/testkit"
)

// This file is in package mock (white-box): besides the benchmarks it tests
// the hash-collision path of the idempotency index, which real keys do not
// reach.

// benchKeys returns n distinct gateway idempotency keys shaped like the
// processor's (payment id + ":" + operation).
func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "pay_" + strconv.Itoa(10_000_000_000+i) + "ABCDEFGHIJKLMNOP:authorize"
	}
	return keys
}

func authReq() *driver.AuthorizeRequest {
	return &driver.AuthorizeRequest{PaymentID: "pay_1", Merchant: "merchant-a", Amount: 1999, Currency: "EUR",
		PaymentMethod: "pm_card_visa", CaptureMethod: driver.CaptureAutomatic, Origin: "web"}
}

// BenchmarkAuthorize measures a new authorization (a new idempotency key),
// and reports the heap objects the mock keeps per payment.
func BenchmarkAuthorize(b *testing.B) {
	keys := benchKeys(b.N)
	m := New()
	ctx := context.Background()
	req := authReq()
	before := testkit.HeapObjects()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		req.IdempotencyKey = keys[i]
		tx, err := m.Authorize(ctx, req)
		if err != nil || tx.Status != driver.StatusCaptured || tx.AmountCaptured != req.Amount {
			b.Fatalf("Authorize: %+v %v", tx, err)
		}
	}
	b.StopTimer()
	testkit.ReportRetained(b, before)
	if got := m.Processed("pay_"); got != b.N {
		b.Fatalf("Processed %d, want %d", got, b.N)
	}
}

// BenchmarkAuthorizeReplay measures a retried authorization (same key and
// parameters), answered from the idempotency record.
func BenchmarkAuthorizeReplay(b *testing.B) {
	m := New()
	ctx := context.Background()
	req := authReq()
	req.IdempotencyKey = benchKeys(1)[0]
	first, err := m.Authorize(ctx, req)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		tx, err := m.Authorize(ctx, req)
		if err != nil || tx.Reference != first.Reference {
			b.Fatalf("replay: %+v %v", tx, err)
		}
	}
}

// Keys whose hashes collide keep separate records: the first key owns the
// hash's slot, later ones spill to a map by key.
func TestKeyHashCollision(t *testing.T) {
	m := New()
	sh := &m.shards[3]
	key := func(k string) idemKey { return idemKey{sh: sh, key: k, h: 42} } // one hash for all
	fp := func(amount int64) fingerprint { return fingerprint{op: opAuthorize, amount: amount, currency: "EUR"} }
	for i, k := range []string{"a", "b", "c"} {
		ik := key(k)
		if _, _, ok := ik.replay(fp(int64(i))); ok {
			t.Fatalf("%s: replayed before it was stored", k)
		}
		ik.remember(newEntry(fp(int64(i)), driver.Transaction{Reference: "ref-" + k}))
	}
	if len(sh.keys) != 1 || len(sh.spill) != 2 || sh.keys[42].key != "a" {
		t.Fatalf("index: %d by hash (first %q), %d spilled; want a, then 2 spilled", len(sh.keys), sh.keys[42].key, len(sh.spill))
	}
	for i, k := range []string{"a", "b", "c"} {
		ik := key(k)
		tx, err, ok := ik.replay(fp(int64(i)))
		if !ok || err != nil || tx.Reference != "ref-"+k {
			t.Errorf("%s: replay %+v %v %v", k, tx, err, ok)
		}
		if _, err, ok := ik.replay(fp(99)); !ok || err == nil {
			t.Errorf("%s: reuse with other parameters: %v %v", k, err, ok)
		}
	}
	if ik := key("d"); ik.find() != nil {
		t.Error("a key never stored is found")
	}
	if n := m.Processed(""); n != 3 {
		t.Errorf("Processed %d, want 3", n)
	}
	// remember without a prior replay still respects the taken slot.
	ik := key("e")
	ik.remember(newEntry(fingerprint{}, driver.Transaction{Reference: "ref-e"}))
	if sh.keys[42].key != "a" || sh.spill["e"] == nil {
		t.Error("remember without replay overwrote the slot of another key")
	}
}

// An authorization allocates its reference, one record (payment and
// idempotency entry together) and the result; a replay only the result.
func TestAuthorizeAllocations(t *testing.T) {
	testkit.SkipAllocsUnderRace(t)
	m := New()
	ctx := context.Background()
	const runs = 1000
	keys := benchKeys(runs + 1) // AllocsPerRun runs once more to warm up
	req := authReq()
	i := 0
	if a := testing.AllocsPerRun(runs, func() {
		req.IdempotencyKey = keys[i]
		i++
		if _, err := m.Authorize(ctx, req); err != nil {
			t.Fatal(err)
		}
	}); a != 3 {
		t.Errorf("Authorize: %v allocations, want 3", a)
	}
	if a := testing.AllocsPerRun(runs, func() {
		if _, err := m.Authorize(ctx, req); err != nil {
			t.Fatal(err)
		}
	}); a != 1 {
		t.Errorf("Authorize replay: %v allocations, want 1", a)
	}
}
