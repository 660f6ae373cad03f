package kafka_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/internal/testkit"
)

func TestProvisionConformance(t *testing.T) {
	testkit.RunBusProvision(t, testkit.BusProvisionConfig{
		NewURLs: func(tb testing.TB) testkit.ProvisionURLs {
			name := uniqueName(tb)
			return testkit.ProvisionURLs{Topic: topicURL(name), Subscription: subURL(name, name+"-g")}
		},
		Spec: bus.ProvisionSpec{Partitions: 3},
	})
}

// An existing topic with another partition count is a conflict: Provision
// never adds partitions (keys would move).
func TestProvisionPartitionConflict(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := uniqueName(t)
	ensure(t, name, 2)
	_, err := bus.Provision(ctx, topicURL(name), bus.ProvisionSpec{Partitions: 3})
	if !errors.Is(err, bus.ErrConflict) {
		t.Fatalf("Provision with 3 partitions of a 2-partition topic = %v, want ErrConflict", err)
	}
	steps, err := bus.Provision(ctx, topicURL(name), bus.ProvisionSpec{Partitions: 2})
	if err != nil || len(steps) != 2 || steps[0].Action != bus.ActionExists || steps[1].Action != bus.ActionExists {
		t.Fatalf("Provision with the same partition count = %+v, %v; want both topics existing", steps, err)
	}
}
