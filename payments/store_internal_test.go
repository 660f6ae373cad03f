package payments

import (
	"testing"
	"time"
)

// Payment ids whose hashes collide are told apart in a MemoryStore shard:
// the second is indexed by id (spill), and each finds its own copy.
func TestMemoryStoreHashCollisions(t *testing.T) {
	sh := &memShard{}
	const h = 7
	for i, id := range []string{"pay_a", "pay_b", "pay_c"} {
		_, c := sh.add(id, h)
		c.ID, c.Amount = id, int64(i+1)
	}
	if sh.n != 3 || sh.index.Len() != 3 || sh.index.Spilled() != 2 {
		t.Fatalf("n %d, indexed %d, spilled %d", sh.n, sh.index.Len(), sh.index.Spilled())
	}
	for i, id := range []string{"pay_a", "pay_b", "pay_c"} {
		if c := sh.find(id, h); c == nil || c.ID != id || c.Amount != int64(i+1) {
			t.Fatalf("find(%q) = %+v", id, c)
		}
	}
	if c := sh.find("pay_d", h); c != nil {
		t.Fatalf("find of an absent id with a colliding hash: %+v", c)
	}
	if c := sh.find("pay_a", h+1); c != nil {
		t.Fatalf("find under another hash: %+v", c)
	}
}

// A shard's slots span slabs: every stored copy stays where it was put.
func TestMemoryStoreSlabs(t *testing.T) {
	s := NewMemoryStore()
	ctx := t.Context()
	const n = 5*memSlab + 3
	for i := range n {
		p := &Payment{ID: newID("pay"), Merchant: "m", Amount: int64(i + 1), Currency: "EUR"}
		if err := s.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Get(ctx, "m", p.ID); err != nil || got.Amount != p.Amount {
			t.Fatalf("payment %d: %+v %v", i, got, err)
		}
	}
	total := 0
	for i := range s.shards {
		total += s.shards[i].n
	}
	stale, err := s.ListStale(ctx, []Status{""}, time.Now(), 0)
	if total != n || err != nil || len(stale) != n {
		t.Fatalf("%d stored, %d listed (%v); want %d", total, len(stale), err, n)
	}
}

// ListEventsDue finds exactly the payments whose EventsDue is set and
// due, across the words of each shard's due bitset, as payments become due
// and stop being due.
func TestMemoryStoreDueSet(t *testing.T) {
	s := NewMemoryStore()
	ctx := t.Context()
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	const n = 40 * 64 // several words in every shard
	pays := make([]*Payment, n)
	for i := range n {
		p := &Payment{ID: newID("pay"), Merchant: "m", Amount: 1, Currency: "EUR"}
		if i%3 == 0 {
			p.EventsDue = t0.Add(time.Duration(i) * time.Second)
		}
		if err := s.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		pays[i] = p
	}
	// Every seventh due payment is delivered (no longer due); every fifth
	// payment not due so far becomes due.
	for i, p := range pays {
		switch {
		case i%3 == 0 && i%7 == 0:
			p.EventsDue = time.Time{}
		case i%3 != 0 && i%5 == 0:
			p.EventsDue = t0.Add(time.Duration(i) * time.Second)
		default:
			continue
		}
		if err := s.UpdateEvents(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	before := t0.Add(n / 2 * time.Second)
	want := map[string]bool{}
	for _, p := range pays {
		if !p.EventsDue.IsZero() && !p.EventsDue.After(before) {
			want[p.ID] = true
		}
	}
	got, err := s.ListEventsDue(ctx, before, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range got {
		if !want[p.ID] {
			t.Fatalf("listed %s (due %v), which is not due by %v", p.ID, p.EventsDue, before)
		}
		if i > 0 && p.EventsDue.Before(got[i-1].EventsDue) {
			t.Fatalf("not in due order at %d", i)
		}
		delete(want, p.ID)
	}
	if len(want) != 0 {
		t.Fatalf("%d due payments not listed", len(want))
	}
}
