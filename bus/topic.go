package bus

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"

	"github.com/payrail/payrail/bus/driver"
	"github.com/payrail/payrail/internal/registry"
)

// Topic publishes messages. It is safe for concurrent use.
type Topic struct {
	d   driver.Topic
	tel *topicTelemetry

	mu     sync.RWMutex // held for reading while sending, for writing by Close
	closed bool
}

// OpenTopic opens the topic named by urlstr; the scheme selects the driver.
// Options configure its telemetry (see TopicOption).
func OpenTopic(ctx context.Context, urlstr string, opts ...TopicOption) (*Topic, error) {
	d, u, err := drivers.Lookup(urlstr)
	if err != nil {
		return nil, err
	}
	dt, err := d.OpenTopic(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("bus: open topic %s: %w", registry.Redact(u), err)
	}
	return NewTopic(dt, append([]TopicOption{withURL(u, false)}, opts...)...), nil
}

// NewTopic wraps a driver topic. Drivers use it for constructors that take
// native clients instead of URLs; name the topic for telemetry with
// WithName.
func NewTopic(d driver.Topic, opts ...TopicOption) *Topic {
	return &Topic{d: d, tel: newTopicTelemetry(d, opts)}
}

// Publish publishes m. If m.ID is empty a random ID is assigned to it. Publish
// returns once the broker has accepted the message.
func (t *Topic) Publish(ctx context.Context, m *Message) error {
	return t.PublishBatch(ctx, []*Message{m})
}

// PublishBatch publishes ms, assigning IDs to messages that have none.
func (t *Topic) PublishBatch(ctx context.Context, ms []*Message) error {
	if len(ms) == 0 {
		return nil
	}
	for _, m := range ms {
		if m == nil {
			return errors.New("bus: Publish of a nil message")
		}
		if _, empty := m.Attributes[""]; empty {
			return errors.New("bus: message attribute with an empty name")
		}
	}
	dms := make([]*driver.Message, len(ms))
	for i, m := range ms {
		if m.ID == "" {
			m.ID = NewID()
		}
		dms[i] = &driver.Message{ID: m.ID, Key: m.Key, Body: m.Body, Attributes: m.Attributes}
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx, pub := t.tel.start(ctx, dms) // the publish span; its context goes into the attributes
	return t.tel.end(ctx, pub, t.d.SendBatch(ctx, dms))
}

// Ping checks that the broker is reachable, for readiness probes. Drivers
// that cannot check report nil.
func (t *Topic) Ping(ctx context.Context) error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return ErrClosed
	}
	if p, ok := t.d.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

// Close waits for in-progress publishes and releases the topic. Later calls
// return ErrClosed.
func (t *Topic) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return ErrClosed
	}
	t.closed = true
	return t.d.Close()
}

// As converts the topic to the driver's native type, such as a *sarama.Client
// or an *sqs.Client; see each driver's documentation for the types it supports.
func (t *Topic) As(i any) bool { return t.d.As(i) }

// NewID returns a random, URL-safe message identifier (26 base32 characters).
func NewID() string { return rand.Text() }
