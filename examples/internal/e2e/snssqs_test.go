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

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/snssqs"
	appconfig "github.com/payrail/payrail/examples/internal/config"
	"github.com/payrail/payrail/examples/internal/server"
	"github.com/payrail/payrail/examples/internal/worker"
	"github.com/payrail/payrail/internal/testkit"
	"github.com/payrail/payrail/internal/testkit/fauxqs"
	"github.com/payrail/payrail/payments"
)

// snssqsLogs collects a binary's logs.
type snssqsLogs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *snssqsLogs) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *snssqsLogs) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

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

// snssqsConfig isolates the test from the developer's environment and
// .env, applies env and loads the configuration.
func snssqsConfig(tb testing.TB, env map[string]string) *appconfig.Config {
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

// snssqsRun runs the reference server and worker until the returned stop is
// called (or the test ends), sharing store; it returns the API's base URL.
func snssqsRun(tb testing.TB, cfg *appconfig.Config, store payments.Store, stdout io.Writer, withWorker bool) (base string, stop func()) {
	tb.Helper()
	apiLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	metricsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	if !withWorker {
		_ = metricsLn.Close()
	}
	runCtx, cancel := context.WithCancel(context.Background())
	serverDone := make(chan error, 1)
	done := map[string]chan error{"server": serverDone}
	go func() {
		serverDone <- server.Run(runCtx, cfg, server.Deps{Listener: apiLn, Store: store, Stdout: stdout})
	}()
	if withWorker {
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
			cfg := snssqsConfig(t, env)
			topicURL, subURL, err := cfg.BusURLs()
			if err != nil || !strings.HasPrefix(topicURL, "sns-sqs://?topic_arn=") || !strings.HasPrefix(subURL, "sns-sqs://?queue_url=") {
				t.Fatalf("BusURLs = %s, %s, %v", topicURL, subURL, err)
			}
			store := payments.NewMemoryStore()
			var logs snssqsLogs
			base, stop := snssqsRun(t, cfg, store, &logs, true)
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("server and worker logs:\n%s", &logs)
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			client := &http.Client{Timeout: 10 * time.Second}

			// 30 async payments: most approve, some decline, some fail transiently.
			methods := []struct {
				pm     string
				status payments.Status
			}{
				{"pm_card_visa", payments.StatusCaptured},
				{"pm_card_chargeDeclined", payments.StatusDeclined},
				{"pm_card_processingError", payments.StatusFailed},
			}
			want := map[string]payments.Status{}
			for i := range 30 {
				m := methods[0]
				switch i % 10 {
				case 3:
					m = methods[1]
				case 7:
					m = methods[2]
				}
				body := fmt.Sprintf(`{"amount":%d,"currency":"EUR","payment_method":%q,"origin":"web"}`, 1000+i, m.pm)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/payments", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", fmt.Sprintf("e2e-snssqs-%t-%d", fifo, i))
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
				want[resp.Header.Get("Location")] = m.status
			}

			// Poll every payment over HTTP until it reaches its final state.
			got := map[payments.Status]int{}
			for loc, status := range want {
				for {
					var pay struct {
						ID     string          `json:"id"`
						Status payments.Status `json:"status"`
					}
					resp, err := client.Get(base + loc)
					if err != nil {
						t.Fatalf("GET %s: %v", loc, err)
					}
					err = json.NewDecoder(resp.Body).Decode(&pay)
					resp.Body.Close()
					if err != nil || resp.StatusCode != http.StatusOK {
						t.Fatalf("GET %s = %d, %v", loc, resp.StatusCode, err)
					}
					if pay.Status == status {
						got[status]++
						break
					}
					if pay.Status != payments.StatusPending && pay.Status != payments.StatusProcessing {
						t.Fatalf("payment %s ended %s; want %s", pay.ID, pay.Status, status)
					}
					if ctx.Err() != nil {
						t.Fatalf("payment %s still %s; want %s", pay.ID, pay.Status, status)
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			if got[payments.StatusCaptured] != 24 || got[payments.StatusDeclined] != 3 || got[payments.StatusFailed] != 3 {
				t.Fatalf("final states %v; want 24 captured, 3 declined, 3 failed", got)
			}
			stop()

			// The transiently failing payments went round the queue
			// PAYMENTS_MAX_ATTEMPTS times and were dead-lettered with the
			// worker's reason; the queue itself is empty.
			sub, err := bus.OpenSubscription(ctx, subURL)
			if err != nil {
				t.Fatalf("OpenSubscription(%s): %v", subURL, err)
			}
			defer sub.Close()
			dls, err := sub.DeadLetters(ctx, 0)
			if err != nil {
				t.Fatalf("DeadLetters: %v", err)
			}
			if len(dls) != 3 {
				t.Fatalf("%d dead letters, want the 3 transiently failing payments", len(dls))
			}
			for _, dl := range dls {
				if !strings.Contains(dl.Reason, "failed after 3 attempts") || dl.Message.DeliveryAttempt != 3 {
					t.Errorf("dead letter %s: reason %q, attempt %d; want failed after 3 attempts", dl.Message.ID, dl.Reason, dl.Message.DeliveryAttempt)
				}
			}
			st, err := sub.Stats(ctx)
			if err != nil || st.Backlog != 0 || st.InFlight != 0 || st.DeadLetters != 3 {
				t.Errorf("Stats = %+v, %v; want an empty queue and 3 dead letters", st, err)
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
	cfg := snssqsConfig(b, env)
	store := payments.NewMemoryStore()
	base, stop := snssqsRun(b, cfg, store, io.Discard, adapter != "")
	defer stop()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	ctx := context.Background()
	run := fmt.Sprint(time.Now().UnixNano())
	ids := make([]string, b.N)
	var next atomic.Int64
	errc := make(chan error, 8)
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
				req.Header.Set("Idempotency-Key", "bench-"+run+"-"+fmt.Sprint(i))
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
	deadline := time.Now().Add(5 * time.Minute)
	for _, id := range ids {
		for {
			p, err := store.Get(ctx, "dev", id)
			if err == nil && p.Status == payments.StatusCaptured {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("payment %s not captured (%v, %v)", id, p, err)
			}
			time.Sleep(time.Millisecond)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "payments/s")
}
