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

	"cloud.google.com/go/pubsub/v2/pstest"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/pubsub"
	"github.com/payrail/payrail/examples/internal/config"
	"github.com/payrail/payrail/examples/internal/server"
	"github.com/payrail/payrail/examples/internal/worker"
	"github.com/payrail/payrail/payments"
)

// pubsubSyncBuffer collects a binary's logs.
type pubsubSyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *pubsubSyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *pubsubSyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

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

	cfg := pubsubConfig(t, map[string]string{
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

	store := payments.NewMemoryStore()
	apiLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + apiLn.Addr().String()
	var serverLogs, workerLogs pubsubSyncBuffer
	runCtx, stop := context.WithCancel(context.Background())
	serverDone, workerDone := make(chan error, 1), make(chan error, 1)
	go func() {
		serverDone <- server.Run(runCtx, cfg, server.Deps{Listener: apiLn, Store: store, Stdout: &serverLogs})
	}()
	go func() {
		workerDone <- worker.Run(runCtx, cfg, worker.Deps{MetricsListener: metricsLn, Store: store, Stdout: &workerLogs})
	}()
	stopped := false
	shutdown := func() {
		if stopped {
			return
		}
		stopped = true
		stop()
		for name, ch := range map[string]chan error{"server": serverDone, "worker": workerDone} {
			select {
			case err := <-ch:
				if err != nil {
					t.Errorf("%s returned %v", name, err)
				}
			case <-time.After(60 * time.Second):
				t.Errorf("%s did not stop", name)
			}
		}
	}
	t.Cleanup(func() {
		shutdown()
		if t.Failed() {
			t.Logf("server logs:\n%s\nworker logs:\n%s", &serverLogs, &workerLogs)
		}
	})

	client := &http.Client{Timeout: 10 * time.Second}
	pubsubWaitHealthy(t, client, base+"/healthz")

	// 50 async payments: most approve, some decline, some fail transiently.
	want := map[string]payments.Status{}
	methods := []struct {
		pm     string
		status payments.Status
	}{
		{"pm_card_visa", payments.StatusCaptured},
		{"pm_card_chargeDeclined", payments.StatusDeclined},
		{"pm_card_processingError", payments.StatusFailed},
	}
	for i := range 50 {
		m := methods[0]
		switch {
		case i%10 == 3:
			m = methods[1]
		case i%10 == 7:
			m = methods[2]
		}
		body := fmt.Sprintf(`{"amount":%d,"currency":"EUR","payment_method":%q,"origin":"web"}`, 1000+i, m.pm)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/payments", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprintf("e2e-pubsub-%d", i))
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
	if got[payments.StatusCaptured] != 40 || got[payments.StatusDeclined] != 5 || got[payments.StatusFailed] != 5 {
		t.Fatalf("final states %v; want 40 captured, 5 declined, 5 failed", got)
	}
	shutdown()

	// The transiently failing payments went round the bus: delivered
	// PAYMENTS_MAX_ATTEMPTS times, then dead-lettered to the subscription's
	// dead-letter topic, readable through its dead-letter subscription.
	sub, err := bus.OpenSubscription(ctx, subURL)
	if err != nil {
		t.Fatalf("OpenSubscription(%s): %v", subURL, err)
	}
	defer sub.Close()
	dls, err := sub.DeadLetters(ctx, 0)
	if err != nil {
		t.Fatalf("DeadLetters: %v", err)
	}
	if len(dls) != 5 {
		t.Fatalf("%d dead letters, want the 5 transiently failing payments", len(dls))
	}
	for _, dl := range dls {
		if !strings.Contains(dl.Reason, "failed after 3 attempts") || dl.Message.DeliveryAttempt != 3 {
			t.Errorf("dead letter %s: reason %q, attempt %d; want failed after 3 attempts", dl.Message.ID, dl.Reason, dl.Message.DeliveryAttempt)
		}
	}
}

func pubsubWaitHealthy(t *testing.T, client *http.Client, u string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(u)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not healthy: %v", u, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pubsubConfig isolates the test from the developer's environment and
// .env, applies env (PUBSUB_EMULATOR_HOST included: the client library reads
// it) and loads the configuration.
func pubsubConfig(t *testing.T, env map[string]string) *config.Config {
	t.Helper()
	t.Chdir(t.TempDir())
	for _, n := range config.Names() {
		t.Setenv(n, "")
	}
	for _, n := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_SERVICE_NAME"} {
		t.Setenv(n, "")
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
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
	b.Chdir(b.TempDir())
	for _, n := range config.Names() {
		b.Setenv(n, "")
	}
	for k, v := range env {
		b.Setenv(k, v)
	}
	cfg, err := config.Load()
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if adapter == "pubsub" {
		_, subURL, err := cfg.BusURLs()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := pubsub.Provision(ctx, subURL); err != nil {
			b.Fatal(err)
		}
	}
	store := payments.NewMemoryStore()
	apiLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	base := "http://" + apiLn.Addr().String()
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = server.Run(runCtx, cfg, server.Deps{Listener: apiLn, Store: store, Stdout: io.Discard})
	}()
	if adapter == "pubsub" {
		metricsLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = worker.Run(runCtx, cfg, worker.Deps{MetricsListener: metricsLn, Store: store, Stdout: io.Discard})
		}()
	}
	defer func() { stop(); wg.Wait() }()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("not healthy: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

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
