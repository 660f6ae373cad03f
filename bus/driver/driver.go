// Package driver defines the interfaces a message bus driver implements.
//
// Applications do not use this package directly: they use package bus, which
// wraps these interfaces in portable concrete types and adds the behaviour
// every driver shares (bounded concurrency, per-key ordering, settlement
// bookkeeping, retry back-off and dead-lettering after a maximum number of
// attempts). The interfaces are intentionally small, in the style of
// database/sql/driver and gocloud.dev's driver packages.
//
// A driver registers itself with bus.Register in an init function and is
// selected by the scheme of the URL passed to bus.OpenTopic and
// bus.OpenSubscription.
package driver

import (
	"context"
	"errors"
	"net/url"
	"time"
)

// Sentinel errors. Drivers wrap them (fmt.Errorf("...: %w", driver.ErrNotFound))
// so that callers can test with errors.Is; package bus re-exports them.
var (
	// ErrClosed is returned by every operation on a closed topic or subscription.
	ErrClosed = errors.New("bus: closed")
	// ErrNotFound means the topic, subscription or queue does not exist.
	ErrNotFound = errors.New("bus: topic or subscription not found")
	// ErrUnsupported means the driver does not implement an optional capability.
	ErrUnsupported = errors.New("bus: operation not supported by this driver")
	// ErrAlreadySettled is returned when a message is acked, nacked or
	// dead-lettered a second time.
	ErrAlreadySettled = errors.New("bus: message already settled")
	// ErrInvalidURL means the URL given to Open is malformed for the driver.
	ErrInvalidURL = errors.New("bus: invalid URL")
	// ErrPermission means the credentials are not allowed to perform the operation.
	ErrPermission = errors.New("bus: permission denied")
)

// Message is the driver-level representation of a message.
//
// On publish the portable layer fills ID, Key, Body and Attributes. On receive
// the driver fills every field; AckID is opaque to the portable layer and is
// handed back to Ack, Nack, DeadLetter and Extend.
type Message struct {
	// ID identifies the message; publishers set it and it survives delivery.
	// Drivers use it as the broker's deduplication id where one exists.
	ID string
	// Key is the ordering / partition key. Messages with the same key are
	// delivered in publish order by drivers that declare Capabilities.Ordering.
	Key string
	// Body is the payload; drivers must carry arbitrary bytes unchanged.
	Body []byte
	// Attributes are string headers carried with the message.
	Attributes map[string]string
	// DeliveryAttempt is 1 on the first delivery and grows by one on each redelivery.
	DeliveryAttempt int
	// PublishTime is when the broker accepted the message, if known.
	PublishTime time.Time
	// AckID is the driver's handle for settling this delivery.
	AckID any
}

// DeadLetter is a message held in a dead-letter queue.
type DeadLetter struct {
	// Message is the original message; Attributes are preserved as published.
	Message Message
	// Reason says why the message was dead-lettered.
	Reason string
	// DeadLetteredAt is when it was moved to the dead-letter queue, if known.
	DeadLetteredAt time.Time
}

// Capabilities describes what a subscription supports. The conformance suite
// in internal/testkit checks every capability a driver declares.
type Capabilities struct {
	// Ordering: messages with the same Key are delivered one at a time in
	// publish order, the next only after the previous is settled.
	Ordering bool
	// FanOut: several subscriptions of one topic each receive every message.
	FanOut bool
	// NackDelay: Nack honours the requested redelivery delay.
	NackDelay bool
	// Extend: the subscription implements Extender.
	Extend bool
	// DeadLetterQueue: the subscription implements DeadLetterQueue.
	DeadLetterQueue bool
	// Stats: the subscription implements Stater.
	Stats bool
	// AckDeadline is how long a delivery stays invisible before it is
	// redelivered if not settled (zero if unknown or not applicable).
	AckDeadline time.Duration
	// MaxAttempts is the delivery attempt after which the broker dead-letters
	// a message on its own (zero if the broker does not).
	MaxAttempts int
}

// Driver opens topics and subscriptions from URLs whose scheme is the name the
// driver was registered under.
type Driver interface {
	// OpenTopic opens the topic the URL names.
	OpenTopic(ctx context.Context, u *url.URL) (Topic, error)
	// OpenSubscription opens the subscription the URL names.
	OpenSubscription(ctx context.Context, u *url.URL) (Subscription, error)
}

// Topic publishes messages.
type Topic interface {
	// SendBatch publishes the messages. It returns only when the broker has
	// accepted all of them, or an error. Drivers may split the batch.
	SendBatch(ctx context.Context, ms []*Message) error
	// Close releases the topic's resources. The portable layer guarantees
	// no concurrent SendBatch is running when Close is called.
	Close() error
	// As converts to the driver's native type (see bus.Topic.As).
	As(i any) bool
}

// Subscription receives messages.
type Subscription interface {
	// ReceiveBatch returns up to max messages. It blocks until at least one
	// message is available or ctx is done; it may return an empty batch and
	// a nil error after a long-poll interval. It returns ctx.Err() when ctx is done.
	ReceiveBatch(ctx context.Context, max int) ([]*Message, error)
	// Ack settles the delivery as processed; the message is not redelivered.
	Ack(ctx context.Context, m *Message) error
	// Nack settles the delivery as failed; the message is redelivered no
	// earlier than delay from now (drivers without NackDelay redeliver as
	// soon as they can), with DeliveryAttempt incremented.
	Nack(ctx context.Context, m *Message, delay time.Duration) error
	// DeadLetter moves the message to the dead-letter queue with the reason,
	// preserving its attributes, and settles the delivery.
	DeadLetter(ctx context.Context, m *Message, reason string) error
	// Capabilities reports what the subscription supports.
	Capabilities() Capabilities
	// Close releases the subscription's resources.
	Close() error
	// As converts to the driver's native type (see bus.Subscription.As).
	As(i any) bool
}

// Extender is implemented by subscriptions whose deliveries can be kept
// invisible for longer, for handlers that run past the ack deadline.
type Extender interface {
	// Extend makes the delivery invisible for d from now.
	Extend(ctx context.Context, m *Message, d time.Duration) error
}

// DeadLetterQueue is implemented by subscriptions whose dead-letter queue
// can be inspected and redriven.
type DeadLetterQueue interface {
	// PeekDeadLetters returns up to max dead letters without removing them.
	PeekDeadLetters(ctx context.Context, max int) ([]*DeadLetter, error)
	// Redrive moves up to max dead letters (all if max <= 0) back to the
	// subscription for redelivery, preserving Body, Key and Attributes, and
	// returns how many were moved. Redriven messages start again at
	// DeliveryAttempt 1.
	Redrive(ctx context.Context, max int) (int, error)
}

// Stats is a point-in-time view of a subscription's queues. A field is -1
// when the driver cannot read it.
type Stats struct {
	// Backlog is the number of messages waiting to be delivered.
	Backlog int64
	// InFlight is the number of delivered, unsettled messages.
	InFlight int64
	// DeadLetters is the number of messages in the dead-letter queue.
	DeadLetters int64
	// OldestAge is how long the oldest message waiting or in flight has
	// been in the subscription (-1 when the driver cannot read it, 0 when
	// the subscription is empty).
	OldestAge time.Duration
}

// Stater is implemented by subscriptions that can report Stats.
type Stater interface {
	// Stats reads the subscription's current counts.
	Stats(ctx context.Context) (Stats, error)
}

// Pinger is implemented by topics and subscriptions that can check their
// connection to the broker; readiness probes call it.
type Pinger interface {
	// Ping returns nil if the broker is reachable and the entity exists.
	Ping(ctx context.Context) error
}
