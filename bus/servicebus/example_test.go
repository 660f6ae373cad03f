package servicebus_test

import (
	"context"
	"log"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/payrail/payrail/bus"
	_ "github.com/payrail/payrail/bus/servicebus"
)

// A producer and a consumer of the payments queue, authenticated with the
// connection string in SERVICEBUS_CONNECTION_STRING. The queue must exist;
// its lock duration and maximum delivery count are declared in the URL.
func Example() {
	ctx := context.Background()
	topic, err := bus.OpenTopic(ctx, "servicebus://payments")
	if err != nil {
		log.Fatal(err)
	}
	defer topic.Close()
	if err := topic.Publish(ctx, &bus.Message{Key: "order-1001", Body: []byte(`{"amount":1999}`)}); err != nil {
		log.Fatal(err)
	}

	sub, err := bus.OpenSubscription(ctx, "servicebus://payments?lock_duration=60s&max_delivery_count=10",
		bus.WithConcurrency(16), bus.WithMaxAttempts(5))
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	// Each message is completed when the handler returns nil, redelivered
	// after a back-off (a scheduled copy) when it fails, and dead-lettered to
	// payments/$DeadLetterQueue after the fifth attempt. Locks are renewed
	// while the handler runs.
	err = sub.Receive(ctx, func(ctx context.Context, m *bus.Message) error {
		log.Printf("%s attempt %d: %s", m.ID, m.DeliveryAttempt, m.Body)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}

// A topic subscription with sessions: messages with the same Key are
// handled one at a time, in order. Authentication is with Microsoft Entra
// ID (azidentity's default credential chain) instead of a connection
// string.
func Example_sessions() {
	ctx := context.Background()
	const ns = "namespace=payrail-prod.servicebus.windows.net"
	topic, err := bus.OpenTopic(ctx, "servicebus://payment-events?sessions=true&"+ns)
	if err != nil {
		log.Fatal(err)
	}
	defer topic.Close()
	sub, err := bus.OpenSubscription(ctx, "servicebus://payment-events?subscription=ledger&sessions=true&max_sessions=16&"+ns)
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	_ = sub.Receive(ctx, func(ctx context.Context, m *bus.Message) error {
		log.Printf("payment %s: event %s", m.Key, m.Body)
		return nil
	})
}

// Inspecting and redriving the dead-letter queue, and reaching the SDK.
func Example_deadLetters() {
	ctx := context.Background()
	sub, err := bus.OpenSubscription(ctx, "servicebus://payments")
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	dls, err := sub.DeadLetters(ctx, 10)
	if err != nil {
		log.Fatal(err)
	}
	for _, dl := range dls {
		log.Printf("%s after %d attempts: %s", dl.Message.ID, dl.Message.DeliveryAttempt, dl.Reason)
	}
	n, err := sub.Redrive(ctx, 0) // all of them, back to the queue
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("redrove %d messages", n)

	var receiver *azservicebus.Receiver
	if sub.As(&receiver) {
		peeked, _ := receiver.PeekMessages(ctx, 5, nil)
		log.Printf("%d messages waiting", len(peeked))
	}
}
