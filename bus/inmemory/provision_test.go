package inmemory_test

import (
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/internal/testkit"
)

func TestProvisionConformance(t *testing.T) {
	testkit.RunBusProvision(t, testkit.BusProvisionConfig{
		NewURLs: func(tb testing.TB) testkit.ProvisionURLs {
			name := uniqueName(tb)
			return testkit.ProvisionURLs{Topic: "inmemory://" + name, Subscription: "inmemory://" + name + "?subscription=worker"}
		},
		Spec: bus.ProvisionSpec{MaxAttempts: 4, AckDeadline: 5 * time.Second, Ordered: true},
	})
}
