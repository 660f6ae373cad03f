package pubsub_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/internal/testkit"
)

// The portable provisioning case against pstest. Pub/Sub's API does not
// report a subscription's backlog or the age of its oldest message (Cloud
// Monitoring does), so those read -1.
func TestProvisionConformance(t *testing.T) {
	testkit.RunBusProvision(t, testkit.BusProvisionConfig{
		NewURLs: func(tb testing.TB) testkit.ProvisionURLs {
			name := uniqueName(tb)
			cleanupProvisioned(tb, name, name+"-s")
			return testkit.ProvisionURLs{Topic: topicURL(name), Subscription: subURL(name, name+"-s")}
		},
		Spec:         bus.ProvisionSpec{MaxAttempts: 5, AckDeadline: 10 * time.Second, Ordered: true},
		UnknownStats: []string{"Backlog", "OldestAge"},
	})
}

// Attempts Pub/Sub cannot take are refused; 0 (unlimited) provisions its
// maximum; changing an ordered subscription to unordered is a conflict.
func TestProvisionSpecLimits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := uniqueName(t)
	cleanupProvisioned(t, name, name+"-s")
	u := subURL(name, name+"-s")
	if _, err := bus.Provision(ctx, u, bus.ProvisionSpec{MaxAttempts: 3}); !errors.Is(err, bus.ErrUnsupported) {
		t.Fatalf("Provision with MaxAttempts 3 = %v, want ErrUnsupported", err)
	}
	if _, err := bus.Provision(ctx, u, bus.ProvisionSpec{Ordered: true}); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	sub, err := bus.OpenSubscription(ctx, u)
	if err != nil {
		t.Fatalf("OpenSubscription: %v", err)
	}
	defer sub.Close()
	if c := sub.Capabilities(); c.MaxAttempts != 100 || !c.Ordering {
		t.Fatalf("Capabilities = %+v; want MaxAttempts 100 (MaxAttempts 0 = Pub/Sub's maximum) and Ordering", c)
	}
	if _, err := bus.Provision(ctx, u+"&ordered=false", bus.ProvisionSpec{}); !errors.Is(err, bus.ErrConflict) {
		t.Fatalf("Provision changing the ordering = %v, want ErrConflict", err)
	}
}
