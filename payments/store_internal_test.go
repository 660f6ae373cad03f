package payments

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"strconv"
	"strings"
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

func TestMemoryStoreMetadataEncoding(t *testing.T) {
	long := strings.Repeat("é", 300) // a length of two uvarint bytes
	for _, md := range []map[string]string{
		nil,
		{"order": "42"},
		{"": ""},
		{"k": ""},
		{"nul\x00key": "tab\tnew\nline\x00", "ñandú": "100 €"},
		{long: long, "b": "c"},
		func() map[string]string {
			m := map[string]string{}
			for i := range 200 {
				m["key-"+strconv.Itoa(i)] = strings.Repeat("v", i)
			}
			return m
		}(),
	} {
		s := encodeMeta(md)
		if got := decodeMeta(s); !maps.Equal(got, md) || (md == nil) != (got == nil) {
			t.Errorf("decodeMeta(encodeMeta(%q)) = %q", md, got)
		}
		if !sameMeta(s, md) {
			t.Errorf("sameMeta(encodeMeta(%q), itself) = false", md)
		}
		if len(md) > 0 {
			other := maps.Clone(md)
			for k := range other {
				other[k] += "x"
				break
			}
			more := maps.Clone(md)
			more["extra"] = "1"
			if sameMeta(s, other) || sameMeta(s, more) || sameMeta(s, nil) || sameMeta("", md) {
				t.Errorf("sameMeta of %q matches a different map", md)
			}
		}
	}
	if s := encodeMeta(map[string]string{"order": "42"}); len(s) != 1+1+5+1+2 {
		t.Errorf("encodeMeta(order=42) is %d bytes, want 10", len(s))
	}
}

// TestMemoryStoreKeepsMetadataCompact: the memory store keeps every
// payment for the life of the process, so what it keeps per payment is
// what a long run costs. A payment with one metadata key costs its slot
// (384 B), its encoded metadata and its share of the index, not a map's
// table as well (336 B for one key: about 800 B a payment).
func TestMemoryStoreKeepsMetadataCompact(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore()
	const n = 20000
	now := time.Now()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("pay_%026d", i)
	}
	before := liveHeapBytes()
	for i, id := range ids {
		p := &Payment{ID: id, Merchant: "m", Amount: 1999, Currency: "EUR", Status: StatusCaptured,
			Refunds: []Refund{}, Metadata: map[string]string{"order": strconv.Itoa(i)}, CreatedAt: now, UpdatedAt: now}
		if err := s.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		if err := s.Update(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	per := (float64(liveHeapBytes()) - float64(before)) / n
	runtime.KeepAlive(s)
	runtime.KeepAlive(ids)
	t.Logf("%.0f bytes kept per payment with one metadata key", per)
	if per > 520 {
		t.Errorf("the memory store keeps %.0f bytes per payment with one metadata key, want at most 520", per)
	}
	got, err := s.Get(ctx, "m", ids[7])
	if err != nil || got.Metadata["order"] != "7" || len(got.Metadata) != 1 {
		t.Errorf("Get: %v, metadata %q", err, got.Metadata)
	}
}

// liveHeapBytes returns the bytes of live heap objects after a full
// collection.
func liveHeapBytes() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
