package kafka_test

import (
	"context"
	"log"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/kafka"
)

// A producer and a consumer of the payments topic. The topic and its
// dead-letter topic payments.dlq must exist (see EnsureTopic).
func Example() {
	ctx := context.Background()
	topic, err := bus.OpenTopic(ctx, "kafka://broker1:9092,broker2:9092/payments")
	if err != nil {
		log.Fatal(err)
	}
	defer topic.Close()
	if err := topic.Publish(ctx, &bus.Message{Key: "order-1001", Body: []byte(`{"amount":1999}`)}); err != nil {
		log.Fatal(err)
	}

	sub, err := bus.OpenSubscription(ctx, "kafka://broker1:9092,broker2:9092/payments?group=payments-worker",
		bus.WithConcurrency(16), bus.WithMaxAttempts(5))
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	// Each message is acked when the handler returns nil, retried after a
	// back-off when it fails, and dead-lettered to payments.dlq after the
	// fifth attempt. Offsets are committed as messages are settled.
	err = sub.Receive(ctx, func(ctx context.Context, m *bus.Message) error {
		log.Printf("%s attempt %d: %s", m.ID, m.DeliveryAttempt, m.Body)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}

// Provisioning a topic and its dead-letter topic before the first open,
// for development and tests; production clusters usually use their own
// tooling.
func ExampleEnsureTopic() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := kafka.EnsureTopic(ctx, "kafka://localhost:9092/payments",
		kafka.WithPartitions(12), kafka.WithReplicationFactor(3),
		kafka.WithTopicConfig("retention.ms", "604800000"))
	if err != nil {
		log.Fatal(err)
	}
}
