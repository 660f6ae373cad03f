package apptest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/payrail/payrail/bus/kafka"
)

// Kafka starts an in-process Kafka cluster for one test (franz-go's kfake,
// a real implementation of the Kafka wire protocol) with one broker and
// partitions partitions per topic, provisions topic and its dead-letter
// topic as a deployment does with its own tooling or with
// kafka.EnsureTopic, and returns the brokers' addresses as KAFKA_BROKERS
// takes them.
func Kafka(tb testing.TB, partitions int, topic string) (brokers string) {
	tb.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(partitions))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cluster.Close)
	brokers = strings.Join(cluster.ListenAddrs(), ",")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := kafka.EnsureTopic(ctx, "kafka://"+brokers+"/"+topic); err != nil {
		tb.Fatalf("EnsureTopic: %v", err)
	}
	return brokers
}
