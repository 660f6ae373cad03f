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
			m.Metadata.(*pending).finish(nil)
		}
	}()
	go func() {
		defer t.done.Done()
		for e := range p.Errors() {
			e.Msg.Metadata.(*pending).finish(classify("produce to "+e.Msg.Topic, e.Err))
		}
	}()
	return t, nil
}

// pending tracks the records of one SendBatch until the producer reports
// each of them.
type pending struct {
	left atomic.Int64
	once sync.Once
	mu   sync.Mutex
	err  error
	done chan struct{}
}

func (p *pending) finish(err error) {
	if err != nil {
		p.mu.Lock()
		if p.err == nil {
			p.err = err
		}
		p.mu.Unlock()
	}
	if p.left.Add(-1) == 0 {
		close(p.done)
	}
}

// headerIDKey is the key of the ID header, shared by every record (sarama
// only reads it).
var headerIDKey = []byte(HeaderID)

// producerMessage builds the record of m for topicName.
func producerMessage(topicName string, m *driver.Message) *sarama.ProducerMessage {
	pm := &sarama.ProducerMessage{Topic: topicName, Value: sarama.ByteEncoder(m.Body)}
	if m.Key != "" {
		pm.Key = sarama.StringEncoder(m.Key)
	}
	pm.Headers = make([]sarama.RecordHeader, 0, len(m.Attributes)+1)
	pm.Headers = append(pm.Headers, sarama.RecordHeader{Key: headerIDKey, Value: []byte(m.ID)})
	if len(m.Attributes) > 0 {
		names := make([]string, 0, len(m.Attributes))
		for k := range m.Attributes {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, k := range names {
			pm.Headers = append(pm.Headers, sarama.RecordHeader{Key: []byte(k), Value: []byte(m.Attributes[k])})
		}
	}
	return pm
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

// SendBatch hands every record to the producer and waits until the brokers
// acknowledged all of them. The producer batches and pipelines the records
// of concurrent calls. If ctx ends first SendBatch returns ctx.Err(); records
// already handed over may still be published.
func (t *topic) SendBatch(ctx context.Context, ms []*driver.Message) error {
	if t.closed.Load() {
		return driver.ErrClosed
	}
	if err := checkAttributes(ms); err != nil {
		return err
	}
	p := &pending{done: make(chan struct{})}
	p.left.Store(int64(len(ms)))
	for i, m := range ms {
		pm := producerMessage(t.cfg.topic, m)
		pm.Metadata = p
		select {
		case t.producer.Input() <- pm:
		case <-ctx.Done():
			// The rest will never be reported: account for them.
			if p.left.Add(-int64(len(ms)-i)) == 0 {
				close(p.done)
			}
			return ctx.Err()
		}
	}
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.err
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
