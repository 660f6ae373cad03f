package kafka

import (
	"math/rand/v2"
	"testing"
)

func mustAdd(t *testing.T, tr *offsetTracker, offs ...int64) {
	t.Helper()
	for _, o := range offs {
		if err := tr.add(o); err != nil {
			t.Fatalf("add(%d): %v", o, err)
		}
	}
}

func settleWant(t *testing.T, tr *offsetTracker, off, wantCommit int64, wantAdvanced bool) {
	t.Helper()
	commit, advanced, err := tr.settle(off)
	if err != nil {
		t.Fatalf("settle(%d): %v", off, err)
	}
	if commit != wantCommit || advanced != wantAdvanced {
		t.Fatalf("settle(%d) = commit %d advanced %v; want %d %v", off, commit, advanced, wantCommit, wantAdvanced)
	}
	if tr.commitPoint() != wantCommit {
		t.Fatalf("commitPoint() = %d after settle(%d), want %d", tr.commitPoint(), off, wantCommit)
	}
}

func TestTrackerInOrder(t *testing.T) {
	tr := newOffsetTracker(100)
	if tr.commitPoint() != 100 {
		t.Fatalf("initial commit point %d, want the claim's start 100", tr.commitPoint())
	}
	mustAdd(t, tr, 100, 101, 102)
	settleWant(t, tr, 100, 101, true)
	settleWant(t, tr, 101, 102, true)
	settleWant(t, tr, 102, 103, true)
	if tr.pending() != 0 {
		t.Fatalf("pending = %d", tr.pending())
	}
}

func TestTrackerOutOfOrderNeverSkipsUnsettled(t *testing.T) {
	tr := newOffsetTracker(0)
	mustAdd(t, tr, 0, 1, 2, 3, 4)
	settleWant(t, tr, 3, 0, false)
	settleWant(t, tr, 1, 0, false)
	settleWant(t, tr, 4, 0, false)
	if tr.pending() != 2 {
		t.Fatalf("pending = %d, want 2 (offsets 0 and 2)", tr.pending())
	}
	settleWant(t, tr, 0, 2, true) // 0 and 1 settled; 2 is the first unsettled
	settleWant(t, tr, 2, 5, true) // everything settled
	mustAdd(t, tr, 5)
	if tr.commitPoint() != 5 {
		t.Fatalf("commit point %d after adding 5, want 5", tr.commitPoint())
	}
	settleWant(t, tr, 5, 6, true)
}

func TestTrackerGaps(t *testing.T) {
	// Compaction and transaction markers leave offsets that are never
	// returned; the commit point jumps them once the records around them
	// are settled.
	tr := newOffsetTracker(10)
	mustAdd(t, tr, 10, 12, 15)
	settleWant(t, tr, 12, 10, false)
	settleWant(t, tr, 10, 15, true)
	settleWant(t, tr, 15, 16, true)
	mustAdd(t, tr, 20) // a gap after a fully settled prefix
	if tr.commitPoint() != 16 {
		t.Fatalf("commit point %d; it must not move before 20 is settled", tr.commitPoint())
	}
	settleWant(t, tr, 20, 21, true)
}

func TestTrackerSentinelStart(t *testing.T) {
	// A claim without a committed offset starts at OffsetOldest (-2).
	// The first record received becomes the commit point.
	tr := newOffsetTracker(-2)
	mustAdd(t, tr, 0, 1)
	if tr.commitPoint() != 0 {
		t.Fatalf("commit point %d after adding 0 to a sentinel start, want 0", tr.commitPoint())
	}
	settleWant(t, tr, 1, 0, false)
	settleWant(t, tr, 0, 2, true)
}

func TestTrackerErrors(t *testing.T) {
	tr := newOffsetTracker(0)
	mustAdd(t, tr, 0, 1, 2)
	for _, o := range []int64{2, 1, -1} {
		if err := tr.add(o); err == nil {
			t.Errorf("add(%d) after 2 succeeded; offsets must increase", o)
		}
	}
	if _, _, err := tr.settle(7); err == nil {
		t.Error("settle of an offset never added succeeded")
	}
	settleWant(t, tr, 1, 0, false)
	if _, _, err := tr.settle(1); err == nil {
		t.Error("second settle of 1 succeeded")
	}
	settleWant(t, tr, 0, 2, true)
	if _, _, err := tr.settle(0); err == nil {
		t.Error("second settle of 0 (below the commit point) succeeded")
	}
	if c := tr.commitPoint(); c != 2 {
		t.Fatalf("errors moved the commit point to %d", c)
	}
}

// TestTrackerRandomized settles random permutations of offsets with random
// gaps and checks the commit point against a direct model after every step:
// every offset below it is settled, it is the lowest unsettled offset (or
// one past the last) whenever it moves, and it never moves backwards.
func TestTrackerRandomized(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 42))
		start := int64(rng.IntN(1000))
		tr := newOffsetTracker(start)
		n := 1 + rng.IntN(3000)
		offs := make([]int64, 0, n)
		o := start
		for range n {
			o += 1 + int64(rng.IntN(3)/2) // mostly contiguous, some gaps
			offs = append(offs, o)
		}
		settled := map[int64]bool{}
		added := 0
		order := rng.Perm(n)
		prev := tr.commitPoint()
		for _, idx := range order {
			// Interleave adds and settles: an offset can only be settled
			// after it was added.
			for added <= idx {
				mustAdd(t, tr, offs[added])
				added++
			}
			off := offs[idx]
			commit, advanced, err := tr.settle(off)
			if err != nil {
				t.Fatalf("seed %d: settle(%d): %v", seed, off, err)
			}
			settled[off] = true
			want := offs[added-1] + 1
			for _, x := range offs[:added] {
				if !settled[x] {
					want = x
					break
				}
			}
			// Safety: nothing unsettled lies below the commit point. When
			// it advanced it is exactly the first unsettled offset (or one
			// past the last); otherwise it stayed where it was.
			if commit > want || (advanced && commit != want) {
				t.Fatalf("seed %d: after settling %d commit = %d (advanced %v), first unsettled %d", seed, off, commit, advanced, want)
			}
			if commit < prev {
				t.Fatalf("seed %d: commit point went back from %d to %d", seed, prev, commit)
			}
			if advanced != (commit != prev) {
				t.Fatalf("seed %d: advanced = %v but commit %d -> %d", seed, advanced, prev, commit)
			}
			prev = commit
		}
		if tr.commitPoint() != offs[n-1]+1 || tr.pending() != 0 {
			t.Fatalf("seed %d: final commit %d pending %d, want %d 0", seed, tr.commitPoint(), tr.pending(), offs[n-1]+1)
		}
		if len(tr.entries) > 2048 && tr.head > len(tr.entries)/2 {
			t.Fatalf("seed %d: tracker kept %d entries with head %d: not compacted", seed, len(tr.entries), tr.head)
		}
	}
}

func BenchmarkTracker(b *testing.B) {
	tr := newOffsetTracker(0)
	for i := range int64(b.N) {
		_ = tr.add(i)
		if i >= 64 {
			_, _, _ = tr.settle(i - 64 + (i % 7)) // settle slightly out of order
		}
	}
}
