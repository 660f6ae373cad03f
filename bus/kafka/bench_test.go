package kafka_test

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/kafka"
	"github.com/payrail/payrail/internal/testkit"
)

// BenchmarkPublish compares bus/kafka's publish throughput with a raw
// sarama AsyncProducer on the same kfake cluster, in the same run, with the
// same producer settings (idempotent, acks=all) and the same records: a key,
// a 256-byte value and the message-ID header. Run with at least 100k
// messages:
//
//	go test -run XXX -bench BenchmarkPublish -benchtime 200000x ./bus/kafka/
func BenchmarkPublish(b *testing.B) {
	b.Run("sarama-AsyncProducer", func(b *testing.B) {
		name := benchTopic(b)
		cpu(b, func() { benchRawSarama(b, name) })
	})
	for _, batch := range []int{100, 1000} {
		b.Run("bus-kafka/PublishBatch="+strconv.Itoa(batch), func(b *testing.B) {
			topic := openBenchTopic(b, benchTopic(b), "")
			cpu(b, func() { testkit.BenchPublish(b, topic, batch) })
		})
	}
	for _, workers := range []int{4, 16} {
		b.Run("bus-kafka/PublishBatch=1000x"+strconv.Itoa(workers)+"goroutines", func(b *testing.B) {
			topic := openBenchTopic(b, benchTopic(b), "")
			cpu(b, func() { testkit.BenchPublishConcurrent(b, topic, workers, 1000) })
		})
	}
	b.Run("bus-kafka/PublishParallel", func(b *testing.B) {
		topic := openBenchTopic(b, benchTopic(b), "")
		cpu(b, func() { testkit.BenchPublishParallel(b, topic) })
	})
	b.Run("bus-kafka/PublishParallel/idempotent=false", func(b *testing.B) {
		topic := openBenchTopic(b, benchTopic(b), "?idempotent=false")
		cpu(b, func() { testkit.BenchPublishParallel(b, topic) })
	})
	// The baseline again, last: the pair brackets the drivers' runs against
	// drift on a shared machine.
	b.Run("sarama-AsyncProducer-again", func(b *testing.B) {
		name := benchTopic(b)
		cpu(b, func() { benchRawSarama(b, name) })
	})
}

// cpu runs f and reports the process's CPU time (user+system, including
// the in-process kfake brokers) per message, a cost that a loaded machine
// distorts far less than wall-clock throughput.
func cpu(b *testing.B, f func()) {
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	f()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	used := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	b.ReportMetric(float64(used.Nanoseconds())/float64(b.N), "cpu-ns/msg")
}

// benchTopic creates a fresh 4-partition topic and deletes it afterwards,
// so that every benchmark starts with an empty kfake (whose memory would
// otherwise grow with every run and slow the later ones down).
func benchTopic(b *testing.B) string {
	b.Helper()
	name := uniqueName(b)
	ensure(b, name, 4)
	b.Cleanup(func() {
		admin, err := sarama.NewClusterAdmin(strings.Split(brokers, ","), sarama.NewConfig())
		if err != nil {
			b.Errorf("admin: %v", err)
			return
		}
		defer admin.Close()
		for _, t := range []string{name, name + ".dlq"} {
			if err := admin.DeleteTopic(t); err != nil {
				b.Errorf("delete topic %s: %v", t, err)
			}
		}
	})
	return name
}

func openBenchTopic(b *testing.B, name, params string) *bus.Topic {
	b.Helper()
	topic, err := bus.OpenTopic(context.Background(), topicURL(name)+params)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = topic.Close() })
	return topic
}

// benchRawSarama publishes b.N records through an AsyncProducer configured
// as bus/kafka configures its own, and waits for every acknowledgement.
func benchRawSarama(b *testing.B, name string) {
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
	defer p.Close()
	body := make([]byte, testkit.BenchBodySize)
	for i := range body {
		body[i] = byte(i)
	}
	done := make(chan error, 1)
	go func() {
		for range b.N {
			select {
			case <-p.Successes():
			case e := <-p.Errors():
				done <- e.Err
				return
			}
		}
		done <- nil
	}()
	b.SetBytes(testkit.BenchBodySize)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		id := "b" + strconv.Itoa(i)
		p.Input() <- &sarama.ProducerMessage{
			Topic:   name,
			Key:     sarama.StringEncoder(strconv.Itoa(i)),
			Value:   sarama.ByteEncoder(body),
			Headers: []sarama.RecordHeader{{Key: []byte(kafka.HeaderID), Value: []byte(id)}},
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
