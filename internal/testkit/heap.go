package testkit

import (
	"runtime"
	"testing"
)

// HeapObjects returns the number of live heap objects after a full
// collection, to measure what a store retains per operation.
func HeapObjects() uint64 { return heapAfterGC().HeapObjects }

// heapAfterGC returns the memory statistics after a full collection.
func heapAfterGC() *runtime.MemStats {
	runtime.GC()
	ms := new(runtime.MemStats)
	runtime.ReadMemStats(ms)
	return ms
}

// ReportRetained reports, as the metric retained-objs/op, the heap objects
// still live per benchmark operation since before (a HeapObjects reading).
func ReportRetained(b *testing.B, before uint64) {
	b.Helper()
	b.ReportMetric((float64(HeapObjects())-float64(before))/float64(b.N), "retained-objs/op")
}

// HeapBytes returns the bytes of live heap objects after a full
// collection, to measure what a store retains per operation.
func HeapBytes() uint64 { return heapAfterGC().HeapAlloc }

// ReportRetainedBytes reports, as the metric retained-B/op, the heap bytes
// still live per benchmark operation since before (a HeapBytes reading).
func ReportRetainedBytes(b *testing.B, before uint64) {
	b.Helper()
	b.ReportMetric((float64(HeapBytes())-float64(before))/float64(b.N), "retained-B/op")
}

// SkipAllocsUnderRace skips an allocation-count test when the race
// detector, which adds allocations of its own, is on.
func SkipAllocsUnderRace(t testing.TB) {
	t.Helper()
	if RaceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
}
