package inmemory_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/inmemory"
)

// BenchmarkPublishReceive measures end-to-end throughput through the
// portable layer: b.N messages published (singly or in batches) while one
// Receive loop handles and acks them. The msgs/s metric counts a message
// once it has been handled and acked.
func BenchmarkPublishReceive(b *testing.B) {
	for _, batch := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) { benchPublishReceive(b, batch) })
	}
}

func benchPublishReceive(b *testing.B, batch int) {
	ctx := context.Background()
	br := inmemory.NewBroker()
	topic, err := inmemory.NewTopic(br, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer topic.Close()
	sub, err := inmemory.NewSubscription(br, "bench", "", bus.WithConcurrency(64))
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()

	total := int64(b.N)
	var handled atomic.Int64
	done := make(chan struct{})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- sub.Receive(rctx, func(context.Context, *bus.Message) error {
			if handled.Add(1) == total {
				close(done)
			}
			return nil
		})
	}()

	body := make([]byte, 128)
	msgs := make([]*bus.Message, batch)
	b.ReportAllocs()
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		n := min(batch, b.N-sent)
		for i := range n {
			msgs[i] = &bus.Message{Body: body}
		}
		if err := topic.PublishBatch(ctx, msgs[:n]); err != nil {
			b.Fatal(err)
		}
		sent += n
	}
	<-done
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	cancel()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}
