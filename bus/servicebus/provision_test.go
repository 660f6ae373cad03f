package servicebus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/servicebus"
	"github.com/payrail/payrail/internal/testkit"
)

// The provisioning case against the Service Bus test peer, whose
// administration endpoint speaks the ATOM protocol of the SDK's
// admin.Client (over plain HTTP: see testkit.ServiceBusPeer.AdminTransport).
// The service does not count locked messages, so InFlight is -1.
func TestProvisionConformance(t *testing.T) {
	requirePeer(t)
	for _, kind := range []string{"queue", "topic"} {
		t.Run(kind, func(t *testing.T) {
			testkit.RunBusProvision(t, testkit.BusProvisionConfig{
				NewURLs: func(tb testing.TB) testkit.ProvisionURLs {
					name := uniqueName(tb)
					tb.Cleanup(func() { _ = peer.Delete(context.Background(), name) })
					u := "servicebus://" + name
					sub := u + "?max_delivery_count=4&lock_duration=10s"
					if kind == "topic" {
						sub = u + "?subscription=worker&max_delivery_count=4&lock_duration=10s"
					}
					return testkit.ProvisionURLs{Topic: u, Subscription: sub}
				},
				Spec:         bus.ProvisionSpec{MaxAttempts: 4, AckDeadline: 10 * time.Second},
				UnknownStats: []string{"InFlight"},
			})
		})
	}
}

// Provision updates a changed lock duration and delivery count, refuses to
// change RequiresSession, and sets the largest count for unlimited.
func TestProvisionUpdatesAndConflicts(t *testing.T) {
	requirePeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := uniqueName(t)
	t.Cleanup(func() { _ = peer.Delete(context.Background(), name) })
	u := "servicebus://" + name
	if _, err := bus.Provision(ctx, u, bus.ProvisionSpec{MaxAttempts: 3}); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	steps, err := bus.Provision(ctx, u, bus.ProvisionSpec{AckDeadline: 30 * time.Second})
	if err != nil || len(steps) != 1 || steps[0].Action != bus.ActionUpdated {
		t.Fatalf("Provision with another lock duration and unlimited attempts = %+v, %v; want the queue updated", steps, err)
	}
	if d := steps[0].Detail; d != "MaxDeliveryCount 2147483647, LockDuration 30s" {
		t.Errorf("update detail %q", d)
	}
	if _, err := bus.Provision(ctx, u, bus.ProvisionSpec{Ordered: true}); !errors.Is(err, bus.ErrConflict) {
		t.Fatalf("Provision turning on sessions = %v, want ErrConflict", err)
	}
	if _, err := bus.Provision(ctx, u+"?max_delivery_count=5", bus.ProvisionSpec{MaxAttempts: 3}); !errors.Is(err, bus.ErrInvalidURL) {
		t.Fatalf("Provision with a URL contradicting the spec = %v, want ErrInvalidURL", err)
	}
	if _, err := bus.Provision(ctx, u, bus.ProvisionSpec{AckDeadline: time.Second}); !errors.Is(err, bus.ErrUnsupported) {
		t.Fatalf("Provision with a 1s lock = %v, want ErrUnsupported (5s to 5m)", err)
	}
}

// With a key lacking the Manage right (the peer's "listen-send" key),
// Provision fails with ErrPermission and Stats reports the counts as
// unknown (-1) instead of failing, still peeking the oldest age. Not
// parallel: it changes the connection string the driver reads.
func TestStatsWithoutManageRight(t *testing.T) {
	requirePeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := uniqueName(t)
	t.Cleanup(func() { _ = peer.Delete(context.Background(), name) })
	if err := peer.CreateQueue(ctx, name, testkit.ServiceBusEntity{}); err != nil {
		t.Fatal(err)
	}
	t.Setenv(servicebus.EnvConnectionString, strings.Replace(peer.ConnectionString, "SharedAccessKeyName=k", "SharedAccessKeyName=listen-send", 1))
	u := "servicebus://" + name
	if _, err := bus.Provision(ctx, u, bus.ProvisionSpec{}); !errors.Is(err, bus.ErrPermission) {
		t.Fatalf("Provision with a Listen/Send key = %v, want ErrPermission", err)
	}
	topic, err := bus.OpenTopic(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer topic.Close()
	if err := topic.Publish(ctx, &bus.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	sub, err := bus.OpenSubscription(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for range 2 { // the second from the remembered refusal
		st, err := sub.Stats(ctx)
		if err != nil || st.Backlog != -1 || st.DeadLetters != -1 || st.InFlight != -1 || st.OldestAge <= 0 {
			t.Fatalf("Stats = %+v, %v; want unknown counts and the peeked age", st, err)
		}
	}
}
