package bench_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/inmemory"
	"github.com/payrail/payrail/bus/kafka"
	"github.com/payrail/payrail/internal/testkit"
)

// benchInmemory is bus/inmemory publish → Receive → ack, batch messages
// per PublishBatch, with one handler at a time (bus.WithConcurrency(1)):
// the concurrency of a GoChannel subscriber, which sends the next message
// only once the previous one was acked.
func benchInmemory(batch int) func(*testing.B) {
	return func(b *testing.B) {
		br := inmemory.NewBroker()
		topic, err := inmemory.NewTopic(br, "bench")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = topic.Close() })
		sub, err := inmemory.NewSubscription(br, "bench", "", bus.WithConcurrency(1))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = sub.Close() })
		testkit.BenchPublishReceive(b, topic, sub, batch)
	}
}

// benchGoChannel is Watermill's GoChannel with its defaults: batch
// messages per Publish while one subscriber acks each, timed until the last
// ack; message ids are Watermill's UUIDs, as its users create them.
func benchGoChannel(batch int) func(*testing.B) {
	return func(b *testing.B) {
		pubsub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
		b.Cleanup(func() { _ = pubsub.Close() })
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		msgs, err := pubsub.Subscribe(ctx, "bench")
		if err != nil {
			b.Fatal(err)
		}
		total := int64(b.N)
		var handled atomic.Int64
		done := make(chan struct{})
		go func() {
			for m := range msgs {
				m.Ack()
				if handled.Add(1) == total {
					close(done)
				}
			}
		}()
		body := make([]byte, testkit.BenchBodySize)
		out := make([]*message.Message, batch)
		b.SetBytes(testkit.BenchBodySize)
		b.ReportAllocs()
		b.ResetTimer()
		for sent := 0; sent < b.N; {
			n := min(batch, b.N-sent)
			for i := range n {
				out[i] = message.NewMessage(watermill.NewUUID(), body)
			}
			if err := pubsub.Publish("bench", out[:n]...); err != nil {
				b.Fatal(err)
			}
			sent += n
		}
		select {
		case <-done:
		case <-time.After(5 * time.Minute):
			b.Fatalf("only %d of %d messages acked", handled.Load(), total)
		}
		b.StopTimer()
	}
}

// withCPU wraps a bus benchmark so that it also reports the process's CPU
// time (user+system, the in-process kfake brokers included) per message:
// on a loaded machine a steadier cost than wall-clock throughput (go test
// -bench Compare prints it as cpu-ns/msg; the table shows throughput).
func withCPU(f func(*testing.B)) func(*testing.B) {
	return func(b *testing.B) {
		var before, after syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
		f(b)
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
		used := after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano()
		b.ReportMetric(float64(used)/float64(b.N), "cpu-ns/msg")
	}
}

var topicSeq atomic.Int64

// kafkaTopic creates a fresh 4-partition topic on the kfake cluster and
// deletes it afterwards, so that each run starts on an empty one.
func kafkaTopic(b *testing.B) string {
	b.Helper()
	name := "bench-" + strconv.FormatInt(topicSeq.Add(1), 10)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafka.EnsureTopic(ctx, topicURL(name), kafka.WithPartitions(4)); err != nil {
		b.Fatalf("EnsureTopic: %v", err)
	}
	b.Cleanup(func() {
		admin, err := sarama.NewClusterAdmin(strings.Split(brokers, ","), sarama.NewConfig())
		if err != nil {
			return
		}
		defer admin.Close()
		_ = admin.DeleteTopic(name)
		_ = admin.DeleteTopic(name + ".dlq")
	})
	return name
}

func topicURL(name string) string { return "kafka://" + brokers + "/" + name }

func openKafkaTopic(b *testing.B) *bus.Topic {
	topic, err := bus.OpenTopic(context.Background(), topicURL(kafkaTopic(b)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = topic.Close() })
	return topic
}

// benchKafkaParallel is single-message Publish from parallel goroutines
// (16 per CPU), each waiting for its acknowledgement before the next: the
// path of every async payment.
func benchKafkaParallel(b *testing.B) { testkit.BenchPublishParallel(b, openKafkaTopic(b)) }

// benchKafkaBatch is PublishBatch of batch messages at a time.
func benchKafkaBatch(batch int) func(*testing.B) {
	return func(b *testing.B) { testkit.BenchPublish(b, openKafkaTopic(b), batch) }
}

// saramaProducer is a raw sarama AsyncProducer configured as bus/kafka
// configures its own (idempotent, acks=all, 5 retries, one request in
// flight per broker); everything else is sarama's defaults.
func saramaProducer(b *testing.B) sarama.AsyncProducer {
	cfg := sarama.NewConfig()
	cfg.Version = kafka.DefaultVersion
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Retry.Max = 5
	cfg.Producer.Return.Successes = true
	cfg.Producer.Return.Errors = true
	cfg.Net.MaxOpenRequests = 1
	p, err := sarama.NewAsyncProducer(strings.Split(brokers, ","), cfg)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// saramaRecord is the record bus/kafka sends for message i: a key, a
// BenchBodySize value and the message-ID header.
func saramaRecord(topic string, i int, body []byte) *sarama.ProducerMessage {
	return &sarama.ProducerMessage{
		Topic:   topic,
		Key:     sarama.StringEncoder(strconv.Itoa(i)),
		Value:   sarama.ByteEncoder(body),
		Headers: []sarama.RecordHeader{{Key: []byte(kafka.HeaderID), Value: []byte("b" + strconv.Itoa(i))}},
	}
}

// benchSaramaParallel is the raw counterpart of benchKafkaParallel, at the
// same concurrency: as many goroutines, each handing one record to the
// shared producer and waiting for its acknowledgement (a channel per
// goroutine in the record's Metadata, completed by a goroutine reading
// Successes) before it sends the next.
func benchSaramaParallel(b *testing.B) {
	name := kafkaTopic(b)
	p := saramaProducer(b)
	var wg sync.WaitGroup
	wg.Go(func() {
		for m := range p.Successes() {
			m.Metadata.(chan error) <- nil
		}
	})
	wg.Go(func() {
		for e := range p.Errors() {
			e.Msg.Metadata.(chan error) <- e.Err
		}
	})
	defer wg.Wait()
	defer p.AsyncClose()
	body := testkit.BenchBody()
	var seq atomic.Int64
	b.SetBytes(testkit.BenchBodySize)
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		done := make(chan error, 1)
		for pb.Next() {
			m := saramaRecord(name, int(seq.Add(1)), body)
			m.Metadata = done
			p.Input() <- m
			if err := <-done; err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
}

// benchSaramaBatch is the raw counterpart of benchKafkaBatch(batch), at the
// same concurrency: batch records handed to the producer, then their
// acknowledgements awaited before the next batch.
func benchSaramaBatch(batch int) func(*testing.B) {
	return func(b *testing.B) {
		name := kafkaTopic(b)
		p := saramaProducer(b)
		defer p.Close()
		body := testkit.BenchBody()
		b.SetBytes(testkit.BenchBodySize)
		b.ReportAllocs()
		b.ResetTimer()
		for sent := 0; sent < b.N; {
			n := min(batch, b.N-sent)
			for i := range n {
				p.Input() <- saramaRecord(name, sent+i, body)
			}
			for range n {
				select {
				case <-p.Successes():
				case e := <-p.Errors():
					b.Fatal(e.Err)
				}
			}
			sent += n
		}
		b.StopTimer()
	}
}
