package kafka

import (
	"maps"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestAttemptsMetadataRoundTrip(t *testing.T) {
	in := map[int64]int{100: 3, 101: 3, 102: 3, 104: 1, 105: 7, 90_000: 2}
	meta, last := encodeAttempts(in, defaultAttemptsMetadataMax)
	if want := "a1;100;0+2:3,4:1,5:7,89900:2"; meta != want {
		t.Fatalf("encodeAttempts = %q, want %q", meta, want)
	}
	if last != 90_000 {
		t.Fatalf("highest offset %d, want 90000", last)
	}
	out, err := decodeAttempts(meta, 0)
	if err != nil || !maps.Equal(out, in) {
		t.Fatalf("decodeAttempts = %v, %v; want %v", out, err, in)
	}
	// Offsets before the committed one are stale.
	out, err = decodeAttempts(meta, 102)
	want := map[int64]int{102: 3, 104: 1, 105: 7, 90_000: 2}
	if err != nil || !maps.Equal(out, want) {
		t.Fatalf("decodeAttempts from 102 = %v, %v; want %v", out, err, want)
	}
}

func TestAttemptsMetadataEmpty(t *testing.T) {
	if meta, last := encodeAttempts(nil, 1024); meta != "" || last != -1 {
		t.Fatalf("encodeAttempts(nil) = %q, %d", meta, last)
	}
	for _, meta := range []string{"", "written by another tool", "a1"} {
		if out, err := decodeAttempts(meta, 0); out != nil || err != nil {
			t.Errorf("decodeAttempts(%q) = %v, %v; want nothing", meta, out, err)
		}
	}
}

func TestAttemptsMetadataMalformed(t *testing.T) {
	for _, meta := range []string{
		"a1;", "a1;x;0:1", "a1;-1;0:1", "a1;5;0", "a1;5;0:0", "a1;5;-1:2", "a1;5;0+0:2", "a1;5;0+x:2",
		"a1;5;0:2,", "a1;5;0+1000000:2", "a1;9223372036854775807;1+1:2",
	} {
		if out, err := decodeAttempts(meta, 0); err == nil {
			t.Errorf("decodeAttempts(%q) = %v, want an error", meta, out)
		}
	}
}

// TestAttemptsMetadataBudget checks that the encoding never exceeds its
// budget and, when it must drop offsets, keeps those with the most attempts.
func TestAttemptsMetadataBudget(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, budget := range []int{64, 200, 1024, 4096} {
		in := map[int64]int{}
		base := int64(1_000_000_000)
		for len(in) < 3000 {
			in[base+rng.Int64N(100_000)] = 1 + rng.IntN(20)
		}
		meta, last := encodeAttempts(in, budget)
		if len(meta) > budget || len(meta) == 0 {
			t.Fatalf("budget %d: encoded %d bytes", budget, len(meta))
		}
		out, err := decodeAttempts(meta, 0)
		if err != nil || len(out) == 0 {
			t.Fatalf("budget %d: decode = %v, %v", budget, out, err)
		}
		minKept, maxDropped, highest := 1<<30, 0, int64(-1)
		for o, a := range out {
			if in[o] != a {
				t.Fatalf("budget %d: offset %d decoded with %d attempts, encoded %d", budget, o, a, in[o])
			}
			minKept = min(minKept, a)
			highest = max(highest, o)
		}
		for o, a := range in {
			if _, ok := out[o]; !ok {
				maxDropped = max(maxDropped, a)
			}
		}
		if maxDropped > minKept {
			t.Errorf("budget %d: dropped an offset with %d attempts but kept one with %d", budget, maxDropped, minKept)
		}
		if last != highest {
			t.Errorf("budget %d: reported highest offset %d, decoded %d", budget, last, highest)
		}
		t.Logf("budget %d: %d of %d offsets in %d bytes", budget, len(out), len(in), len(meta))
	}
	// A budget too small for anything encodes nothing.
	if meta, _ := encodeAttempts(map[int64]int{1 << 40: 3}, len(attemptsPrefix)+3); meta != "" {
		t.Fatalf("tiny budget encoded %q", meta)
	}
	if !strings.HasPrefix(func() string { m, _ := encodeAttempts(map[int64]int{7: 2}, 64); return m }(), attemptsPrefix) {
		t.Fatal("encoding lacks its prefix")
	}
}
