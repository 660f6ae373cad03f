package e2e

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/bus/servicebus"
	"github.com/payrail/payrail/examples/internal/apptest"
	"github.com/payrail/payrail/internal/testkit"
	"github.com/payrail/payrail/payments"
)

// sbPeer starts the Service Bus test peer (internal/testkit, Qpid Proton)
// for one test. It skips without python3-qpid-proton, and fails under
// CI=true.
func sbPeer(tb testing.TB) *testkit.ServiceBusPeer {
	tb.Helper()
	p, err := testkit.StartServiceBusPeer()
	testkit.StoreRequirePeer(tb, "the Service Bus test peer (python3-qpid-proton; .ci/setup.d/bus-servicebus-peer.sh installs it)", err)
	tb.Cleanup(p.Stop)
	return p
}

// TestServiceBusServerAndWorker runs the reference API server and worker
// with MESSAGE_BUS_ADAPTER=servicebus against the Service Bus test peer
// (real AMQP 1.0 through the azservicebus SDK), sharing a payment store,
// and drives async payments over HTTP to their final states: approved ones
// are captured, declined ones declined, and transiently failing ones
// retried through the bus (delayed nacks are scheduled copies carrying the
// attempt count) and then failed and dead-lettered to the entity's
// $DeadLetterQueue. It runs on a queue (PAYMENTS_QUEUE) and on a topic
// subscription (PAYMENTS_TOPIC and PAYMENTS_SUBSCRIPTION), created with the
// service's default lock duration and maximum delivery count, which the
// driver's URLs assume.
func TestServiceBusServerAndWorker(t *testing.T) {
	peer := sbPeer(t)
	for _, c := range []struct {
		name string
		env  map[string]string
		n    int
	}{
		{"queue", map[string]string{"PAYMENTS_QUEUE": "payments"}, 50},
		{"topic", map[string]string{"PAYMENTS_TOPIC": "payments-events", "PAYMENTS_SUBSCRIPTION": "payments-worker"}, 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			if q := c.env["PAYMENTS_QUEUE"]; q != "" {
				if err := peer.CreateQueue(ctx, q, testkit.ServiceBusEntity{}); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := peer.CreateTopic(ctx, c.env["PAYMENTS_TOPIC"]); err != nil {
					t.Fatal(err)
				}
				if err := peer.CreateSubscription(ctx, c.env["PAYMENTS_TOPIC"], c.env["PAYMENTS_SUBSCRIPTION"], testkit.ServiceBusEntity{}); err != nil {
					t.Fatal(err)
				}
			}
			env := map[string]string{
				"MESSAGE_BUS_ADAPTER":          "servicebus",
				servicebus.EnvConnectionString: peer.ConnectionString,
				"PAYMENTS_MAX_ATTEMPTS":        "3",
				"WORKER_CONCURRENCY":           "8",
				"LOG_LEVEL":                    "warn",
			}
			for k, v := range c.env {
				env[k] = v
			}
			cfg := apptest.Config(t, env)
			st := startStack(t, cfg, stackOptions{Store: payments.NewMemoryStore()})

			// n async payments: one in ten declined, one in ten failing
			// transiently.
			st.driveAsync(ctx, c.n, "e2e-servicebus-"+t.Name(), tenthsMix, c.n*8/10, c.n/10, c.n/10)
			st.Stop()

			// The transiently failing payments went round the bus:
			// delivered PAYMENTS_MAX_ATTEMPTS times, then dead-lettered.
			_, subURL, err := cfg.BusURLs()
			if err != nil {
				t.Fatal(err)
			}
			checkDeadLetters(t, ctx, subURL, c.n/10)
		})
	}
}

// BenchmarkAsyncPaymentsServiceBus measures end-to-end async payments per
// second through the reference binaries: b.N payments are POSTed over HTTP
// with Prefer: respond-async by 8 concurrent clients, and the clock stops
// when the worker has captured the last one (read from the shared store).
// The baseline, in the same run, is MESSAGE_BUS_ADAPTER=inmemory (the worker
// inside the server); servicebus runs the standalone worker against the
// Service Bus test peer through a queue.
//
//	go test -run XXX -bench AsyncPaymentsServiceBus ./examples/internal/e2e/
func BenchmarkAsyncPaymentsServiceBus(b *testing.B) {
	b.Run("inmemory", func(b *testing.B) { sbBenchAsync(b, false) })
	b.Run("servicebus", func(b *testing.B) { sbBenchAsync(b, true) })
}

var sbBenchSeq atomic.Int64

func sbBenchAsync(b *testing.B, servicebusBus bool) {
	env := map[string]string{
		"MESSAGE_BUS_ADAPTER": "inmemory",
		"WORKER_CONCURRENCY":  "16",
		"LOG_LEVEL":           "error",
	}
	if servicebusBus {
		peer := sbPeer(b)
		queue := fmt.Sprintf("payments-bench-%d", sbBenchSeq.Add(1))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := peer.CreateQueue(ctx, queue, testkit.ServiceBusEntity{}); err != nil {
			b.Fatal(err)
		}
		env["MESSAGE_BUS_ADAPTER"] = "servicebus"
		env[servicebus.EnvConnectionString] = peer.ConnectionString
		env["PAYMENTS_QUEUE"] = queue
	}
	cfg := apptest.Config(b, env)
	st := startStack(b, cfg, stackOptions{Store: payments.NewMemoryStore(), Logs: io.Discard})
	benchAsync(b, st, "sb-bench")
}
