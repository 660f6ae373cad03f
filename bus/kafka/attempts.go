package kafka

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"
)

// Delivery attempts outlive a claim in the consumer group's committed
// offset metadata: see "Nack and retries" in the package documentation.
//
// The metadata is "a1;<base>;<runs>": base is the lowest offset listed and
// runs a comma-separated list of "<delta>:<attempts>" (the record at
// base+delta was delivered that many times) or "<delta>+<n>:<attempts>" (the
// n+1 records from base+delta on, each delivered that many times).
const attemptsPrefix = "a1;"

// defaultAttemptsMetadataMax bounds the metadata a partition commit
// carries, half of Kafka's default offset.metadata.max.bytes (4096).
const defaultAttemptsMetadataMax = 2048

// minAttemptsMetadata is the smallest budget the URL accepts: room for a
// few records.
const minAttemptsMetadata = 64

// maxSeededOffsets bounds what decodeAttempts expands, against a corrupt or
// foreign metadata string naming huge ranges.
const maxSeededOffsets = 1 << 16

type attemptRun struct {
	offset   int64 // first offset
	n        int64 // further consecutive offsets with the same count
	attempts int
}

// encodeAttempts encodes attempts (offset → deliveries) in at most budget
// bytes. When they do not all fit, the offsets with the most attempts are
// kept (the ones closest to being dead-lettered); ties keep the lowest
// offsets. It returns "" for nothing to keep, and the highest offset kept.
func encodeAttempts(attempts map[int64]int, budget int) (string, int64) {
	if len(attempts) == 0 || budget <= len(attemptsPrefix) {
		return "", -1
	}
	offs := make([]int64, 0, len(attempts))
	for o, a := range attempts {
		if o >= 0 && a > 0 {
			offs = append(offs, o)
		}
	}
	if len(offs) == 0 {
		return "", -1
	}
	slices.Sort(offs)
	var runs []attemptRun
	for _, o := range offs {
		a := attempts[o]
		if k := len(runs) - 1; k >= 0 && runs[k].attempts == a && runs[k].offset+runs[k].n+1 == o {
			runs[k].n++
			continue
		}
		runs = append(runs, attemptRun{offset: o, attempts: a})
	}
	// Lengths measured from the lowest offset of all are upper bounds for
	// any subset (whose base can only be higher), as is a header with the
	// highest offset's digits.
	base := runs[0].offset
	size := len(attemptsPrefix) + len(strconv.FormatInt(offs[len(offs)-1], 10)) + 1
	lens := make([]int, len(runs))
	total := size
	for i, r := range runs {
		lens[i] = runLen(r, base) + 1 // with its separator
		total += lens[i]
	}
	if total > budget {
		idx := make([]int, len(runs))
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(i, j int) int { return cmp.Compare(runs[j].attempts, runs[i].attempts) })
		keep := make([]bool, len(runs))
		for _, i := range idx {
			if size+lens[i] > budget {
				break // strictly by attempts: none with fewer is kept instead
			}
			size += lens[i]
			keep[i] = true
		}
		kept := runs[:0]
		for i, r := range runs {
			if keep[i] {
				kept = append(kept, r)
			}
		}
		runs = kept
		if len(runs) == 0 {
			return "", -1
		}
		base = runs[0].offset
	}
	var b strings.Builder
	b.WriteString(attemptsPrefix)
	b.WriteString(strconv.FormatInt(base, 10))
	b.WriteByte(';')
	for i, r := range runs {
		if i > 0 {
			b.WriteByte(',')
		}
		writeRun(&b, r, base)
	}
	last := runs[len(runs)-1]
	return b.String(), last.offset + last.n
}

func writeRun(b *strings.Builder, r attemptRun, base int64) {
	b.WriteString(strconv.FormatInt(r.offset-base, 10))
	if r.n > 0 {
		b.WriteByte('+')
		b.WriteString(strconv.FormatInt(r.n, 10))
	}
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(r.attempts))
}

func runLen(r attemptRun, base int64) int {
	var b strings.Builder
	writeRun(&b, r, base)
	return b.Len()
}

var errAttemptsMetadata = errors.New("kafka: malformed delivery-attempts offset metadata")

// decodeAttempts parses what encodeAttempts wrote, keeping the offsets at
// or after from. Metadata without the prefix (written by another client)
// holds no attempts: nil, nil.
func decodeAttempts(meta string, from int64) (map[int64]int, error) {
	rest, ok := strings.CutPrefix(meta, attemptsPrefix)
	if !ok {
		return nil, nil
	}
	baseStr, list, ok := strings.Cut(rest, ";")
	if !ok {
		return nil, errAttemptsMetadata
	}
	base, err := strconv.ParseInt(baseStr, 10, 64)
	if err != nil || base < 0 {
		return nil, errAttemptsMetadata
	}
	out := map[int64]int{}
	expanded := 0
	for _, item := range strings.Split(list, ",") {
		span, count, ok := strings.Cut(item, ":")
		if !ok {
			return nil, errAttemptsMetadata
		}
		a, err := strconv.Atoi(count)
		if err != nil || a < 1 {
			return nil, errAttemptsMetadata
		}
		dStr, nStr, hasN := strings.Cut(span, "+")
		d, err := strconv.ParseInt(dStr, 10, 64)
		if err != nil || d < 0 {
			return nil, errAttemptsMetadata
		}
		n := int64(0)
		if hasN {
			if n, err = strconv.ParseInt(nStr, 10, 64); err != nil || n < 1 {
				return nil, errAttemptsMetadata
			}
		}
		if expanded += int(min(n, maxSeededOffsets)) + 1; expanded > maxSeededOffsets {
			return nil, errAttemptsMetadata
		}
		if base+d+n < base {
			return nil, errAttemptsMetadata // overflow
		}
		for o := base + d; o <= base+d+n; o++ {
			if o >= from {
				out[o] = a
			}
		}
	}
	return out, nil
}

// loadAttempts reads the delivery attempts the group's committed offset
// metadata holds for partition, at or after the claim's initial offset,
// retrying until it succeeds or done closes (then ok is false). A
// malformed metadata string counts as none.
func (s *subscription) loadAttempts(partition int32, initial int64, done <-chan struct{}) (attempts map[int64]int, meta string, ok bool) {
	if s.cfg.attemptsMetadataMax <= 0 || initial < 0 {
		return nil, "", true // disabled, or no committed offset: nothing stored
	}
	for failures := 0; ; failures++ {
		block, err := s.committedBlock(partition)
		if err == nil {
			if block == nil || block.Offset < 0 {
				return nil, "", true
			}
			attempts, err := decodeAttempts(block.Metadata, max(initial, block.Offset))
			if err != nil || len(attempts) == 0 {
				return nil, "", true
			}
			return attempts, block.Metadata, true
		}
		select {
		case <-done:
			return nil, "", false
		case <-time.After(min(50*time.Millisecond<<min(failures, 6), 2*time.Second)):
		}
	}
}

// committedBlock fetches the group's committed offset and metadata for one
// partition (nil if none), with the side client.
func (s *subscription) committedBlock(partition int32) (*sarama.OffsetFetchResponseBlock, error) {
	client, err := s.dlq.sideClient()
	if err != nil {
		return nil, err
	}
	resp, err := s.fetchCommitted(client, []int32{partition})
	if err != nil {
		_ = client.RefreshCoordinator(s.cfg.group)
		return nil, err
	}
	b := resp.GetBlock(s.cfg.topic, partition)
	if b == nil {
		return nil, nil
	}
	if !errors.Is(b.Err, sarama.ErrNoError) {
		return nil, fmt.Errorf("kafka: committed offset of %s/%d: %w", s.cfg.topic, partition, b.Err)
	}
	return b, nil
}
