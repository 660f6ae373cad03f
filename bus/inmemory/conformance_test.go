package inmemory_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/internal/testkit"
)

// harness runs the bus conformance suite on the process-wide broker that
// bus.OpenTopic and bus.OpenSubscription use, through URLs.
type harness struct{}

func (harness) Capabilities() testkit.BusCapabilities {
	return testkit.BusCapabilities{
		FanOut:                true,
		NackDelay:             true,
		NackDelayTolerance:    200e6, // 200ms: timers in-process
		AckDeadlineRedelivery: true,
		Extend:                true,
		DeadLetter:            true,
		DLQInspectRedrive:     true,
		Ordering:              true,
		MissingEntityError:    true,
		Stats:                 true,
		ShutdownHandBack:      true,
	}
}

func (harness) MakePair(ctx context.Context, tb testing.TB, cfg testkit.PairConfig) (testkit.BusPair, error) {
	name := uniqueName(tb)
	topic, err := bus.OpenTopic(ctx, "inmemory://"+name)
	if err != nil {
		return testkit.BusPair{}, err
	}
	subURL := "inmemory://" + name
	if cfg.AckDeadline > 0 {
		subURL += "?ack_deadline=" + cfg.AckDeadline.String()
	}
	p := testkit.BusPair{
		Topic: topic,
		OpenSubscription: func(ctx context.Context, opts ...bus.SubscriptionOption) (*bus.Subscription, error) {
			return bus.OpenSubscription(ctx, subURL, opts...)
		},
	}
	if cfg.FanOut {
		second := fmt.Sprintf("inmemory://%s?subscription=second", name)
		if cfg.AckDeadline > 0 {
			second += "&ack_deadline=" + cfg.AckDeadline.String()
		}
		// Create it now: named subscriptions receive what is published
		// after they exist.
		s, err := bus.OpenSubscription(ctx, second)
		if err != nil {
			return testkit.BusPair{}, err
		}
		_ = s.Close()
		p.OpenSecondSubscription = func(ctx context.Context, opts ...bus.SubscriptionOption) (*bus.Subscription, error) {
			return bus.OpenSubscription(ctx, second, opts...)
		}
	}
	return p, nil
}

func (harness) OpenMissingTopic(ctx context.Context) (*bus.Topic, error) {
	return bus.OpenTopic(ctx, "inmemory://testkit-missing-topic?create=false")
}

func (harness) OpenMissingSubscription(ctx context.Context) (*bus.Subscription, error) {
	return bus.OpenSubscription(ctx, "inmemory://testkit-missing-sub-topic?create=false")
}

func TestConformance(t *testing.T) { testkit.RunBusConformance(t, harness{}) }

func BenchmarkConformance(b *testing.B) { testkit.BenchmarkBus(b, harness{}) }
