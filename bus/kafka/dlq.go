package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/payrail/payrail/bus/driver"
)

// dlqIdle bounds the wait for the next dead-letter record while reading a
// partition up to its high-water mark (which transaction markers can keep
// out of reach).
const dlqIdle = 10 * time.Second

// dlq is a subscription's dead-letter topic: the producer used to
// dead-letter and to redrive, and the group's redrive cursor, kept as the
// committed offsets of the consumer group <group>.dlq. It has its own
// client (also used for Stats), created on first use, so that its requests
// do not queue behind the consumer group's long-polling fetches.
type dlq struct {
	s *subscription

	initMu   sync.Mutex
	client   sarama.Client
	producer sarama.SyncProducer

	mu       sync.Mutex // serialises scans: one partition consumer at a time
	consumer sarama.Consumer
}

func newDLQ(s *subscription) *dlq { return &dlq{s: s} }

// sideClient returns the dead-letter client, connecting on first use.
func (q *dlq) sideClient() (sarama.Client, error) {
	q.initMu.Lock()
	defer q.initMu.Unlock()
	return q.sideClientLocked()
}

func (q *dlq) sideClientLocked() (sarama.Client, error) {
	if q.client != nil {
		return q.client, nil
	}
	c, err := sarama.NewClient(q.s.cfg.brokers, q.s.cfg.sarama)
	if err != nil {
		return nil, classify("connect", err)
	}
	q.client = c
	return c, nil
}

func (q *dlq) syncProducer() (sarama.SyncProducer, error) {
	q.initMu.Lock()
	defer q.initMu.Unlock()
	if q.producer != nil {
		return q.producer, nil
	}
	client, err := q.sideClientLocked()
	if err != nil {
		return nil, err
	}
	p, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		return nil, classify("dead-letter producer", err)
	}
	q.producer = p
	return p, nil
}

// produce writes r to the dead-letter topic with the reason headers.
func (q *dlq) produce(ctx context.Context, r *record, reason string, attempts int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := q.syncProducer()
	if err != nil {
		return err
	}
	s := q.s
	pm := &sarama.ProducerMessage{Topic: s.cfg.dlqTopic, Value: sarama.ByteEncoder(r.body)}
	if r.key != "" {
		pm.Key = sarama.StringEncoder(r.key)
	}
	for _, h := range r.headers {
		if h == nil || string(h.Key) == HeaderRedriveGroup || reservedHeader(string(h.Key)) && string(h.Key) != HeaderID {
			continue
		}
		pm.Headers = append(pm.Headers, *h)
	}
	add := func(k, v string) {
		pm.Headers = append(pm.Headers, sarama.RecordHeader{Key: []byte(k), Value: []byte(v)})
	}
	if !hasHeader(pm.Headers, HeaderID) {
		add(HeaderID, r.id)
	}
	add(HeaderDLQReason, reason)
	add(HeaderDLQGroup, s.cfg.group)
	add(HeaderDLQAttempts, strconv.Itoa(attempts))
	add(HeaderDLQAt, time.Now().UTC().Format(time.RFC3339Nano))
	add(HeaderDLQSource, fmt.Sprintf("%s/%d/%d", s.cfg.topic, r.claim.partition, r.offset))
	if _, _, err := p.SendMessage(pm); err != nil {
		return classify("dead-letter to "+s.cfg.dlqTopic, err)
	}
	return nil
}

func hasHeader(hs []sarama.RecordHeader, k string) bool {
	for _, h := range hs {
		if string(h.Key) == k {
			return true
		}
	}
	return false
}

func header(msg *sarama.ConsumerMessage, k string) (string, bool) {
	for _, h := range msg.Headers {
		if h != nil && string(h.Key) == k {
			return string(h.Value), true
		}
	}
	return "", false
}

// mine reports whether a dead-letter record belongs to this group.
func (q *dlq) mine(msg *sarama.ConsumerMessage) bool {
	g, _ := header(msg, HeaderDLQGroup)
	return g == q.s.cfg.group
}

// cursors reads the group's redrive cursor: the committed offsets of the
// group <group>.dlq on the dead-letter topic (-1 where there is none).
func (q *dlq) cursors(client sarama.Client, parts []int32) (map[int32]int64, error) {
	s := q.s
	coord, err := client.Coordinator(q.group())
	if err != nil {
		return nil, classify("dead-letter cursor", err)
	}
	resp, err := coord.FetchOffset(sarama.NewOffsetFetchRequest(s.cfg.sarama.Version, q.group(), map[string][]int32{s.cfg.dlqTopic: parts}))
	if err != nil {
		return nil, classify("dead-letter cursor", err)
	}
	out := make(map[int32]int64, len(parts))
	for _, p := range parts {
		out[p] = -1
		// A group that never committed has no blocks (some brokers answer
		// GROUP_ID_NOT_FOUND): no cursor, start at the oldest record.
		if b := resp.GetBlock(s.cfg.dlqTopic, p); b != nil && errors.Is(b.Err, sarama.ErrNoError) {
			out[p] = b.Offset
		}
	}
	return out, nil
}

// commitCursor moves the partition's redrive cursor to next.
func (q *dlq) commitCursor(client sarama.Client, p int32, next int64) error {
	s := q.s
	coord, err := client.Coordinator(q.group())
	if err != nil {
		return classify("dead-letter cursor", err)
	}
	req := sarama.NewOffsetCommitRequest(s.cfg.sarama, q.group())
	req.AddBlock(s.cfg.dlqTopic, p, next, 0, "")
	resp, err := coord.CommitOffset(req)
	if err != nil {
		return classify("commit dead-letter cursor", err)
	}
	if kerr := resp.Errors[s.cfg.dlqTopic][p]; !errors.Is(kerr, sarama.ErrNoError) {
		return classify("commit dead-letter cursor", kerr)
	}
	return nil
}

func (q *dlq) group() string { return q.s.cfg.group + ".dlq" }

// scan calls visit with this group's dead letters after the cursor, in
// partition then offset order, until visit returns false. For each
// partition it reports through mark the offset after the last record
// visited (or skipped as another group's) before scanning stopped.
func (q *dlq) scan(ctx context.Context, visit func(msg *sarama.ConsumerMessage) bool, mark func(p int32, next int64)) error {
	s := q.s
	client, err := q.sideClient()
	if err != nil {
		return err
	}
	if err := q.ensureConsumer(client); err != nil {
		return err
	}
	parts, err := client.Partitions(s.cfg.dlqTopic)
	if err != nil {
		return classify("dead-letter topic "+s.cfg.dlqTopic, err)
	}
	cursors, err := q.cursors(client, parts)
	if err != nil {
		return err
	}
	for _, p := range parts {
		start := cursors[p]
		oldest, err := client.GetOffset(s.cfg.dlqTopic, p, sarama.OffsetOldest)
		if err != nil {
			return classify("dead-letter offsets", err)
		}
		hwm, err := client.GetOffset(s.cfg.dlqTopic, p, sarama.OffsetNewest)
		if err != nil {
			return classify("dead-letter offsets", err)
		}
		start = max(start, oldest) // no cursor yet (negative), or retention passed it
		if start >= hwm {
			continue
		}
		stop, next, err := q.scanPartition(ctx, p, start, hwm, visit)
		if mark != nil && next > start {
			mark(p, next)
		}
		if err != nil || stop {
			return err
		}
	}
	return nil
}

// ensureConsumer creates the side consumer on first use. Called with q.mu
// held.
func (q *dlq) ensureConsumer(client sarama.Client) error {
	if q.consumer != nil {
		return nil
	}
	c, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return classify("side consumer", err)
	}
	q.consumer = c
	return nil
}

// recordTimes reads the timestamp of the record at offset in each of the
// topic's partitions in at (partition -> offset), for Stats' OldestAge.
// Records without a timestamp are left out.
func (q *dlq) recordTimes(ctx context.Context, topic string, at map[int32]int64) ([]time.Time, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	client, err := q.sideClient()
	if err != nil {
		return nil, err
	}
	if err := q.ensureConsumer(client); err != nil {
		return nil, err
	}
	var out []time.Time
	for p, off := range at {
		pc, err := q.consumer.ConsumePartition(topic, p, off)
		if err != nil {
			return nil, classify("read the oldest record", err)
		}
		select {
		case msg, ok := <-pc.Messages():
			if ok && !msg.Timestamp.IsZero() {
				out = append(out, msg.Timestamp)
			}
		case <-ctx.Done():
			_ = pc.Close()
			return nil, ctx.Err()
		}
		_ = pc.Close()
	}
	return out, nil
}

func (q *dlq) scanPartition(ctx context.Context, p int32, start, hwm int64, visit func(*sarama.ConsumerMessage) bool) (stop bool, next int64, err error) {
	pc, err := q.consumer.ConsumePartition(q.s.cfg.dlqTopic, p, start)
	if err != nil {
		return false, start, classify("read dead letters", err)
	}
	defer func() { _ = pc.Close() }() // synchronous: the next scan may consume this partition again
	next = start
	idle := time.NewTimer(dlqIdle)
	defer idle.Stop()
	for next < hwm {
		select {
		case msg, ok := <-pc.Messages():
			if !ok {
				return false, next, nil
			}
			next = msg.Offset + 1
			if q.mine(msg) && !visit(msg) {
				return true, next, nil
			}
			idle.Reset(dlqIdle)
		case <-idle.C:
			return false, next, nil
		case <-ctx.Done():
			return true, next, ctx.Err()
		}
	}
	return false, next, nil
}

func decodeDeadLetter(msg *sarama.ConsumerMessage) *driver.DeadLetter {
	dl := &driver.DeadLetter{Message: driver.Message{Key: string(msg.Key), Body: msg.Value, Attributes: map[string]string{}, PublishTime: msg.Timestamp}}
	for _, h := range msg.Headers {
		if h == nil {
			continue
		}
		k, v := string(h.Key), string(h.Value)
		switch k {
		case HeaderID:
			dl.Message.ID = v
		case HeaderDLQReason:
			dl.Reason = v
		case HeaderDLQAttempts:
			dl.Message.DeliveryAttempt, _ = strconv.Atoi(v)
		case HeaderDLQAt:
			dl.DeadLetteredAt, _ = time.Parse(time.RFC3339Nano, v)
		default:
			if !reservedHeader(k) {
				dl.Message.Attributes[k] = v
			}
		}
	}
	if dl.Message.ID == "" {
		dl.Message.ID = fmt.Sprintf("%s-%d-%d", msg.Topic, msg.Partition, msg.Offset)
	}
	return dl
}

func (q *dlq) peek(ctx context.Context, max int) ([]*driver.DeadLetter, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []*driver.DeadLetter
	err := q.scan(ctx, func(msg *sarama.ConsumerMessage) bool {
		out = append(out, decodeDeadLetter(msg))
		return max <= 0 || len(out) < max
	}, nil)
	return out, err
}

func (q *dlq) count(ctx context.Context) (int64, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var n int64
	err := q.scan(ctx, func(*sarama.ConsumerMessage) bool { n++; return true }, nil)
	return n, err
}

// redrive produces this group's dead letters back to the topic, partition
// by partition, committing the cursor after each partition's produce.
func (q *dlq) redrive(ctx context.Context, max int) (int, error) {
	p, err := q.syncProducer()
	if err != nil {
		return 0, err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	s := q.s
	moved := 0
	var batch []*sarama.ProducerMessage
	var flushErr error
	err = q.scan(ctx, func(msg *sarama.ConsumerMessage) bool {
		dl := decodeDeadLetter(msg)
		pm := &sarama.ProducerMessage{Topic: s.cfg.topic, Value: sarama.ByteEncoder(dl.Message.Body)}
		if dl.Message.Key != "" {
			pm.Key = sarama.StringEncoder(dl.Message.Key)
		}
		pm.Headers = append(pm.Headers,
			sarama.RecordHeader{Key: []byte(HeaderID), Value: []byte(dl.Message.ID)},
			sarama.RecordHeader{Key: []byte(HeaderRedriveGroup), Value: []byte(s.cfg.group)})
		for _, h := range msg.Headers {
			if h != nil && !reservedHeader(string(h.Key)) {
				pm.Headers = append(pm.Headers, *h)
			}
		}
		batch = append(batch, pm)
		moved++
		return max <= 0 || moved < max
	}, func(part int32, next int64) {
		if flushErr != nil {
			return
		}
		if len(batch) > 0 {
			if err := p.SendMessages(batch); err != nil {
				flushErr = classify("redrive to "+s.cfg.topic, err)
				moved -= len(batch)
				return
			}
			batch = batch[:0]
		}
		client, err := q.sideClient()
		if err != nil {
			flushErr = err
			return
		}
		flushErr = q.commitCursor(client, part, next)
	})
	if flushErr != nil {
		return moved, flushErr
	}
	if err != nil {
		return moved, err
	}
	return moved, nil
}

func (q *dlq) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	var errs []error
	if q.consumer != nil {
		errs = append(errs, q.consumer.Close())
	}
	q.initMu.Lock()
	if q.producer != nil {
		errs = append(errs, q.producer.Close())
	}
	if q.client != nil {
		errs = append(errs, q.client.Close())
	}
	q.initMu.Unlock()
	_ = errors.Join(errs...) // closing is best effort; the client closes next
}
