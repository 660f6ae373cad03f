package bus_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
	_ "github.com/payrail/payrail/bus/inmemory"
)

// TestOrderedRedeliveryOfNackedMessageRunsNext checks that on an ordered
// subscription, a nacked message that the broker redelivers while its
// handler is still returning (the in-memory broker, like SQS FIFO, makes a
// message nacked without delay available at once) is handled next as
// attempt 2, rather than being nacked again behind its own key, which
// would skip attempt 2 and could dead-letter it early.
func TestOrderedRedeliveryOfNackedMessageRunsNext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const name = "inmemory://ordered-redelivery"
	topic, err := bus.OpenTopic(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	defer topic.Close()
	sub, err := bus.OpenSubscription(ctx, name+"?ordered=true")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if !sub.Capabilities().Ordering {
		t.Fatal("the in-memory subscription does not declare Ordering")
	}
	if err := topic.Publish(ctx, &bus.Message{Key: "k", Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var attempts []int
	done := make(chan struct{})
	rctx, stop := context.WithCancel(ctx)
	recvErr := make(chan error, 1)
	go func() {
		recvErr <- sub.Receive(rctx, func(ctx context.Context, m *bus.Message) error {
			mu.Lock()
			attempts = append(attempts, m.DeliveryAttempt)
			mu.Unlock()
			if m.DeliveryAttempt == 1 {
				if err := m.Nack(ctx, 0); err != nil {
					return err
				}
				// Still running while the broker redelivers the message.
				time.Sleep(200 * time.Millisecond)
				return nil
			}
			close(done)
			return nil
		})
	}()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("the nacked message was not handled again")
	}
	stop()
	if err := <-recvErr; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("Receive: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(attempts) != 2 || attempts[0] != 1 || attempts[1] != 2 {
		t.Fatalf("handled at attempts %v; want [1 2]", attempts)
	}
}
