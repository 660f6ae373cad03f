package pubsub_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/pubsub"
)

// Provision the topic, the subscription with its dead-letter policy and the
// dead-letter topic and subscription, then publish and receive. The client
// library finds Pub/Sub through Application Default Credentials, or the
// emulator named by PUBSUB_EMULATOR_HOST (here pstest, set by TestMain).
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const subURL = "pubsub://payrail-test/example-payments?subscription=example-worker"
	steps, err := pubsub.Provision(ctx, subURL)
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range steps {
		fmt.Println(s.Kind, s.Name, s.Action)
	}

	topic, err := bus.OpenTopic(ctx, "pubsub://payrail-test/example-payments")
	if err != nil {
		log.Fatal(err)
	}
	defer topic.Close()
	sub, err := bus.OpenSubscription(ctx, subURL, bus.WithConcurrency(4))
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	c := sub.Capabilities()
	fmt.Println("ordered:", c.Ordering, "max attempts:", c.MaxAttempts, "ack deadline:", c.AckDeadline)

	if err := topic.Publish(ctx, &bus.Message{Key: "pay_123", Body: []byte(`{"op":"authorize"}`)}); err != nil {
		log.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	err = sub.Receive(rctx, func(ctx context.Context, m *bus.Message) error {
		fmt.Printf("received %s (key %s, attempt %d)\n", m.Body, m.Key, m.DeliveryAttempt)
		stop()
		return nil // acked
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// topic projects/payrail-test/topics/example-payments created
	// dead-letter topic projects/payrail-test/topics/example-worker.dlq created
	// dead-letter subscription projects/payrail-test/subscriptions/example-worker.dlq created
	// subscription projects/payrail-test/subscriptions/example-worker created
	// ordered: true max attempts: 5 ack deadline: 30s
	// received {"op":"authorize"} (key pay_123, attempt 1)
}
