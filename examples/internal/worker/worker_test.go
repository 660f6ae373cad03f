package worker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/inmemory"
	"github.com/payrail/payrail/examples/internal/app"
	"github.com/payrail/payrail/examples/internal/apptest"
	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/payments"
)

func TestRefusals(t *testing.T) {
	kafka := map[string]string{"MESSAGE_BUS_ADAPTER": "kafka",
		"BUS_TOPIC_URL": "kafka://localhost:9092/payments", "BUS_SUBSCRIPTION_URL": "kafka://localhost:9092/payments?group=workers"}
	tests := []struct {
		name  string
		env   map[string]string
		store payments.Store
		want  []string
	}{
		{"inmemory bus", nil, payments.NewMemoryStore(), []string{"MESSAGE_BUS_ADAPTER=inmemory", "inside the API server process"}},
		{"inmemory bus and memory store", nil, nil, []string{"MESSAGE_BUS_ADAPTER=inmemory"}},
		{"memory store", kafka, nil, []string{"PAYMENTS_STORE_URL=memory://", "share the API server's payment store", "persistent"}},
		{"adapter without bus URLs", map[string]string{"MESSAGE_BUS_ADAPTER": "pubsub"}, payments.NewMemoryStore(), []string{"BUS_TOPIC_URL", "BUS_SUBSCRIPTION_URL"}},
		{"inmemory bus URL", map[string]string{"MESSAGE_BUS_ADAPTER": "kafka",
			"BUS_TOPIC_URL": "inmemory://payments", "BUS_SUBSCRIPTION_URL": "inmemory://payments"}, payments.NewMemoryStore(), []string{"inside the API server process"}},
		{"driver not compiled in", map[string]string{"MESSAGE_BUS_ADAPTER": "kafka", // bus/kafka is compiled in; nats is not
			"BUS_TOPIC_URL": "nats://localhost:4222/payments", "BUS_SUBSCRIPTION_URL": "nats://localhost:4222/payments"}, payments.NewMemoryStore(), []string{`payrail ships no bus driver for "nats"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := apptest.Config(t, tt.env)
			var out bytes.Buffer
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			err = Run(context.Background(), cfg, Deps{MetricsListener: ln, Store: tt.store, Stdout: &out})
			if err == nil {
				t.Fatal("run succeeded; want a refusal")
			}
			if code := app.ExitCode(err); code != 2 {
				t.Errorf("exit code %d; want 2 (%v)", code, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestProcessesCommands runs the worker against an isolated in-memory broker
// standing in for an external bus, with the payment store it shares with an
// API-side processor.
func TestProcessesCommands(t *testing.T) {
	cfg := apptest.Config(t, map[string]string{
		"MESSAGE_BUS_ADAPTER": "kafka",
		"GATEWAY_URL":         "mock://?latency=20ms",
		"WORKER_CONCURRENCY":  "4",
	})
	ctx := context.Background()
	topic, sub := isolatedBus(t, bus.WithConcurrency(cfg.WorkerConcurrency))
	store := payments.NewMemoryStore()

	// The API side: accepts async payments and publishes their commands.
	gw, err := gateway.Open(ctx, "mock://")
	if err != nil {
		t.Fatal(err)
	}
	api, err := payments.New(payments.WithGateway(gw), payments.WithTopic(topic), payments.WithStore(store), payments.WithMode(payments.ModeAsync))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Close(); _ = gw.Close() })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	var out apptest.SyncBuffer
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(runCtx, cfg, Deps{MetricsListener: ln, Store: store, Topic: topic, Subscription: sub, Stdout: &out})
	}()

	const n = 12
	ids := make([]string, n)
	for i := range n {
		p, err := api.Authorize(ctx, payments.AuthorizeRequest{Merchant: "acme", IdempotencyKey: "k" + string(rune('a'+i)),
			Amount: 1000 + int64(i), Currency: "EUR", PaymentMethod: "pm_card_visa"})
		if err != nil || p.Status != payments.StatusPending {
			t.Fatalf("Authorize: %+v, %v", p, err)
		}
		ids[i] = p.ID
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, id := range ids {
		for {
			p, err := store.Get(ctx, "acme", id)
			if err != nil {
				t.Fatal(err)
			}
			if p.Status == payments.StatusCaptured {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("payment %s is %s; want captured\n%s", id, p.Status, &out)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	if code, body := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}
	if code, body := get(t, base+"/metrics"); code != http.StatusOK || !strings.Contains(body, `payrail_payment_operations_total{`) ||
		!strings.Contains(body, `payrail_operation="process"`) {
		t.Errorf("/metrics: %d\n%s", code, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v; want nil\n%s", err, &out)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after the cancel")
	}
	logs := out.String()
	for _, want := range []string{"PAYMENTS ARE NOT REAL", "worker running", "shutdown: worker stopped", "shutdown: closed processor", "shutdown: closed metrics server"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("metrics listener still open: %v", err)
	}
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAdminEndpointsByInterface: without admin keys the worker's
// /admin/routes and /admin/gateways are open on loopback and refused (403)
// on a public interface; /metrics and /healthz stay open on both (a
// scraper has no key).
func TestAdminEndpointsByInterface(t *testing.T) {
	for _, c := range []struct {
		addr  string
		admin int
	}{{"127.0.0.1:0", http.StatusOK}, {"0.0.0.0:0", http.StatusForbidden}} {
		t.Run(c.addr, func(t *testing.T) {
			cfg := apptest.Config(t, map[string]string{"MESSAGE_BUS_ADAPTER": "kafka"})
			ctx := context.Background()
			topic, sub := isolatedBus(t)
			ln, err := net.Listen("tcp", c.addr)
			if err != nil {
				t.Fatal(err)
			}
			base := "http://127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
			var out apptest.SyncBuffer
			runCtx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() {
				done <- Run(runCtx, cfg, Deps{MetricsListener: ln, Store: payments.NewMemoryStore(), Topic: topic, Subscription: sub, Stdout: &out})
			}()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("run: %v\n%s", err, &out)
				}
			}()
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(out.String(), "worker running") {
				if time.Now().After(deadline) {
					t.Fatalf("worker not running:\n%s", &out)
				}
				time.Sleep(10 * time.Millisecond)
			}
			for _, p := range []string{"/admin/routes", "/admin/gateways"} {
				if code, body := get(t, base+p); code != c.admin {
					t.Errorf("%s on %s: %d %s, want %d", p, c.addr, code, body, c.admin)
				}
			}
			for _, p := range []string{"/metrics", "/healthz"} {
				if code, body := get(t, base+p); code != http.StatusOK {
					t.Errorf("%s on %s: %d %.200s, want 200", p, c.addr, code, body)
				}
			}
		})
	}
}

// isolatedBus returns the topic and subscription of a new in-memory broker,
// standing in for an external bus, closed at the end of the test.
func isolatedBus(t *testing.T, opts ...bus.SubscriptionOption) (*bus.Topic, *bus.Subscription) {
	t.Helper()
	broker := inmemory.NewBroker()
	u := &url.URL{Scheme: "inmemory", Host: "payments"}
	dt, err := broker.OpenTopic(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := broker.OpenSubscription(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	topic, sub := bus.NewTopic(dt), bus.NewSubscription(ds, opts...)
	t.Cleanup(func() { _ = sub.Close(); _ = topic.Close() })
	return topic, sub
}
