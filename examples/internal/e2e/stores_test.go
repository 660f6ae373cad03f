package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/payrail/payrail/bus/kafka"
	"github.com/payrail/payrail/examples/internal/config"
	"github.com/payrail/payrail/examples/internal/opsctl"
	"github.com/payrail/payrail/examples/internal/server"
	"github.com/payrail/payrail/examples/internal/worker"
	"github.com/payrail/payrail/internal/testkit"
	"github.com/payrail/payrail/payments"
)

// storesLogs collects a binary's logs.
type storesLogs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *storesLogs) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *storesLogs) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// storesPeers returns a PostgreSQL URL for a payments table and a Redis URL
// with a key prefix, both unique to the test and removed at its end.
func storesPeers(t *testing.T) (paymentsURL, idempotencyURL string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testkit.StorePostgresURL())
	testkit.StoreRequirePeer(t, "PostgreSQL", err)
	o, err := goredis.ParseURL(testkit.StoreRedisURL())
	if err != nil {
		t.Fatal(err)
	}
	rc := goredis.NewClient(o)
	testkit.StoreRequirePeer(t, "Redis", rc.Ping(ctx).Err())

	table := testkit.StoreUniqueName("e2e_payments_")
	prefix := testkit.StoreUniqueName("payrail-e2e:") + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = conn.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{table}.Sanitize())
		_ = conn.Close(ctx)
		iter := rc.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rc.Del(ctx, iter.Val())
		}
		_ = rc.Close()
	})
	pu, _ := url.Parse(testkit.StorePostgresURL())
	q := pu.Query()
	q.Set("table", table)
	pu.RawQuery = q.Encode()
	ru, _ := url.Parse(testkit.StoreRedisURL())
	q = ru.Query()
	q.Set("prefix", prefix)
	ru.RawQuery = q.Encode()
	return pu.String(), ru.String()
}

// storesConfig isolates the test from the developer's environment and .env.
func storesConfig(t *testing.T, env map[string]string) *config.Config {
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

func storesOpsctl(t *testing.T, cfg *config.Config, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := opsctl.Run(context.Background(), opsctl.Env{Config: cfg, Stdout: &out, Stderr: &errOut}, args); code != 0 {
		t.Fatalf("opsctl %v: exit %d\n%s%s", args, code, &out, &errOut)
	}
	return out.String()
}

// TestSharedStoresServerAndWorker deploys the reference server and a
// standalone worker as production does: the payment store in PostgreSQL
// (PAYMENTS_STORE_URL, schema applied with opsctl db migrate), idempotency
// keys in Redis (IDEMPOTENCY_URL), async commands over Kafka (kfake, a real
// implementation of the wire protocol), both binaries opening every store
// from its URL. Sync payments replay byte for byte; async payments accepted
// by the server are completed by the worker through the shared store.
func TestSharedStoresServerAndWorker(t *testing.T) {
	paymentsURL, idemURL := storesPeers(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	brokers := strings.Join(cluster.ListenAddrs(), ",")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := kafka.EnsureTopic(ctx, "kafka://"+brokers+"/payments-stores-e2e"); err != nil {
		t.Fatalf("EnsureTopic: %v", err)
	}
	cfg := storesConfig(t, map[string]string{
		"MESSAGE_BUS_ADAPTER": "kafka",
		"KAFKA_BROKERS":       brokers,
		"PAYMENTS_TOPIC":      "payments-stores-e2e",
		"KAFKA_GROUP_ID":      "payments-worker-stores-e2e",
		"PAYMENTS_STORE_URL":  paymentsURL,
		"IDEMPOTENCY_URL":     idemURL,
		"LOG_LEVEL":           "warn",
	})

	// Without the schema the server refuses to start, naming the fix.
	ln0, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	err = server.Run(ctx, cfg, server.Deps{Listener: ln0, Stdout: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "opsctl db migrate") {
		t.Fatalf("server without the payments schema: %v; want an error naming opsctl db migrate", err)
	}
	storesOpsctl(t, cfg, "db", "migrate", "--apply")

	apiLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + apiLn.Addr().String()
	var serverLogs, workerLogs storesLogs
	runCtx, stop := context.WithCancel(context.Background())
	serverDone, workerDone := make(chan error, 1), make(chan error, 1)
	go func() { serverDone <- server.Run(runCtx, cfg, server.Deps{Listener: apiLn, Stdout: &serverLogs}) }()
	go func() {
		workerDone <- worker.Run(runCtx, cfg, worker.Deps{MetricsListener: metricsLn, Stdout: &workerLogs})
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
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	post := func(key, body string, async bool) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/payments", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		if async {
			req.Header.Set("Prefer", "respond-async")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST /payments: %v", err)
		}
		return resp
	}
	read := func(resp *http.Response) []byte {
		t.Helper()
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	// Sync: created, then replayed byte for byte from Redis.
	const syncBody = `{"amount":1999,"currency":"EUR","payment_method":"pm_card_visa","origin":"web"}`
	first := post("stores-sync-1", syncBody, false)
	firstBody := read(first)
	if first.StatusCode != http.StatusCreated {
		t.Fatalf("sync POST = %d %s", first.StatusCode, firstBody)
	}
	again := post("stores-sync-1", syncBody, false)
	againBody := read(again)
	if again.StatusCode != http.StatusCreated || !bytes.Equal(againBody, firstBody) || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay = %d %q (Idempotent-Replayed %q); want the first response byte for byte", again.StatusCode, againBody, again.Header.Get("Idempotent-Replayed"))
	}
	var syncPay struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(firstBody, &syncPay); err != nil || syncPay.ID == "" {
		t.Fatalf("sync response %s: %v", firstBody, err)
	}

	// Async: accepted by the server, completed by the worker.
	var locations []string
	for i := range 10 {
		resp := post(fmt.Sprintf("stores-async-%d", i), fmt.Sprintf(`{"amount":%d,"currency":"GBP","payment_method":"pm_card_visa","origin":"pos"}`, 100+i), true)
		b := read(resp)
		if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Location") == "" {
			t.Fatalf("async POST = %d %s", resp.StatusCode, b)
		}
		locations = append(locations, resp.Header.Get("Location"))
	}
	var ids []string
	for _, loc := range locations {
		for {
			var p struct {
				ID     string          `json:"id"`
				Status payments.Status `json:"status"`
			}
			resp, err := client.Get(base + loc)
			if err != nil {
				t.Fatal(err)
			}
			err = json.NewDecoder(resp.Body).Decode(&p)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s = %d %v", loc, resp.StatusCode, err)
			}
			if p.Status == payments.StatusCaptured {
				ids = append(ids, p.ID)
				break
			}
			if (p.Status != payments.StatusPending && p.Status != payments.StatusProcessing) || ctx.Err() != nil {
				t.Fatalf("payment %s is %s; want captured", p.ID, p.Status)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	shutdown()

	// Everything is in PostgreSQL, versioned by the worker's updates.
	ps, err := payments.OpenStore(ctx, paymentsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	for _, id := range append(ids, syncPay.ID) {
		p, err := ps.Get(ctx, "dev", id)
		if err != nil || p.Status != payments.StatusCaptured {
			t.Fatalf("payment %s in PostgreSQL: %+v %v", id, p, err)
		}
		if p.Version < 2 {
			t.Errorf("payment %s has version %d; want the updates counted", id, p.Version)
		}
	}
	// And the keys in Redis, as the ops CLI sees them.
	out := storesOpsctl(t, cfg, "keys", "ls", "--merchant", "dev", "--state", "completed", "--json")
	if n := strings.Count(out, `"state":"completed"`); n != 11 {
		t.Errorf("opsctl keys ls: %d completed keys, want 11:\n%s", n, out)
	}
	if !strings.Contains(out, `"key":"stores-sync-1"`) || !strings.Contains(out, syncPay.ID) {
		t.Errorf("opsctl keys ls lacks the sync key or its payment:\n%s", out)
	}
}
