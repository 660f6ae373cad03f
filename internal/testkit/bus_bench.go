package testkit

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
)

// BenchBodySize is the body size of the bus benchmarks' messages.
const BenchBodySize = 256

// BenchBody returns the body of the bus benchmarks' messages: BenchBodySize
// pseudo-random bytes, the same in every run (for baselines publishing the
// same records).
func BenchBody() []byte { return busBody(BenchBodySize) }

// BenchmarkBus runs the bus benchmarks against the driver h connects to,
// each on a fresh pair, reporting msgs/s (and MB/s of bodies):
//
//   - Publish/batch=1: one Publish at a time;
//   - Publish/batch=100: PublishBatch of 100 messages at a time;
//   - PublishParallel: Publish from 16 goroutines per CPU;
//   - PublishReceive/batch=100: batches published while one Receive
//     (concurrency 64) acks them, timed until the last one is handled;
//   - ShutdownRedelivery: see BenchShutdownRedelivery (ms/redelivery).
func BenchmarkBus(b *testing.B, h BusHarness) {
	for _, batch := range []int{1, 100} {
		b.Run("Publish/batch="+strconv.Itoa(batch), func(b *testing.B) {
			p := busBenchPair(b, h)
			BenchPublish(b, p.Topic, batch)
		})
	}
	b.Run("PublishParallel", func(b *testing.B) {
		p := busBenchPair(b, h)
		BenchPublishParallel(b, p.Topic)
	})
	b.Run("PublishReceive/batch=100", func(b *testing.B) {
		p := busBenchPair(b, h)
		sub, err := p.OpenSubscription(context.Background(), bus.WithConcurrency(64))
		if err != nil {
			b.Fatalf("open subscription: %v", err)
		}
		defer sub.Close()
		BenchPublishReceive(b, p.Topic, sub, 100)
	})
	b.Run("ShutdownRedelivery", func(b *testing.B) { BenchShutdownRedelivery(b, h) })
}

func busBenchPair(b *testing.B, h BusHarness) BusPair {
	b.Helper()
	p, err := h.MakePair(context.Background(), b, PairConfig{})
	if err != nil {
		b.Fatalf("MakePair: %v", err)
	}
	b.Cleanup(func() { _ = p.Topic.Close() })
	return p
}

func busBenchMessages(n int, body []byte, seq int) []*bus.Message {
	ms := make([]*bus.Message, n)
	for i := range ms {
		ms[i] = &bus.Message{ID: "b" + strconv.Itoa(seq+i), Key: strconv.Itoa(seq + i), Body: body}
	}
	return ms
}

// BenchPublish publishes b.N messages of BenchBodySize bytes through topic,
// batch at a time, and reports msgs/s.
func BenchPublish(b *testing.B, topic *bus.Topic, batch int) {
	ctx := context.Background()
	body := busBody(BenchBodySize)
	b.SetBytes(BenchBodySize)
	b.ReportAllocs()
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		n := min(batch, b.N-sent)
		if err := topic.PublishBatch(ctx, busBenchMessages(n, body, sent)); err != nil {
			b.Fatalf("PublishBatch: %v", err)
		}
		sent += n
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchPublishParallel publishes b.N messages of BenchBodySize bytes with
// concurrent single-message Publish calls (16 goroutines per CPU) and
// reports msgs/s.
func BenchPublishParallel(b *testing.B, topic *bus.Topic) {
	ctx := context.Background()
	body := busBody(BenchBodySize)
	var seq atomic.Int64
	b.SetBytes(BenchBodySize)
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(seq.Add(1))
			if err := topic.Publish(ctx, &bus.Message{ID: "p" + strconv.Itoa(i), Key: strconv.Itoa(i), Body: body}); err != nil {
				b.Errorf("Publish: %v", err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchPublishConcurrent publishes b.N messages of BenchBodySize bytes from
// workers goroutines, each calling PublishBatch with batch messages at a
// time, and reports msgs/s. A synchronous publish API reaches a broker's
// pipelined throughput only with several calls in flight; this measures
// that.
func BenchPublishConcurrent(b *testing.B, topic *bus.Topic, workers, batch int) {
	ctx := context.Background()
	body := busBody(BenchBodySize)
	var next atomic.Int64
	errc := make(chan error, workers)
	b.SetBytes(BenchBodySize)
	b.ReportAllocs()
	b.ResetTimer()
	for range workers {
		go func() {
			for {
				end := int(next.Add(int64(batch)))
				start := end - batch
				if start >= b.N {
					errc <- nil
					return
				}
				if err := topic.PublishBatch(ctx, busBenchMessages(min(end, b.N)-start, body, start)); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	for range workers {
		if err := <-errc; err != nil {
			b.Errorf("PublishBatch: %v", err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchPublishReceive publishes b.N messages of BenchBodySize bytes, batch
// at a time, while sub.Receive handles and acks them; the time runs until
// the last message was handled. It reports msgs/s.
func BenchPublishReceive(b *testing.B, topic *bus.Topic, sub *bus.Subscription, batch int) {
	ctx := context.Background()
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
	body := busBody(BenchBodySize)
	b.SetBytes(BenchBodySize)
	b.ReportAllocs()
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		n := min(batch, b.N-sent)
		if err := topic.PublishBatch(ctx, busBenchMessages(n, body, sent)); err != nil {
			b.Fatalf("PublishBatch: %v", err)
		}
		sent += n
	}
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("only %d of %d messages handled", handled.Load(), total)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	cancel()
	if err := <-errc; err != nil {
		b.Fatalf("Receive: %v", err)
	}
}
