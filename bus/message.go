package bus

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/payrail/payrail/bus/driver"
)

// Message is a message published to a topic or received from a subscription.
//
// A received message must be settled exactly once: by Ack, Nack or
// DeadLetter, or by the handler's return value (see Handler). Settling twice
// returns ErrAlreadySettled.
type Message struct {
	// ID identifies the message. Publish assigns a random one if empty;
	// brokers with deduplication use it as the deduplication id.
	ID string
	// Key is the ordering and partition key: messages with the same key are
	// handled in order on buses whose subscriptions declare Ordering.
	Key string
	// Body is the payload, carried unchanged as bytes.
	Body []byte
	// Attributes are string headers carried with the message. Names starting
	// with "payrail." are reserved.
	Attributes map[string]string
	// DeliveryAttempt is 1 on first delivery, 2 on the first redelivery, and
	// so on. It is zero on messages that were not received.
	DeliveryAttempt int
	// PublishTime is when the broker accepted the message, if the driver knows.
	PublishTime time.Time

	sub     *Subscription
	dm      *driver.Message
	settled atomic.Bool
	outcome atomic.Int32 // outcomeAcked... once settled successfully
}

const (
	outcomeNone int32 = iota
	outcomeAcked
	outcomeNacked
	outcomeDeadLettered
)

// AttrDeadLetterReason is the attribute under which drivers that have no
// native field record why a message was dead-lettered.
const AttrDeadLetterReason = "payrail.dead_letter_reason"

func (m *Message) settle() error {
	if m.sub == nil {
		return errors.New("bus: settle of a message that was not received")
	}
	if !m.settled.CompareAndSwap(false, true) {
		return ErrAlreadySettled
	}
	return nil
}

// done records the result of a settle call: on failure the message may be
// settled again (a transient broker error can be retried).
func (m *Message) done(outcome int32, err error) error {
	if err != nil {
		if !errors.Is(err, ErrAlreadySettled) {
			m.settled.Store(false)
		}
		return err
	}
	m.outcome.Store(outcome)
	return nil
}

// Ack settles the message as processed: it is not redelivered.
func (m *Message) Ack(ctx context.Context) error {
	if err := m.settle(); err != nil {
		return err
	}
	return m.done(outcomeAcked, m.sub.ack(ctx, m))
}

// Nack settles the message as failed: it is redelivered no earlier than
// delay from now (on drivers declaring NackDelay), with DeliveryAttempt
// incremented.
func (m *Message) Nack(ctx context.Context, delay time.Duration) error {
	if err := m.settle(); err != nil {
		return err
	}
	return m.done(outcomeNacked, m.sub.nack(ctx, m, max(delay, 0)))
}

// DeadLetter moves the message to the dead-letter queue, recording reason,
// and settles it.
func (m *Message) DeadLetter(ctx context.Context, reason string) error {
	if err := m.settle(); err != nil {
		return err
	}
	return m.done(outcomeDeadLettered, m.sub.deadLetter(ctx, m, reason))
}

// Extend keeps the unsettled message invisible to other consumers for d from
// now. Subscriptions extend automatically while a handler runs; Extend is for
// callers that hold a message outside a handler. It returns ErrUnsupported on
// drivers without the Extend capability.
func (m *Message) Extend(ctx context.Context, d time.Duration) error {
	if m.sub == nil {
		return errors.New("bus: extend of a message that was not received")
	}
	if m.settled.Load() {
		return ErrAlreadySettled
	}
	return m.sub.extend(ctx, m, d)
}

// Settled reports whether the message has been acked, nacked or dead-lettered.
func (m *Message) Settled() bool { return m.settled.Load() }

// Permanent wraps err to tell a subscription's Receive loop that retrying is
// useless: the message is dead-lettered at once with err's text as reason.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// DeadLetter is a message held in a subscription's dead-letter queue.
type DeadLetter struct {
	// Message is the dead-lettered message with its original attributes.
	Message *Message
	// Reason says why it was dead-lettered.
	Reason string
	// DeadLetteredAt is when it was dead-lettered, if known.
	DeadLetteredAt time.Time
}
