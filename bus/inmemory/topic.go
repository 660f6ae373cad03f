package inmemory

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/payrail/payrail/bus/driver"
)

// message is a published message. It is immutable once published and shared
// by the entries of every subscription it was fanned out to.
type message struct {
	id        string
	key       string
	body      []byte
	attrs     map[string]string
	published time.Time
}

// topic is a topic's broker-side state; it outlives the handles opened on it.
type topic struct {
	broker *Broker
	name   string
	def    *subscription // the default subscription, created with the topic

	mu    sync.Mutex               // guards named and writes of subs
	named map[string]*subscription // additional fan-out subscriptions
	// subs is every subscription, default first. Publishers read it without
	// locking; it is replaced, never modified, when a subscription is added.
	subs atomic.Pointer[[]*subscription]
}

func newTopic(b *Broker, name string) *topic {
	t := &topic{broker: b, name: name, named: map[string]*subscription{}}
	t.def = newSubscription(t, "")
	t.subs.Store(&[]*subscription{t.def})
	return t
}

// subscription returns the named subscription ("" for the default one),
// creating it if create is set.
func (t *topic) subscription(name string, create bool) (*subscription, error) {
	if name == "" {
		return t.def, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.named[name]; ok {
		return s, nil
	}
	if !create {
		return nil, fmt.Errorf("inmemory: subscription %q of topic %q does not exist: %w", name, t.name, driver.ErrNotFound)
	}
	s := newSubscription(t, name)
	t.named[name] = s
	old := *t.subs.Load()
	subs := make([]*subscription, len(old), len(old)+1)
	copy(subs, old)
	subs = append(subs, s)
	t.subs.Store(&subs)
	return s, nil
}

// publish copies ms and enqueues the copies on every subscription. A call
// allocates its messages in one slab, their bodies in one buffer and, per
// subscription, their entries in one slab, so that a batch costs fewer
// allocations per message than single publishes (a dead-lettered message,
// which may stay for good, is copied out: see subscription.deadLetter).
func (t *topic) publish(ms []*driver.Message) error {
	size := 0
	for _, m := range ms {
		if m == nil {
			return errors.New("inmemory: SendBatch of a nil message")
		}
		size += len(m.Body)
	}
	now := time.Now()
	bodies := make([]byte, 0, size)
	msgs := make([]message, len(ms))
	for i, m := range ms {
		var body []byte
		if m.Body != nil {
			start := len(bodies)
			bodies = append(bodies, m.Body...)
			body = bodies[start:len(bodies):len(bodies)]
		}
		msgs[i] = message{
			id:        m.ID,
			key:       m.Key,
			body:      body,
			attrs:     maps.Clone(m.Attributes),
			published: now,
		}
	}
	for _, s := range *t.subs.Load() {
		s.enqueueNew(msgs)
	}
	return nil
}

// topicHandle is the driver.Topic returned by OpenTopic.
type topicHandle struct {
	t      *topic
	closed atomic.Bool
}

var (
	_ driver.Topic  = (*topicHandle)(nil)
	_ driver.Pinger = (*topicHandle)(nil)
)

// SendBatch publishes ms to every subscription of the topic. The broker has
// accepted them when it returns.
func (h *topicHandle) SendBatch(ctx context.Context, ms []*driver.Message) error {
	if h.closed.Load() {
		return driver.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return h.t.publish(ms)
}

// Close releases the handle. The topic and its messages stay in the broker.
func (h *topicHandle) Close() error {
	if !h.closed.CompareAndSwap(false, true) {
		return driver.ErrClosed
	}
	return nil
}

// Ping reports whether the handle is usable; the broker is always reachable.
func (h *topicHandle) Ping(ctx context.Context) error {
	if h.closed.Load() {
		return driver.ErrClosed
	}
	return ctx.Err()
}

// As supports **Broker.
func (h *topicHandle) As(i any) bool { return asBroker(h.t.broker, i) }
