package pubsub_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	gpubsub "cloud.google.com/go/pubsub/v2"
)

// BenchmarkLibrary is the baseline for BenchmarkConformance: the client
// library used directly against the same pstest server, with the messages
// the driver sends (256-byte body, an ID attribute, an ordering key) and
// the same settings (1 ms publish delay, 4 streams, 64 outstanding).
//
//	go test -run XXX -bench 'Conformance/Publish/batch=100|Conformance/PublishReceive|Library' ./bus/pubsub/
func BenchmarkLibrary(b *testing.B) {
	b.Run("Publish/batch=100", func(b *testing.B) {
		name := uniqueName(b)
		provision(b, context.Background(), name, name+"-a", "")
		p := libPublisher(name)
		defer p.Stop()
		body := make([]byte, 256)
		b.SetBytes(256)
		b.ReportAllocs()
		b.ResetTimer()
		libPublish(b, p, body, 0, b.N, 100)
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("PublishReceive/batch=100", func(b *testing.B) {
		name := uniqueName(b)
		provision(b, context.Background(), name, name+"-a", "")
		p := libPublisher(name)
		defer p.Stop()
		sub := admin.Subscriber(name + "-a")
		sub.ReceiveSettings.MaxOutstandingMessages = 64
		sub.ReceiveSettings.NumGoroutines = 4
		total := int64(b.N)
		var handled atomic.Int64
		done := make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			errc <- sub.Receive(ctx, func(_ context.Context, m *gpubsub.Message) {
				m.Ack()
				if handled.Add(1) == total {
					close(done)
				}
			})
		}()
		body := make([]byte, 256)
		b.SetBytes(256)
		b.ReportAllocs()
		b.ResetTimer()
		libPublish(b, p, body, 0, b.N, 100)
		select {
		case <-done:
		case <-time.After(5 * time.Minute):
			b.Fatalf("only %d of %d handled", handled.Load(), total)
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		cancel()
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	})
}

func libPublisher(topic string) *gpubsub.Publisher {
	p := admin.Publisher(topic)
	p.EnableMessageOrdering = true
	p.PublishSettings.DelayThreshold = time.Millisecond
	return p
}

func libPublish(b *testing.B, p *gpubsub.Publisher, body []byte, from, to, batch int) {
	ctx := context.Background()
	rs := make([]*gpubsub.PublishResult, 0, batch)
	for sent := from; sent < to; {
		rs = rs[:0]
		for i := 0; i < batch && sent < to; i++ {
			id := "b" + strconv.Itoa(sent)
			rs = append(rs, p.Publish(ctx, &gpubsub.Message{Data: body, OrderingKey: strconv.Itoa(sent), Attributes: map[string]string{"payrail.id": id}}))
			sent++
		}
		for _, r := range rs {
			if _, err := r.Get(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
}
