package e2e

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/payrail/payrail/bus/snssqs"
	"github.com/payrail/payrail/examples/internal/apptest"
	"github.com/payrail/payrail/internal/testkit"
	"github.com/payrail/payrail/internal/testkit/fauxqs"
	"github.com/payrail/payrail/payments"
)

// snssqsPeer starts fauxqs (the SNS/SQS emulator) for one test and points
// the AWS SDK's default chain at it. It skips without fauxqs, and fails
// under CI=true.
func snssqsPeer(tb testing.TB) *fauxqs.Server {
	tb.Helper()
	srv, err := fauxqs.Start()
	testkit.StoreRequirePeer(tb, "fauxqs (the SNS/SQS emulator; .ci/setup.d/bus-snssqs-fauxqs.sh installs it)", err)
	tb.Cleanup(srv.Stop)
	for k, v := range srv.Env() {
		tb.Setenv(k, v)
	}
	return srv
}

// snssqsProvision creates the deployment's topic, queue and dead-letter
// queue, as `opsctl bus provision --apply` does.
func snssqsProvision(tb testing.TB, name string, fifo bool) *snssqs.Provisioned {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := snssqs.Provision(ctx, cfg, snssqs.ProvisionOptions{Name: name, FIFO: fifo, RawDelivery: true, MaxReceiveCount: 5})
	if err != nil {
		tb.Fatalf("Provision: %v", err)
	}
	return p
}

// snssqsEnv is the deployment's environment for a provisioned bus.
func snssqsEnv(p *snssqs.Provisioned) map[string]string {
	env := map[string]string{
		"MESSAGE_BUS_ADAPTER": "sns-sqs",
		"PAYMENTS_TOPIC_ARN":  p.TopicARN,
		"PAYMENTS_QUEUE_URL":  p.QueueURL,
		"QUEUE_TYPE":          "standard",
	}
	if p.FIFO {
		env["QUEUE_TYPE"] = "fifo"
	}
	return env
}

// TestSNSSQSServerAndWorker runs the reference API server and worker with
// MESSAGE_BUS_ADAPTER=sns-sqs against fauxqs, an SNS/SQS emulator, sharing
// a payment store, and drives async payments over HTTP to their final
// states: approved ones are captured, declined ones declined, and
// transiently failing ones retried through the queue (nacks are visibility
// changes) and then failed and dead-lettered. It runs on a standard and on
// a FIFO topic and queue.
func TestSNSSQSServerAndWorker(t *testing.T) {
	snssqsPeer(t)
	for _, fifo := range []bool{false, true} {
		t.Run(fmt.Sprintf("fifo=%t", fifo), func(t *testing.T) {
			p := snssqsProvision(t, fmt.Sprintf("payments-e2e-%t", fifo), fifo)
			env := snssqsEnv(p)
			env["PAYMENTS_MAX_ATTEMPTS"] = "3"
			env["WORKER_CONCURRENCY"] = "8"
			env["LOG_LEVEL"] = "warn"
			cfg := apptest.Config(t, env)
			topicURL, subURL, err := cfg.BusURLs()
			if err != nil || !strings.HasPrefix(topicURL, "sns-sqs://?topic_arn=") || !strings.HasPrefix(subURL, "sns-sqs://?queue_url=") {
				t.Fatalf("BusURLs = %s, %s, %v", topicURL, subURL, err)
			}
			st := startStack(t, cfg, stackOptions{Store: payments.NewMemoryStore()})
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()

			// 30 async payments: most approve, some decline, some fail transiently.
			st.driveAsync(ctx, 30, fmt.Sprintf("e2e-snssqs-%t", fifo), tenthsMix, 24, 3, 3)
			st.Stop()

			// The transiently failing payments went round the queue
			// PAYMENTS_MAX_ATTEMPTS times and were dead-lettered with the
			// worker's reason; the queue itself is empty.
			sub := checkDeadLetters(t, ctx, subURL, 3)
			stats, err := sub.Stats(ctx)
			if err != nil || stats.Backlog != 0 || stats.InFlight != 0 || stats.DeadLetters != 3 {
				t.Errorf("Stats = %+v, %v; want an empty queue and 3 dead letters", stats, err)
			}
		})
	}
}

// BenchmarkAsyncPaymentsSNSSQS measures end-to-end async payments per
// second through the reference binaries: b.N payments (pm_card_visa) are
// POSTed over HTTP with Prefer: respond-async by 8 concurrent clients, and
// the clock stops when the worker has captured the last one (read from the
// shared store). In the same run: the baseline MESSAGE_BUS_ADAPTER=inmemory
// (the worker inside the server), then sns-sqs with the standalone worker
// consuming through fauxqs, on a standard and on a FIFO topic and queue.
//
//	go test -run XXX -bench AsyncPaymentsSNSSQS -benchtime 2000x ./examples/internal/e2e/
func BenchmarkAsyncPaymentsSNSSQS(b *testing.B) {
	b.Run("inmemory", func(b *testing.B) { snssqsBenchAsync(b, "", false) })
	b.Run("sns-sqs", func(b *testing.B) { snssqsBenchAsync(b, "sns-sqs", false) })
	b.Run("sns-sqs/fifo", func(b *testing.B) { snssqsBenchAsync(b, "sns-sqs", true) })
}

var snssqsBenchSeq atomic.Int64

func snssqsBenchAsync(b *testing.B, adapter string, fifo bool) {
	env := map[string]string{"MESSAGE_BUS_ADAPTER": "inmemory", "WORKER_CONCURRENCY": "16", "LOG_LEVEL": "error"}
	if adapter == "sns-sqs" {
		snssqsPeer(b)
		p := snssqsProvision(b, fmt.Sprintf("payments-bench-%d", snssqsBenchSeq.Add(1)), fifo)
		for k, v := range snssqsEnv(p) {
			env[k] = v
		}
	}
	cfg := apptest.Config(b, env)
	st := startStack(b, cfg, stackOptions{Store: payments.NewMemoryStore(), Logs: io.Discard})
	benchAsync(b, st, "bench")
}
