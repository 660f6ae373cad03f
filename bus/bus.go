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
