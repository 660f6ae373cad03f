package kafka

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/IBM/sarama"

	"github.com/payrail/payrail/bus/driver"
)

// topic is the driver.Topic: one client and one AsyncProducer, whose
// results are matched back to the waiting SendBatch calls.
type topic struct {
	cfg      *config
	client   sarama.Client
	producer sarama.AsyncProducer
	done     sync.WaitGroup // the result dispatchers
	closed   atomic.Bool
}

var (
	_ driver.Topic  = (*topic)(nil)
	_ driver.Pinger = (*topic)(nil)
)

func openTopic(ctx context.Context, cfg *config) (*topic, error) {
	client, err := newClient(ctx, cfg, cfg.topic)
	if err != nil {
		return nil, err
	}
	p, err := sarama.NewAsyncProducerFromClient(client)
	if err != nil {
		_ = client.Close()
		return nil, classify("producer", err)
	}
	t := &topic{cfg: cfg, client: client, producer: p}
	t.done.Add(2)
	go func() {
		defer t.done.Done()
		for m := range p.Successes() {
			m.Metadata.(*pending).finish(1, nil)
		}
	}()
	go func() {
		defer t.done.Done()
		for e := range p.Errors() {
			e.Msg.Metadata.(*pending).finish(1, classify("produce to "+e.Msg.Topic, e.Err))
		}
	}()
	return t, nil
}

// pending tracks the records of one SendBatch until the producer reports
// each of them. SendBatch calls that return normally hand their pending
// back to pendings for the next call; one abandoned on a done context is
// left to the garbage collector, as the producer may still report its
// records.
type pending struct {
	left atomic.Int64
	mu   sync.Mutex
	err  error         // the first failure
	done chan struct{} // buffered: receives once, when left reaches 0
}

var pendings = sync.Pool{New: func() any { return &pending{done: make(chan struct{}, 1)} }}

// finish records the result of n records.
func (p *pending) finish(n int64, err error) {
	if err != nil {
		p.mu.Lock()
		if p.err == nil {
			p.err = err
		}
		p.mu.Unlock()
	}
	if p.left.Add(-n) == 0 {
		p.done <- struct{}{}
	}
}

// outRecord is a message's ProducerMessage with its first header and the
// encoders of its key and value: one allocation per SendBatch holds every
// record of the batch.
type outRecord struct {
	pm    sarama.ProducerMessage
	hdr   [1]sarama.RecordHeader
	key   byteEncoder
	value byteEncoder
}

// byteEncoder is sarama.ByteEncoder used through a pointer into an outRecord,
// so that setting ProducerMessage.Key and Value does not allocate.
type byteEncoder []byte

func (e *byteEncoder) Encode() ([]byte, error) { return *e, nil }
func (e *byteEncoder) Length() int             { return len(*e) }

// headerIDKey is the key of the ID header, shared by every record (sarama
// only reads it).
var headerIDKey = []byte(HeaderID)

// outRecords holds the records of one SendBatch: one slab of records, and
// one buffer holding the bytes of every key, ID and attribute. Slabs are
// reused (outSlabs) once the producer has reported every record of their
// batch, so that a batch costs no allocation of its records: sarama's
// messages are large, and a new slab per batch of a thousand was a large
// allocation, zeroed and collected each time.
type outRecords struct {
	topic string
	recs  []outRecord
	buf   []byte
}

// maxPooledRecords bounds the slabs kept for reuse (larger batches
// allocate theirs).
const maxPooledRecords = 4096

var outSlabs sync.Pool // of *outRecords

func newOutRecords(topicName string, ms []*driver.Message) *outRecords {
	size := 0
	for _, m := range ms {
		size += len(m.ID) + len(m.Key)
		for k, v := range m.Attributes {
			size += len(k) + len(v)
		}
	}
	o, _ := outSlabs.Get().(*outRecords)
	if o == nil || cap(o.recs) < len(ms) {
		o = &outRecords{recs: make([]outRecord, len(ms), max(len(ms), 16))}
	}
	o.topic, o.recs = topicName, o.recs[:len(ms)]
	if cap(o.buf) < size {
		o.buf = make([]byte, 0, size)
	}
	return o
}

// release returns o for reuse; the producer must have reported every one
// of its records. The records are cleared: sarama keeps its own state
// (retries, sequence numbers) in each message.
func (o *outRecords) release() {
	if cap(o.recs) > maxPooledRecords {
		return
	}
	clear(o.recs)
	o.buf = o.buf[:0]
	outSlabs.Put(o)
}

func (o *outRecords) bytesOf(s string) []byte {
	start := len(o.buf)
	o.buf = append(o.buf, s...)
	return o.buf[start:len(o.buf):len(o.buf)]
}

// build fills in the i-th record, of m, and returns its ProducerMessage.
func (o *outRecords) build(i int, m *driver.Message) *sarama.ProducerMessage {
	r := &o.recs[i]
	r.pm.Topic = o.topic
	r.value = m.Body
	r.pm.Value = &r.value
	if m.Key != "" {
		r.key = o.bytesOf(m.Key)
		r.pm.Key = &r.key
	}
	r.hdr[0] = sarama.RecordHeader{Key: headerIDKey, Value: o.bytesOf(m.ID)}
	r.pm.Headers = r.hdr[:]
	if len(m.Attributes) > 0 {
		names := make([]string, 0, len(m.Attributes))
		for k := range m.Attributes {
			names = append(names, k)
		}
		slices.Sort(names)
		r.pm.Headers = make([]sarama.RecordHeader, 1, len(names)+1)
		r.pm.Headers[0] = r.hdr[0]
		for _, k := range names {
			r.pm.Headers = append(r.pm.Headers, sarama.RecordHeader{Key: o.bytesOf(k), Value: o.bytesOf(m.Attributes[k])})
		}
	}
	return &r.pm
}

func checkAttributes(ms []*driver.Message) error {
	for _, m := range ms {
		if m == nil {
			return fmt.Errorf("kafka: SendBatch of a nil message")
		}
		for k := range m.Attributes {
			if reservedHeader(k) {
				return fmt.Errorf("kafka: message %q: attribute name %q is reserved by the driver", m.ID, k)
			}
		}
	}
	return nil
}

// SendBatch hands every record to the topic's producer and waits until the
// brokers acknowledged all of them (or the producer gave up on one: then
// it returns the first failure). Every SendBatch shares the one producer,
// so the records of concurrent calls go out together in the producer's
// batches, each call waiting only for its own. If ctx ends first SendBatch
// returns ctx.Err(); records already handed over may still be published.
func (t *topic) SendBatch(ctx context.Context, ms []*driver.Message) error {
	if t.closed.Load() {
		return driver.ErrClosed
	}
	if err := checkAttributes(ms); err != nil {
		return err
	}
	recs := newOutRecords(t.cfg.topic, ms)
	p := pendings.Get().(*pending)
	p.left.Store(int64(len(ms)))
	in := t.producer.Input()
	for i, m := range ms {
		// Each record goes to the producer as soon as it is built, so
		// that the first ones are on their way while the rest are built.
		pm := recs.build(i, m)
		pm.Metadata = p
		select {
		case in <- pm:
		case <-ctx.Done():
			// The rest will never be reported: account for them, and
			// abandon p to the records under way.
			p.finish(int64(len(ms)-i), nil)
			return ctx.Err()
		}
	}
	select {
	case <-p.done:
		err := p.err // written before the last finish, which sent on done
		p.err = nil
		pendings.Put(p)
		recs.release() // every record was reported: sarama is done with them
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Ping refreshes the topic's metadata, which needs a live broker.
func (t *topic) Ping(ctx context.Context) error {
	if t.closed.Load() {
		return driver.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return classify("ping", t.client.RefreshMetadata(t.cfg.topic))
}

// Close flushes the producer and closes the client.
func (t *topic) Close() error {
	if !t.closed.CompareAndSwap(false, true) {
		return driver.ErrClosed
	}
	// AsyncClose flushes what is buffered; the dispatchers report the
	// results and return when the producer closes its channels.
	t.producer.AsyncClose()
	t.done.Wait()
	return classify("close", t.client.Close())
}

// As supports *sarama.Client and *sarama.AsyncProducer.
func (t *topic) As(i any) bool {
	switch p := i.(type) {
	case *sarama.Client:
		*p = t.client
	case *sarama.AsyncProducer:
		*p = t.producer
	default:
		return false
	}
	return true
}
