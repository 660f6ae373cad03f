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
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/kafka"
	"github.com/payrail/payrail/examples/internal/config"
	"github.com/payrail/payrail/examples/internal/server"
	"github.com/payrail/payrail/examples/internal/worker"
	"github.com/payrail/payrail/payments"
)

// kafkaSyncBuffer collects a binary's logs.
type kafkaSyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *kafkaSyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *kafkaSyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestKafkaServerAndWorker runs the reference API server and worker with
// MESSAGE_BUS_ADAPTER=kafka against one in-process Kafka (franz-go's kfake,
// a real implementation of the Kafka wire protocol), sharing a payment
// store, and drives async payments over HTTP to their final states:
// approved ones are captured, declined ones declined, and a transiently
// failing one retried through the bus, then failed and dead-lettered.
func TestKafkaServerAndWorker(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(4))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	brokers := strings.Join(cluster.ListenAddrs(), ",")

	// Provision the topic and its dead-letter topic, as a deployment does
	// with its own tooling or with kafka.EnsureTopic.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := kafka.EnsureTopic(ctx, "kafka://"+brokers+"/payments-e2e"); err != nil {
		t.Fatalf("EnsureTopic: %v", err)
	}

	cfg := kafkaConfig(t, map[string]string{
		"MESSAGE_BUS_ADAPTER":   "kafka",
		"KAFKA_BROKERS":         brokers,
		"PAYMENTS_TOPIC":        "payments-e2e",
		"KAFKA_GROUP_ID":        "payments-worker-e2e",
		"PAYMENTS_MAX_ATTEMPTS": "3",
		"WORKER_CONCURRENCY":    "8",
		"LOG_LEVEL":             "warn",
	})
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
	var serverLogs, workerLogs kafkaSyncBuffer
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
	kafkaWaitHealthy(t, client, base+"/healthz")

	// 50 async payments: most approve, some decline, one fails transiently
	// on every attempt. (One only: the gateway router's circuit breaker
	// opens after 5 consecutive transient failures, and then leaves such
	// payments processing for reconciliation instead of failing them.)
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
		case i == 27:
			m = methods[2]
		}
		body := fmt.Sprintf(`{"amount":%d,"currency":"EUR","payment_method":%q,"origin":"web"}`, 1000+i, m.pm)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/payments", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprintf("e2e-kafka-%d", i))
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
	if got[payments.StatusCaptured] != 44 || got[payments.StatusDeclined] != 5 || got[payments.StatusFailed] != 1 {
		t.Fatalf("final states %v; want 44 captured, 5 declined, 1 failed", got)
	}
	shutdown()

	// The transiently failing payment went round the bus: delivered
	// PAYMENTS_MAX_ATTEMPTS times, then dead-lettered to payments-e2e.dlq
	// for the worker's group.
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
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want the transiently failing payment", len(dls))
	}
	for _, dl := range dls {
		if !strings.Contains(dl.Reason, "failed after 3 attempts") || dl.Message.DeliveryAttempt != 3 {
			t.Errorf("dead letter %s: reason %q, attempt %d; want failed after 3 attempts", dl.Message.ID, dl.Reason, dl.Message.DeliveryAttempt)
		}
	}
}

func kafkaWaitHealthy(t *testing.T, client *http.Client, u string) {
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

// kafkaConfig isolates the test from the developer's environment and .env,
// applies env and loads the configuration.
func kafkaConfig(t *testing.T, env map[string]string) *config.Config {
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
