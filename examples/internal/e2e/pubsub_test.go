package e2e

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2/pstest"

	"github.com/payrail/payrail/bus/pubsub"
	"github.com/payrail/payrail/examples/internal/apptest"
	"github.com/payrail/payrail/payments"
)

// TestPubSubServerAndWorker runs the reference API server and worker with
// MESSAGE_BUS_ADAPTER=pubsub against pstest (Google's implementation of the
// Pub/Sub gRPC API) served on a local port and reached, as an emulator, via
// PUBSUB_EMULATOR_HOST. They share a payment store; async payments are
// driven over HTTP to their final states: approved ones captured, declined
// ones declined, and transiently failing ones retried through the bus, then
// failed and dead-lettered.
func TestPubSubServerAndWorker(t *testing.T) {
	srv := pstest.NewServer()
	t.Cleanup(func() { _ = srv.Close() })

	// PUBSUB_EMULATOR_HOST is in env: the client library reads it.
	cfg := apptest.Config(t, map[string]string{
		"PUBSUB_EMULATOR_HOST":  srv.Addr,
		"MESSAGE_BUS_ADAPTER":   "pubsub",
		"PUBSUB_PROJECT_ID":     "payrail-e2e",
		"PAYMENTS_TOPIC":        "payments-e2e",
		"PAYMENTS_SUBSCRIPTION": "payments-worker-e2e",
		"PAYMENTS_MAX_ATTEMPTS": "3",
		"WORKER_CONCURRENCY":    "8",
		"LOG_LEVEL":             "warn",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// Provision the topic, subscription and dead-letter topic and
	// subscription, as `opsctl bus provision --apply` does.
	_, subURL, err := cfg.BusURLs()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pubsub.Provision(ctx, subURL); err != nil {
		t.Fatalf("Provision(%s): %v", subURL, err)
	}

	st := startStack(t, cfg, stackOptions{Store: payments.NewMemoryStore()})

	// 50 async payments: most approve, some decline, some fail transiently.
	st.driveAsync(ctx, 50, "e2e-pubsub", tenthsMix, 40, 5, 5)
	st.Stop()

	// The transiently failing payments went round the bus: delivered
	// PAYMENTS_MAX_ATTEMPTS times, then dead-lettered to the subscription's
	// dead-letter topic, readable through its dead-letter subscription.
	checkDeadLetters(t, ctx, subURL, 5)
}

// BenchmarkAsyncPayments measures end-to-end async payments per second
// through the reference binaries: b.N payments are POSTed over HTTP with
// Prefer: respond-async by 8 concurrent clients, and the clock stops when
// the worker has captured the last one (read from the shared store). The
// baseline is MESSAGE_BUS_ADAPTER=inmemory (the worker inside the server);
// pubsub runs the standalone worker against pstest through
// PUBSUB_EMULATOR_HOST.
//
//	go test -run XXX -bench AsyncPayments ./examples/internal/e2e/
func BenchmarkAsyncPayments(b *testing.B) {
	b.Run("inmemory", func(b *testing.B) { benchAsyncPayments(b, "inmemory", 1) })
	b.Run("pubsub", func(b *testing.B) { benchAsyncPayments(b, "pubsub", 1) })
	// pstest hands a StreamingPull stream one message per 10 ms tick: more
	// streams (the subscription URL's streams parameter) lift that bound.
	b.Run("pubsub/streams=4", func(b *testing.B) { benchAsyncPayments(b, "pubsub", 4) })
}

func benchAsyncPayments(b *testing.B, adapter string, streams int) {
	env := map[string]string{
		"MESSAGE_BUS_ADAPTER": adapter,
		"WORKER_CONCURRENCY":  "16",
		"LOG_LEVEL":           "error",
	}
	if adapter == "pubsub" {
		srv := pstest.NewServer()
		b.Cleanup(func() { _ = srv.Close() })
		env["PUBSUB_EMULATOR_HOST"] = srv.Addr
		env["PUBSUB_PROJECT_ID"] = "payrail-bench"
		env["PAYMENTS_TOPIC"] = "payments-bench"
		env["PAYMENTS_SUBSCRIPTION"] = "payments-worker-bench"
		if streams > 1 {
			env["BUS_TOPIC_URL"] = "pubsub://payrail-bench/payments-bench"
			env["BUS_SUBSCRIPTION_URL"] = fmt.Sprintf("pubsub://payrail-bench/payments-bench?subscription=payments-worker-bench&streams=%d", streams)
		}
	}
	cfg := apptest.Config(b, env)
	if adapter == "pubsub" {
		_, subURL, err := cfg.BusURLs()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := pubsub.Provision(context.Background(), subURL); err != nil {
			b.Fatal(err)
		}
	}
	st := startStack(b, cfg, stackOptions{Store: payments.NewMemoryStore(), Logs: io.Discard})
	benchAsync(b, st, "bench")
}
