package testkit

import (
	"context"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
)

// BusHarness connects the bus conformance suite to one driver and its real
// peer. Implementations live in the driver's _test.go files.
type BusHarness interface {
	// Capabilities declares what the driver supports; the suite checks
	// every declared capability and skips, naming it, every case that needs
	// an undeclared one.
	Capabilities() BusCapabilities
	// MakePair creates a fresh, uniquely named topic with one subscription
	// (and a second, independent one if cfg.FanOut), all existing before
	// MakePair returns so that nothing published afterwards is missed. It
	// registers the removal of what it created with tb.Cleanup. The suite
	// closes the returned Topic and every subscription it opens.
	MakePair(ctx context.Context, tb testing.TB, cfg PairConfig) (BusPair, error)
	// OpenMissingTopic opens a topic that does not exist on the peer. The
	// open itself, or the first Publish, must fail with an error wrapping
	// bus.ErrNotFound. It is called only when MissingEntityError is declared.
	OpenMissingTopic(ctx context.Context) (*bus.Topic, error)
	// OpenMissingSubscription opens a subscription that does not exist on
	// the peer (or whose topic does not). The open itself, or Receive, must
	// fail with an error wrapping bus.ErrNotFound. It is called only when
	// MissingEntityError is declared.
	OpenMissingSubscription(ctx context.Context) (*bus.Subscription, error)
}

// PairConfig says what the suite needs from a pair.
type PairConfig struct {
	// AckDeadline is the ack deadline (visibility timeout, lease) the case
	// would like the subscriptions to have, or zero for the driver's
	// default. Harnesses honour it as closely as the peer allows; the suite
	// reads the effective value from Subscription.Capabilities().AckDeadline.
	AckDeadline time.Duration
	// FanOut asks for a second subscription, independent of the first, in
	// BusPair.OpenSecondSubscription.
	FanOut bool
}

// BusPair is a fresh topic with its subscription(s), made by MakePair.
type BusPair struct {
	// Topic publishes to the pair's topic.
	Topic *bus.Topic
	// OpenSubscription opens a new handle on the pair's subscription (for
	// Kafka, a new member of its consumer group). The suite calls it more
	// than once to run competing consumers, and passes the options it needs
	// (such as bus.WithMaxAttempts); the harness appends none that would
	// override them.
	OpenSubscription func(ctx context.Context, opts ...bus.SubscriptionOption) (*bus.Subscription, error)
	// OpenSecondSubscription opens the second, independent subscription;
	// required when PairConfig.FanOut was set.
	OpenSecondSubscription func(ctx context.Context, opts ...bus.SubscriptionOption) (*bus.Subscription, error)
	// DeadLetters, if set, reads the pair's dead-lettered messages without
	// removing them, for drivers that declare DeadLetter but not
	// DLQInspectRedrive. When nil the suite uses Subscription.DeadLetters.
	DeadLetters func(ctx context.Context, max int) ([]*bus.DeadLetter, error)
}

// BusCapabilities are the capability flags a driver's harness declares.
// Every declared capability must pass the suite; undeclared ones skip their
// cases with the reason.
type BusCapabilities struct {
	// FanOut: two subscriptions of a topic each receive every message.
	FanOut bool
	// NackDelay: Nack(delay) redelivers no earlier than delay and no later
	// than delay plus NackDelayTolerance (plus a scheduling allowance).
	NackDelay bool
	// NackDelayTolerance is the accuracy of nack delays (default 300ms).
	NackDelayTolerance time.Duration
	// AckDeadlineRedelivery: a delivery neither settled nor extended is
	// redelivered, with DeliveryAttempt incremented, once the ack deadline
	// reported by Subscription.Capabilities passes.
	AckDeadlineRedelivery bool
	// Extend: a handler running past the ack deadline keeps its message
	// (Message.Extend and the subscription's automatic extension).
	Extend bool
	// DeadLetter: a message failing on its last allowed attempt, or with a
	// bus.Permanent error, is dead-lettered with the reason and its original
	// ID, Key, Body and Attributes, and not delivered again. Verified with
	// BusPair.DeadLetters or, if nil, Subscription.DeadLetters.
	DeadLetter bool
	// DLQInspectRedrive: Subscription.DeadLetters and Subscription.Redrive
	// work (implies the driver's DeadLetterQueue capability).
	DLQInspectRedrive bool
	// Ordering: messages with the same Key are handled one at a time, in
	// publish order, also across a nack.
	Ordering bool
	// MissingEntityError: a missing topic or subscription yields an error
	// wrapping bus.ErrNotFound (see OpenMissingTopic).
	MissingEntityError bool
	// Stats: Subscription.Stats reports backlog and in-flight counts.
	Stats bool
	// ShutdownHandBack: after Subscription.Shutdown, what the shut-down
	// consumer fetched but never started, and what its handlers nacked,
	// reach another consumer within ShutdownRedelivery (not after an ack
	// deadline).
	ShutdownHandBack bool

	// MaxBodyBytes is the largest body the peer carries, if below the
	// 256 KiB the suite sends by default.
	MaxBodyBytes int
	// ThroughputMessages is the size of the throughput smoke test
	// (default 10,000).
	ThroughputMessages int
	// ShutdownRedelivery bounds how soon after Subscription.Shutdown
	// returns another consumer receives the messages the shut-down one
	// handed back (default: a third of the ack deadline, or 10s when the
	// driver has none). Drivers whose consumers take over by a group
	// rebalance (Kafka) set it to what a rebalance takes on the peer.
	ShutdownRedelivery time.Duration
	// CaseTimeout bounds each case (default 60s).
	CaseTimeout time.Duration
	// Serial runs the cases one at a time instead of in parallel.
	Serial bool
	// Notes optionally explains, per capability name (e.g. "Extend"), why
	// it is not declared; the text is added to the skip message.
	Notes map[string]string
}

// Capability names, as used in skip messages and BusCapabilities.Notes.
const (
	CapFanOut                = "FanOut"
	CapNackDelay             = "NackDelay"
	CapAckDeadlineRedelivery = "AckDeadlineRedelivery"
	CapExtend                = "Extend"
	CapDeadLetter            = "DeadLetter"
	CapDLQInspectRedrive     = "DLQInspectRedrive"
	CapOrdering              = "Ordering"
	CapMissingEntityError    = "MissingEntityError"
	CapStats                 = "Stats"
	CapShutdownHandBack      = "ShutdownHandBack"
)

func (c BusCapabilities) has(name string) bool {
	switch name {
	case "":
		return true
	case CapFanOut:
		return c.FanOut
	case CapNackDelay:
		return c.NackDelay
	case CapAckDeadlineRedelivery:
		return c.AckDeadlineRedelivery
	case CapExtend:
		return c.Extend
	case CapDeadLetter:
		return c.DeadLetter
	case CapDLQInspectRedrive:
		return c.DLQInspectRedrive
	case CapOrdering:
		return c.Ordering
	case CapMissingEntityError:
		return c.MissingEntityError
	case CapStats:
		return c.Stats
	case CapShutdownHandBack:
		return c.ShutdownHandBack
	}
	return false
}

func (c BusCapabilities) withDefaults() BusCapabilities {
	if c.NackDelayTolerance <= 0 {
		c.NackDelayTolerance = 300 * time.Millisecond
	}
	if c.MaxBodyBytes <= 0 || c.MaxBodyBytes > 256<<10 {
		c.MaxBodyBytes = 256 << 10
	}
	if c.ThroughputMessages <= 0 {
		c.ThroughputMessages = 10_000
	}
	if c.CaseTimeout <= 0 {
		c.CaseTimeout = 60 * time.Second
	}
	return c
}
