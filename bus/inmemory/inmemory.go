// Package inmemory is payrail's in-process message bus driver, registered
// under the name "inmemory". It is the default MESSAGE_BUS_ADAPTER: a real
// broker with at-least-once delivery, visibility timeouts, redelivery,
// per-key ordering, fan-out, nack delays, dead-letter queues and redrive,
// all held in the memory of the current process. It suits tests, local
// development and single-process deployments; messages do not survive a
// restart and are not shared between processes.
//
// Import it for its side effect and open topics and subscriptions by URL:
//
//	import _ "github.com/payrail/payrail/bus/inmemory"
//
//	topic, err := bus.OpenTopic(ctx, "inmemory://payments")
//	sub, err := bus.OpenSubscription(ctx, "inmemory://payments?ack_deadline=10s")
//
// URLs opened through package bus share one process-wide Broker. Use
// NewBroker with NewTopic and NewSubscription (or Broker.OpenTopic and
// Broker.OpenSubscription with bus.NewTopic and bus.NewSubscription) for an
// isolated broker, for example one per test.
//
// # Topic URLs
//
//	inmemory://<topic>[?create=false]
//
// The topic name is the URL host. A topic is created on first open unless
// create=false is given, in which case opening a missing topic fails with an
// error wrapping bus.ErrNotFound. Every topic has a default subscription,
// created together with the topic, so messages published before any consumer
// exists are kept, as in a queue.
//
// # Subscription URLs
//
//	inmemory://<topic>[?subscription=<name>][&create=false][&ack_deadline=30s][&max_attempts=0][&ordered=true]
//
// Without the subscription parameter the URL names the topic's default
// subscription. With it, it names an additional, independent fan-out
// subscription that receives every message published after it was created.
// Topics and named subscriptions are created on first open unless
// create=false is given. The settings are:
//
//   - ack_deadline (Go duration, default 30s): how long a delivered message
//     stays invisible to other receivers before it is redelivered if it has
//     not been settled (the visibility timeout or lease).
//   - max_attempts (integer, default 0): when positive, a message whose next
//     delivery would exceed this many attempts is moved to the dead-letter
//     queue with the reason "max delivery attempts (N) exceeded" instead.
//     Zero means the broker never dead-letters on its own (package bus still
//     does after its own limit; see bus.WithMaxAttempts).
//   - ordered (boolean, default true): messages with the same non-empty Key
//     are delivered one at a time in publish order; the next is delivered
//     only after the previous one is acked or dead-lettered. A message that
//     is nacked or whose lease expires is redelivered before any later
//     message with its key. Messages without a key are never held back.
//
// Opening an existing subscription applies the settings present in the URL
// and keeps the others, so every open of a subscription may omit them.
// Changed settings apply from the next delivery; leases already granted keep
// their deadlines. Note that a *bus.Subscription reads the capabilities once,
// when it is opened, so handles opened earlier keep the old values. A
// subscription's state (its queue, in-flight deliveries and dead-letter
// queue) lives in the broker, not in the handle: closing a handle returns its
// unsettled deliveries to the queue, and a later open sees them. Unknown
// parameters, a missing topic name and malformed values fail with an error
// wrapping bus.ErrInvalidURL.
//
// # Semantics
//
// Published bodies and attributes are copied, and every delivery hands out
// its own copy, so neither publishers nor handlers can change a stored
// message. Each delivery carries a unique receipt: settling (or extending) a
// delivery whose lease has expired fails with ErrLeaseExpired and leaves any
// newer delivery of the message untouched. Subscriptions implement the
// optional driver interfaces Extender, DeadLetterQueue, Stater and Pinger.
// Topics and subscriptions convert with As to **Broker.
package inmemory

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/driver"
)

// Scheme is the URL scheme, and driver name, this package registers.
const Scheme = "inmemory"

// DefaultAckDeadline is the ack deadline of subscriptions whose URL does not
// set ack_deadline.
const DefaultAckDeadline = 30 * time.Second

// ErrLeaseExpired is returned when a delivery is acked, nacked, dead-lettered
// or extended after its ack deadline passed: the message was, or will be,
// redelivered under a new receipt, which the stale one cannot settle.
var ErrLeaseExpired = errors.New("inmemory: delivery lease expired; the message is redelivered under a new receipt")

func init() {
	bus.Register(Scheme, NewBroker())
}

// Broker is an in-process message broker holding named topics and their
// subscriptions. It implements driver.Driver and is safe for concurrent use.
// The zero value is an empty broker ready to use, but a Broker must not be
// copied after first use.
type Broker struct {
	mu     sync.Mutex
	topics map[string]*topic
}

var _ driver.Driver = (*Broker)(nil)

// NewBroker returns an empty broker. Brokers are independent: topics of one
// are invisible to another.
func NewBroker() *Broker { return &Broker{topics: map[string]*topic{}} }

// OpenTopic opens the topic the URL names (see the package documentation for
// the URL format), creating it unless the URL says create=false.
func (b *Broker) OpenTopic(ctx context.Context, u *url.URL) (driver.Topic, error) {
	if b == nil {
		return nil, errNilBroker
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg, err := parseURL(u, false)
	if err != nil {
		return nil, err
	}
	t, err := b.topic(cfg.topic, cfg.create)
	if err != nil {
		return nil, err
	}
	return &topicHandle{t: t}, nil
}

// OpenSubscription opens the subscription the URL names (see the package
// documentation for the URL format), creating it and its topic unless the
// URL says create=false, and applies the settings the URL gives.
func (b *Broker) OpenSubscription(ctx context.Context, u *url.URL) (driver.Subscription, error) {
	if b == nil {
		return nil, errNilBroker
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg, err := parseURL(u, true)
	if err != nil {
		return nil, err
	}
	return b.openSubscription(cfg)
}

func (b *Broker) openSubscription(cfg config) (*subHandle, error) {
	t, err := b.topic(cfg.topic, cfg.create)
	if err != nil {
		return nil, err
	}
	s, err := t.subscription(cfg.subscription, cfg.create)
	if err != nil {
		return nil, err
	}
	return s.open(cfg.settings), nil
}

// topic returns the named topic, creating it if create is set.
func (b *Broker) topic(name string, create bool) (*topic, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t, ok := b.topics[name]; ok {
		return t, nil
	}
	if !create {
		return nil, fmt.Errorf("inmemory: topic %q does not exist: %w", name, driver.ErrNotFound)
	}
	if b.topics == nil {
		b.topics = map[string]*topic{}
	}
	t := newTopic(b, name)
	b.topics[name] = t
	return t, nil
}

// NewTopic opens the named topic of b, creating it if needed, and wraps it in
// a portable *bus.Topic.
func NewTopic(b *Broker, topic string) (*bus.Topic, error) {
	if b == nil {
		return nil, errNilBroker
	}
	if topic == "" {
		return nil, fmt.Errorf("inmemory: empty topic name: %w", driver.ErrInvalidURL)
	}
	t, err := b.topic(topic, true)
	if err != nil {
		return nil, err
	}
	return bus.NewTopic(&topicHandle{t: t}), nil
}

// NewSubscription opens a subscription of the named topic of b, creating the
// topic and subscription if needed, and wraps it in a portable
// *bus.Subscription configured by opts. An empty subscription name selects
// the topic's default subscription. The subscription keeps its current
// settings (the defaults if it is new); use Broker.OpenSubscription with a
// URL to change them.
func NewSubscription(b *Broker, topic, subscription string, opts ...bus.SubscriptionOption) (*bus.Subscription, error) {
	if b == nil {
		return nil, errNilBroker
	}
	if topic == "" {
		return nil, fmt.Errorf("inmemory: empty topic name: %w", driver.ErrInvalidURL)
	}
	h, err := b.openSubscription(config{topic: topic, subscription: subscription, create: true})
	if err != nil {
		return nil, err
	}
	return bus.NewSubscription(h, opts...), nil
}

var errNilBroker = errors.New("inmemory: nil *Broker")

// asBroker implements As for topics and subscriptions of b.
func asBroker(b *Broker, i any) bool {
	if p, ok := i.(**Broker); ok && p != nil {
		*p = b
		return true
	}
	return false
}

// config is a parsed topic or subscription URL.
type config struct {
	topic        string
	subscription string // "" for the default subscription
	create       bool
	settings     settings
}

// settings holds the subscription settings a URL gives; nil fields were not
// given and keep their current values.
type settings struct {
	ackDeadline *time.Duration
	maxAttempts *int
	ordered     *bool
}

// invalidURL returns an error wrapping driver.ErrInvalidURL. It does not
// repeat the URL: package bus prefixes it (redacted) to the driver's error.
func invalidURL(format string, args ...any) error {
	return fmt.Errorf("inmemory: %s: %w", fmt.Sprintf(format, args...), driver.ErrInvalidURL)
}

// parseURL parses a topic URL, or a subscription URL if sub is set.
func parseURL(u *url.URL, sub bool) (config, error) {
	if u == nil {
		return config{}, fmt.Errorf("inmemory: nil URL: %w", driver.ErrInvalidURL)
	}
	kind := "topic"
	if sub {
		kind = "subscription"
	}
	if u.Opaque != "" || u.Host == "" {
		return config{}, invalidURL("missing topic name; want %s://<topic>", Scheme)
	}
	if u.User != nil {
		return config{}, invalidURL("user information is not supported")
	}
	if u.Path != "" && u.Path != "/" {
		return config{}, invalidURL("unexpected path %q; the topic name is the URL host", u.Path)
	}
	if u.Fragment != "" {
		return config{}, invalidURL("unexpected fragment")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return config{}, invalidURL("malformed query: %v", err)
	}
	cfg := config{topic: u.Host, create: true}
	for name, vals := range q {
		if len(vals) != 1 {
			return config{}, invalidURL("parameter %q given %d times", name, len(vals))
		}
		v := vals[0]
		switch {
		case name == "create":
			if cfg.create, err = strconv.ParseBool(v); err != nil {
				return config{}, invalidURL("create=%q is not a boolean", v)
			}
		case sub && name == "subscription":
			if v == "" {
				return config{}, invalidURL("empty subscription name; omit the parameter for the default subscription")
			}
			cfg.subscription = v
		case sub && name == "ack_deadline":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return config{}, invalidURL("ack_deadline=%q is not a positive duration", v)
			}
			cfg.settings.ackDeadline = &d
		case sub && name == "max_attempts":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return config{}, invalidURL("max_attempts=%q is not a non-negative integer", v)
			}
			cfg.settings.maxAttempts = &n
		case sub && name == "ordered":
			o, err := strconv.ParseBool(v)
			if err != nil {
				return config{}, invalidURL("ordered=%q is not a boolean", v)
			}
			cfg.settings.ordered = &o
		default:
			return config{}, invalidURL("unknown %s parameter %q", kind, name)
		}
	}
	return cfg, nil
}
