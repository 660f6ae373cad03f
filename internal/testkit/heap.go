package testkit

import (
	"runtime"
	"testing"
)

// HeapObjects returns the number of live heap objects after a full
// collection, to measure what a store retains per operation.
func HeapObjects() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapObjects
}

// ReportRetained reports, as the metric retained-objs/op, the heap objects
// still live per benchmark operation since before (a HeapObjects reading).
func ReportRetained(b *testing.B, before uint64) {
	b.Helper()
	b.ReportMetric((float64(HeapObjects())-float64(before))/float64(b.N), "retained-objs/op")
}

// SkipAllocsUnderRace skips an allocation-count test when the race
// detector, which adds allocations of its own, is on.
func SkipAllocsUnderRace(t testing.TB) {
	t.Helper()
	if RaceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
}
