package bus_test

import (
	"context"
	"fmt"

	"github.com/payrail/payrail/bus"
	_ "github.com/payrail/payrail/bus/inmemory"
)

func ExampleOpenTopic() {
	ctx := context.Background()
	topic, err := bus.OpenTopic(ctx, "inmemory://example-orders")
	if err != nil {
		panic(err)
	}
	defer topic.Close()
	sub, err := bus.OpenSubscription(ctx, "inmemory://example-orders", bus.WithConcurrency(4))
	if err != nil {
		panic(err)
	}
	defer sub.Close()

	if err := topic.Publish(ctx, &bus.Message{Key: "order-1", Body: []byte("hello"), Attributes: map[string]string{"type": "greeting"}}); err != nil {
		panic(err)
	}
	rctx, stop := context.WithCancel(ctx)
	_ = sub.Receive(rctx, func(ctx context.Context, m *bus.Message) error {
		fmt.Println(string(m.Body), m.Attributes["type"], m.DeliveryAttempt)
		stop()
		return nil // acked
	})
	// Output: hello greeting 1
}
