// Package bus is payrail's portable message bus: topics to publish commands
// and subscriptions to receive them, with at-least-once delivery, bounded
// concurrency, per-key ordering, retry with back-off and dead-lettering.
//
// Drivers are registered database/sql-style and selected by URL scheme; the
// scheme names are the values of the MESSAGE_BUS_ADAPTER setting:
//
//	import _ "github.com/payrail/payrail/bus/inmemory"
//
//	topic, err := bus.OpenTopic(ctx, "inmemory://payments")
//	sub, err := bus.OpenSubscription(ctx, "inmemory://payments")
//
// A driver implements the small interfaces of package bus/driver; this
// package wraps them in the concrete types Topic, Subscription and Message,
// which add what every driver shares.
//
// # Shutdown
//
// Subscription.Shutdown(ctx) stops a subscription gracefully: its Receive
// loops stop fetching, messages fetched but not yet handed to a handler are
// handed back at once (see below), running handlers finish and their
// messages are settled, and the driver is released after the broker
// requests under way have finished. When ctx ends first, the handlers'
// contexts are cancelled (context.Cause is ErrClosed) and Shutdown returns
// ctx.Err(); a handler that then returns still has its message settled.
// Close is Shutdown without grace. Topic.Shutdown(ctx) waits for the
// publishes under way; Topic.Close waits without a deadline. Every one of
// them may be called again: once the shutdown is complete, later calls
// return nil.
//
// A service stops in this order: stop accepting work, Shutdown the
// subscriptions (the payments Worker does it for its own), and only then
// Shutdown the topics their handlers publish to.
//
// How each driver hands back what was fetched but not started:
//
//	driver      hand-back                                   counts as an attempt
//	inmemory    ready again at once                         no
//	kafka       not committed; the partition's next owner   no
//	            (after the group rebalance) delivers it
//	pubsub      the streams are half-closed when the        yes (Pub/Sub counts it)
//	            shutdown begins, so the server sends
//	            nothing more; what it had sent is nacked
//	            once they are over
//	servicebus  abandon                                     yes (DeliveryCount grows)
//	sns-sqs     ChangeMessageVisibility 0; long polls in    yes (ApproximateReceiveCount
//	            flight are let finish and hand back their    grows)
//	            catch (Shutdown may wait up to the poll's
//	            wait, 20s by default: set wait= lower)
//
// # Unlimited redelivery
//
// WithMaxAttempts(0) asks for unlimited redelivery: a failing message is
// retried until it succeeds and dead-lettered only for a Permanent error.
// The portable layer never dead-letters such a message for its attempts,
// but a broker with its own limit does:
//
//	driver      unlimited redelivery
//	inmemory    yes, unless the URL sets max_attempts
//	kafka       yes (Kafka itself never dead-letters)
//	pubsub      no: the driver requires a dead-letter policy, whose
//	            MaxDeliveryAttempts is 5 to 100; at most 100 attempts
//	servicebus  no: every queue and subscription dead-letters after its
//	            MaxDeliveryCount (max_delivery_count); set it high
//	sns-sqs     yes when the queue has no RedrivePolicy and the URL names
//	            the dead-letter queue with dlq_url; otherwise after the
//	            policy's maxReceiveCount (at most 1000)
//
// Where the broker's limit applies, Capabilities().MaxAttempts reports it
// and the portable layer dead-letters on that last attempt itself, with
// the handler's error as the reason.
package bus

import (
	"errors"

	"github.com/payrail/payrail/bus/driver"
	"github.com/payrail/payrail/internal/registry"
)

// Errors returned by this package and its drivers; test with errors.Is.
var (
	ErrClosed         = driver.ErrClosed
	ErrNotFound       = driver.ErrNotFound
	ErrUnsupported    = driver.ErrUnsupported
	ErrAlreadySettled = driver.ErrAlreadySettled
	ErrInvalidURL     = driver.ErrInvalidURL
	ErrPermission     = driver.ErrPermission
	// ErrUnknownDriver is returned by OpenTopic and OpenSubscription for a URL
	// whose scheme no registered driver handles.
	ErrUnknownDriver = errors.New("bus: unknown driver")
)

// Driver opens topics and subscriptions; see package bus/driver.
type Driver = driver.Driver

// Capabilities describes what a subscription supports; see driver.Capabilities.
type Capabilities = driver.Capabilities

// Stats is a point-in-time view of a subscription's queues; see driver.Stats.
type Stats = driver.Stats

var drivers = registry.New[Driver]("bus", map[string]string{
	"inmemory":   "github.com/payrail/payrail/bus/inmemory",
	"sns-sqs":    "github.com/payrail/payrail/bus/snssqs",
	"pubsub":     "github.com/payrail/payrail/bus/pubsub",
	"servicebus": "github.com/payrail/payrail/bus/servicebus",
	"kafka":      "github.com/payrail/payrail/bus/kafka",
}, ErrUnknownDriver, ErrInvalidURL)

// Register makes a bus driver available under name, the URL scheme that
// selects it. It panics if d is nil or name is already registered. Drivers
// call it from an init function.
func Register(name string, d Driver) { drivers.Register(name, d) }

// Drivers returns the sorted names of the registered bus drivers.
func Drivers() []string { return drivers.Drivers() }
