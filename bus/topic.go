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

	mu      sync.RWMutex   // guards closed against the sends counter
	closed  bool           // Shutdown or Close began
	sends   sync.WaitGroup // publishes under way
	done    chan struct{}  // closed when the driver topic is released
	kill    context.Context
	killFn  context.CancelFunc
	doneErr error // set before done is closed
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
// WithName. A nil d is not a panic: every call fails with ErrNoDriver.
func NewTopic(d driver.Topic, opts ...TopicOption) *Topic {
	if d == nil {
		d = noDriver{}
	}
	t := &Topic{d: d, tel: newTopicTelemetry(d, opts), done: make(chan struct{})}
	t.kill, t.killFn = context.WithCancel(context.Background())
	return t
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
	slab := make([]driver.Message, len(ms)) // one allocation per call, not per message
	for i, m := range ms {
		if m.ID == "" {
			m.ID = NewID()
		}
		slab[i] = driver.Message{ID: m.ID, Key: m.Key, Body: m.Body, Attributes: m.Attributes}
		dms[i] = &slab[i]
	}
	t.mu.RLock()
	if t.closed {
		t.mu.RUnlock()
		return ErrClosed
	}
	t.sends.Add(1)
	t.mu.RUnlock()
	defer t.sends.Done()
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
	if t.closed {
		t.mu.RUnlock()
		return ErrClosed
	}
	t.sends.Add(1)
	t.mu.RUnlock()
	defer t.sends.Done()
	if p, ok := t.d.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

// Shutdown stops the topic: later publishes fail with ErrClosed, and
// Shutdown waits for those under way to finish before it releases the
// driver topic (flushing what a driver buffers, where it does). It returns
// when that is done, with the driver's error, or when ctx is done, with
// ctx.Err(): publishes still under way then keep their own contexts, and
// the driver is released, without further grace, after the last returned.
//
// Shutdown and Close may be called several times and concurrently: a call
// after the topic was released does nothing and returns nil; a call
// during shutdown waits for it. Shut down topics after the subscriptions
// whose handlers publish to them (see Subscription.Shutdown).
func (t *Topic) Shutdown(ctx context.Context) error {
	first := t.begin()
	select {
	case <-t.done:
		if first {
			return t.doneErr
		}
		return nil
	case <-ctx.Done():
		t.killFn()
		return ctx.Err()
	}
}

// Close waits for publishes under way and releases the topic; it is
// Shutdown without a deadline. Later calls do nothing and return nil.
func (t *Topic) Close() error {
	first := t.begin()
	<-t.done
	if first {
		return t.doneErr
	}
	return nil
}

func (t *Topic) begin() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.closed = true
	go func() {
		t.sends.Wait()
		if sd, ok := t.d.(driver.Shutdowner); ok {
			t.doneErr = sd.Shutdown(t.kill)
		} else {
			t.doneErr = t.d.Close()
		}
		t.killFn()
		close(t.done)
	}()
	return true
}

// As converts the topic to the driver's native type, such as a *sarama.Client
// or an *sqs.Client; see each driver's documentation for the types it supports.
func (t *Topic) As(i any) bool { return t.d.As(i) }

// NewID returns a random, URL-safe message identifier (26 base32 characters).
func NewID() string { return rand.Text() }
