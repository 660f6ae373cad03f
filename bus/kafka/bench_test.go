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
	"github.com/payrail/payrail/internal/testkit"
)

// BenchmarkPublish measures bus/kafka's publish throughput on kfake, with
// the CPU time per message. Its comparison with a raw sarama AsyncProducer
// at the same concurrency is in the bench module (bench/README.md), which
// runs both sides in one process. Run with at least 100k messages:
//
//	go test -run XXX -bench BenchmarkPublish -benchtime 200000x ./bus/kafka/
func BenchmarkPublish(b *testing.B) {
	for _, batch := range []int{100, 1000} {
		b.Run("PublishBatch="+strconv.Itoa(batch), func(b *testing.B) {
			topic := openBenchTopic(b, benchTopic(b), "")
			cpu(b, func() { testkit.BenchPublish(b, topic, batch) })
		})
	}
	for _, workers := range []int{4, 16} {
		b.Run("PublishBatch=1000x"+strconv.Itoa(workers)+"goroutines", func(b *testing.B) {
			topic := openBenchTopic(b, benchTopic(b), "")
			cpu(b, func() { testkit.BenchPublishConcurrent(b, topic, workers, 1000) })
		})
	}
	b.Run("PublishParallel", func(b *testing.B) {
		topic := openBenchTopic(b, benchTopic(b), "")
		cpu(b, func() { testkit.BenchPublishParallel(b, topic) })
	})
	b.Run("PublishParallel/idempotent=false", func(b *testing.B) {
		topic := openBenchTopic(b, benchTopic(b), "?idempotent=false")
		cpu(b, func() { testkit.BenchPublishParallel(b, topic) })
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
