package bus_test

import (
	"context"
	"fmt"
	"log"

	"github.com/payrail/payrail/bus"
	_ "github.com/payrail/payrail/bus/inmemory"
)

func ExampleOpenTopic() {
	ctx := context.Background()
	topic, err := bus.OpenTopic(ctx, "inmemory://example-orders")
	if err != nil {
		log.Fatal(err)
	}
	defer closeLogged("topic", topic.Close)
	sub, err := bus.OpenSubscription(ctx, "inmemory://example-orders", bus.WithConcurrency(4))
	if err != nil {
		log.Fatal(err)
	}
	defer closeLogged("subscription", sub.Close)

	if err := topic.Publish(ctx, &bus.Message{Key: "order-1", Body: []byte("hello"), Attributes: map[string]string{"type": "greeting"}}); err != nil {
		log.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	err = sub.Receive(rctx, func(ctx context.Context, m *bus.Message) error {
		fmt.Println(string(m.Body), m.Attributes["type"], m.DeliveryAttempt)
		stop()     // Receive returns once this handler has returned
		return nil // a nil error acks the message
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output: hello greeting 1
}

// closeLogged closes a resource at the end of an example, logging a
// failure (to standard error: not part of the example's output).
func closeLogged(what string, close func() error) {
	if err := close(); err != nil {
		log.Printf("closing %s: %v", what, err)
	}
}
