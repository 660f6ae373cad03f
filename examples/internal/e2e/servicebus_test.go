package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/servicebus"
	appconfig "github.com/payrail/payrail/examples/internal/config"
	"github.com/payrail/payrail/examples/internal/server"
	"github.com/payrail/payrail/examples/internal/worker"
	"github.com/payrail/payrail/internal/testkit"
	"github.com/payrail/payrail/payments"
)

// sbLogs collects a binary's logs.
type sbLogs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *sbLogs) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *sbLogs) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

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

// sbConfig isolates the test from the developer's environment and .env,
// applies env and loads the configuration.
func sbConfig(tb testing.TB, env map[string]string) *appconfig.Config {
	tb.Helper()
	tb.Chdir(tb.TempDir())
	for _, n := range appconfig.Names() {
		tb.Setenv(n, "")
	}
	for _, n := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_SERVICE_NAME"} {
		tb.Setenv(n, "")
	}
	for k, v := range env {
		tb.Setenv(k, v)
	}
	cfg, err := appconfig.Load()
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// sbRun runs the reference server and, unless the adapter is inmemory, the
// worker, sharing store, until the returned stop is called (or the test
// ends); it returns the API's base URL.
func sbRun(tb testing.TB, cfg *appconfig.Config, store payments.Store, stdout io.Writer) (base string, stop func()) {
	tb.Helper()
	apiLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	serverDone := make(chan error, 1)
	done := map[string]chan error{"server": serverDone}
	go func() {
		serverDone <- server.Run(runCtx, cfg, server.Deps{Listener: apiLn, Store: store, Stdout: stdout})
	}()
	if !cfg.InMemoryBus() {
		metricsLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		workerDone := make(chan error, 1)
		done["worker"] = workerDone
		go func() {
			workerDone <- worker.Run(runCtx, cfg, worker.Deps{MetricsListener: metricsLn, Store: store, Stdout: stdout})
		}()
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			for name, ch := range done {
				select {
				case err := <-ch:
					if err != nil {
						tb.Errorf("%s returned %v", name, err)
					}
				case <-time.After(60 * time.Second):
					tb.Errorf("%s did not stop", name)
				}
			}
		})
	}
	tb.Cleanup(stop)
	base = "http://" + apiLn.Addr().String()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base, stop
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s/healthz not healthy: %v", base, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
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
			cfg := sbConfig(t, env)
			store := payments.NewMemoryStore()
			var logs sbLogs
			base, stop := sbRun(t, cfg, store, &logs)
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("logs:\n%s", &logs)
				}
			})
			sbDrive(t, ctx, base, c.n)
			stop()

			// The transiently failing payments went round the bus:
			// delivered PAYMENTS_MAX_ATTEMPTS times, then dead-lettered.
			_, subURL, err := cfg.BusURLs()
			if err != nil {
				t.Fatal(err)
			}
			sub, err := bus.OpenSubscription(ctx, subURL)
			if err != nil {
				t.Fatalf("OpenSubscription(%s): %v", subURL, err)
			}
			defer sub.Close()
			dls, err := sub.DeadLetters(ctx, 0)
			if err != nil {
				t.Fatalf("DeadLetters: %v", err)
			}
			if len(dls) != c.n/10 {
				t.Fatalf("%d dead letters, want the %d transiently failing payments", len(dls), c.n/10)
			}
			for _, dl := range dls {
				if !strings.Contains(dl.Reason, "failed after 3 attempts") || dl.Message.DeliveryAttempt != 3 {
					t.Errorf("dead letter %s: reason %q, attempt %d; want failed after 3 attempts", dl.Message.ID, dl.Reason, dl.Message.DeliveryAttempt)
				}
			}
		})
	}
}

// sbDrive POSTs n async payments (one in ten declined, one in ten failing
// transiently) and polls each over HTTP until it reaches its final state.
func sbDrive(t *testing.T, ctx context.Context, base string, n int) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	want := map[string]payments.Status{}
	for i := range n {
		pm, status := "pm_card_visa", payments.StatusCaptured
		switch i % 10 {
		case 3:
			pm, status = "pm_card_chargeDeclined", payments.StatusDeclined
		case 7:
			pm, status = "pm_card_processingError", payments.StatusFailed
		}
		body := fmt.Sprintf(`{"amount":%d,"currency":"EUR","payment_method":%q,"origin":"web"}`, 1000+i, pm)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/payments", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprintf("e2e-servicebus-%s-%d", t.Name(), i))
		req.Header.Set("Prefer", "respond-async")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST /payments: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Location") == "" {
			t.Fatalf("POST /payments #%d = %d %s (Location %q); want 202 with a Location", i, resp.StatusCode, b, resp.Header.Get("Location"))
		}
		want[resp.Header.Get("Location")] = status
	}
	got := map[payments.Status]int{}
	for loc, status := range want {
		for {
			var p struct {
				ID     string          `json:"id"`
				Status payments.Status `json:"status"`
			}
			resp, err := client.Get(base + loc)
			if err != nil {
				t.Fatalf("GET %s: %v", loc, err)
			}
			err = json.NewDecoder(resp.Body).Decode(&p)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s = %d, %v", loc, resp.StatusCode, err)
			}
			if p.Status == status {
				got[status]++
				break
			}
			if p.Status != payments.StatusPending && p.Status != payments.StatusProcessing {
				t.Fatalf("payment %s ended %s; want %s", p.ID, p.Status, status)
			}
			if ctx.Err() != nil {
				t.Fatalf("payment %s still %s; want %s", p.ID, p.Status, status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if got[payments.StatusCaptured] != n*8/10 || got[payments.StatusDeclined] != n/10 || got[payments.StatusFailed] != n/10 {
		t.Fatalf("final states %v; want %d captured, %d declined, %d failed", got, n*8/10, n/10, n/10)
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
	cfg := sbConfig(b, env)
	store := payments.NewMemoryStore()
	base, stop := sbRun(b, cfg, store, io.Discard)
	defer stop()

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	run := fmt.Sprint(time.Now().UnixNano())
	ids := make([]string, b.N)
	var next atomic.Int64
	errc := make(chan error, 8)
	ctx := context.Background()
	b.ResetTimer()
	for range 8 {
		go func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					errc <- nil
					return
				}
				body := fmt.Sprintf(`{"amount":%d,"currency":"EUR","payment_method":"pm_card_visa","origin":"web"}`, 1000+i)
				req, _ := http.NewRequest(http.MethodPost, base+"/payments", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", "sb-bench-"+run+"-"+fmt.Sprint(i))
				req.Header.Set("Prefer", "respond-async")
				resp, err := client.Do(req)
				if err != nil {
					errc <- err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				loc := resp.Header.Get("Location")
				if resp.StatusCode != http.StatusAccepted || loc == "" {
					errc <- fmt.Errorf("POST = %d", resp.StatusCode)
					return
				}
				ids[i] = loc[strings.LastIndex(loc, "/")+1:]
			}
		}()
	}
	for range 8 {
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
	for _, id := range ids {
		for {
			p, err := store.Get(ctx, "dev", id)
			if err == nil && p.Status == payments.StatusCaptured {
				break
			}
			if err == nil && p.Status != payments.StatusPending && p.Status != payments.StatusProcessing {
				b.Fatalf("payment %s ended %s", id, p.Status)
			}
			time.Sleep(time.Millisecond)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "payments/s")
}
