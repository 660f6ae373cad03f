package inmemory_test

import (
	"context"
	"fmt"
	"log"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/inmemory"
)

// An isolated broker (not the process-wide one behind inmemory:// URLs)
// with a topic and its default subscription. A nacked message is
// redelivered, counting the attempt; an acknowledged one is gone.
func Example() {
	ctx := context.Background()
	b := inmemory.NewBroker()
	topic, err := inmemory.NewTopic(b, "orders")
	if err != nil {
		log.Fatal(err)
	}
	defer closeLogged("topic", topic.Close)
	sub, err := inmemory.NewSubscription(b, "orders", "") // "": the topic's default subscription
	if err != nil {
		log.Fatal(err)
	}
	defer closeLogged("subscription", sub.Close)

	// Published before anyone receives: the default subscription keeps it.
	if err := topic.Publish(ctx, &bus.Message{Key: "order-1", Body: []byte("order placed")}); err != nil {
		log.Fatal(err)
	}

	rctx, stop := context.WithCancel(ctx)
	defer stop()
	err = sub.Receive(rctx, func(ctx context.Context, m *bus.Message) error {
		fmt.Println(string(m.Body), "attempt", m.DeliveryAttempt)
		if m.DeliveryAttempt == 1 {
			return m.Nack(ctx, 0) // redeliver at once
		}
		stop() // Receive returns once this handler has returned
		return m.Ack(ctx)
	})
	if err != nil {
		log.Fatal(err)
	}
	st, err := sub.Stats(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("left:", st.Backlog, st.InFlight)
	// Output:
	// order placed attempt 1
	// order placed attempt 2
	// left: 0 0
}

// closeLogged closes a resource at the end of an example, logging a
// failure (to standard error: not part of the example's output).
func closeLogged(what string, close func() error) {
	if err := close(); err != nil {
		log.Printf("closing %s: %v", what, err)
	}
}
