package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/payrail/payrail/examples/internal/apptest"
	"github.com/payrail/payrail/payments"
)

// TestKafkaServerAndWorker runs the reference API server and worker with
// MESSAGE_BUS_ADAPTER=kafka against one in-process Kafka (franz-go's kfake,
// a real implementation of the Kafka wire protocol), sharing a payment
// store, and drives async payments over HTTP to their final states:
// approved ones are captured, declined ones declined, and a transiently
// failing one retried through the bus, then failed and dead-lettered.
func TestKafkaServerAndWorker(t *testing.T) {
	// The cluster, with the topic and its dead-letter topic provisioned.
	brokers := apptest.Kafka(t, 4, "payments-e2e")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := apptest.Config(t, map[string]string{
		"MESSAGE_BUS_ADAPTER":   "kafka",
		"KAFKA_BROKERS":         brokers,
		"PAYMENTS_TOPIC":        "payments-e2e",
		"KAFKA_GROUP_ID":        "payments-worker-e2e",
		"PAYMENTS_MAX_ATTEMPTS": "3",
		"WORKER_CONCURRENCY":    "8",
		"LOG_LEVEL":             "warn",
	})
	st := startStack(t, cfg, stackOptions{Store: payments.NewMemoryStore()})

	// 50 async payments: most approve, some decline, one fails transiently
	// on every attempt. (One only: the gateway router's circuit breaker
	// opens after 5 consecutive transient failures, and then leaves such
	// payments processing for reconciliation instead of failing them.)
	st.driveAsync(ctx, 50, "e2e-kafka", func(i int) (string, payments.Status) {
		switch {
		case i%10 == 3:
			return "pm_card_chargeDeclined", payments.StatusDeclined
		case i == 27:
			return "pm_card_processingError", payments.StatusFailed
		}
		return "pm_card_visa", payments.StatusCaptured
	}, 44, 5, 1)
	st.Stop()

	// The transiently failing payment went round the bus: delivered
	// PAYMENTS_MAX_ATTEMPTS times, then dead-lettered to payments-e2e.dlq
	// for the worker's group.
	_, subURL, err := cfg.BusURLs()
	if err != nil {
		t.Fatal(err)
	}
	checkDeadLetters(t, ctx, subURL, 1)
}
