package kafka

import (
	"fmt"
	"sort"
)

// offsetTracker is the commit bookkeeping of one partition claim: it records
// the offsets handed out, in the order Kafka returned them (ascending, with
// gaps where the log has none: compaction, transaction markers), marks them
// settled as they are acked or dead-lettered in any order, and yields the
// commit point: the lowest offset not yet settled, or one past the highest
// received once all are. Committing exactly that offset means a crash or a
// rebalance redelivers every unsettled record (and possibly some settled
// ones after it) but never skips one: out-of-order acks cannot lose
// messages.
//
// It is not safe for concurrent use; the subscription's mutex guards it.
type offsetTracker struct {
	entries []trackedOffset // received, ascending; entries[head:] are live
	head    int             // first entry not known settled
	commit  int64           // the commit point
	last    int64           // highest offset added, or start-1
}

type trackedOffset struct {
	offset  int64
	settled bool
}

// newOffsetTracker returns a tracker for a claim starting at offset start
// (the next offset Kafka will return): the commit point starts there.
func newOffsetTracker(start int64) *offsetTracker {
	return &offsetTracker{commit: start, last: start - 1}
}

// add records a received offset. Offsets must be added in increasing order.
func (t *offsetTracker) add(offset int64) error {
	if offset <= t.last {
		return fmt.Errorf("kafka: offset %d received after %d", offset, t.last)
	}
	t.last = offset
	if t.commit < 0 {
		// A claim without a committed offset starts at a sentinel
		// (OffsetOldest or OffsetNewest): the first record is the commit
		// point.
		t.commit = offset
	}
	if t.head == len(t.entries) {
		// Everything before is settled: drop it and start afresh.
		t.entries = t.entries[:0]
		t.head = 0
	}
	t.entries = append(t.entries, trackedOffset{offset: offset})
	return nil
}

// settle marks offset settled and reports the commit point and whether it
// advanced. Settling an offset that was never added, or twice, is an error.
func (t *offsetTracker) settle(offset int64) (commit int64, advanced bool, err error) {
	live := t.entries[t.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].offset >= offset })
	if i == len(live) || live[i].offset != offset {
		return t.commit, false, fmt.Errorf("kafka: offset %d was not received or is already settled", offset)
	}
	if live[i].settled {
		return t.commit, false, fmt.Errorf("kafka: offset %d already settled", offset)
	}
	live[i].settled = true
	if i != 0 {
		return t.commit, false, nil
	}
	for t.head < len(t.entries) && t.entries[t.head].settled {
		t.head++
	}
	if t.head < len(t.entries) {
		t.commit = t.entries[t.head].offset
	} else {
		t.commit = t.last + 1
	}
	t.compact()
	return t.commit, true, nil
}

// compact drops the settled prefix once it dominates the slice, so a long
// claim does not grow memory without bound.
func (t *offsetTracker) compact() {
	if t.head < 1024 || t.head < len(t.entries)/2 {
		return
	}
	n := copy(t.entries, t.entries[t.head:])
	clear(t.entries[n:])
	t.entries = t.entries[:n]
	t.head = 0
}

// commitPoint is the offset to commit: every record before it is settled.
func (t *offsetTracker) commitPoint() int64 { return t.commit }

// pending is the number of received offsets not yet settled.
func (t *offsetTracker) pending() int {
	n := 0
	for _, e := range t.entries[t.head:] {
		if !e.settled {
			n++
		}
	}
	return n
}
