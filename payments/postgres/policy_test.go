package postgres_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/inmemory"
	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/gateway/routing"
	"github.com/payrail/payrail/internal/testkit"
	"github.com/payrail/payrail/payments"
	"github.com/payrail/payrail/payments/postgres"
)

func TestPolicySourceConformance(t *testing.T) {
	testkit.PolicySourceTests(t, func(t *testing.T) routing.Source {
		s, err := postgres.Open(context.Background(), newTable(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s.PolicySource()
	})
}

// process is one deployment process: its own connection pool to the
// payment database, its own gateways and router synced to the shared
// policy, and a processor.
type process struct {
	store  *postgres.Store
	router *routing.Router
	p      *payments.Processor
}

func startProcess(t *testing.T, storeURL string, topic *bus.Topic) *process {
	t.Helper()
	ctx := context.Background()
	st, err := postgres.Open(ctx, storeURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	var gws []*gateway.Gateway
	for _, name := range []string{"a", "b"} {
		g, err := gateway.New(name, mock.New())
		if err != nil {
			t.Fatal(err)
		}
		gws = append(gws, g)
	}
	r, err := routing.New(gws, routing.DefaultPolicy("a"), routing.WithSource(st.PolicySource(), 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	watched := make(chan error, 1)
	go func() { watched <- r.Watch(wctx) }()
	t.Cleanup(func() { stop(); <-watched })
	p, err := payments.New(payments.WithRouter(r), payments.WithStore(st), payments.WithTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return &process{store: st, router: r, p: p}
}

// The runbook's "switch the gateway selector": a policy PUT through API
// server A's /admin/routes moves the async payments that standalone worker
// B processes, through the policy shared in the payment database.
func TestSharedPolicyMovesAsyncTrafficOfAnotherProcess(t *testing.T) {
	storeURL := newTable(t)
	ctx := context.Background()
	broker := inmemory.NewBroker()
	u := &url.URL{Scheme: "inmemory", Host: "payments"}
	dt, err := broker.OpenTopic(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := broker.OpenSubscription(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	topic, sub := bus.NewTopic(dt), bus.NewSubscription(ds)
	t.Cleanup(func() { _ = sub.Close(); _ = topic.Close() })

	server := startProcess(t, storeURL, topic)
	worker := startProcess(t, storeURL, topic)
	w, err := payments.NewWorker(worker.p, payments.WithSubscription(sub))
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWorker := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	t.Cleanup(func() { stopWorker(); <-done })

	asyncPayment := func(key string) *payments.Payment {
		t.Helper()
		pay, err := server.p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "acme", IdempotencyKey: key, Mode: payments.ModeAsync,
			Amount: 1000, Currency: "EUR", PaymentMethod: "pm_card_visa", Origin: "web"})
		if err != nil {
			t.Fatal(err)
		}
		wait, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		final, err := worker.p.Wait(wait, payments.GetRequest{Merchant: "acme", PaymentID: pay.ID})
		if err != nil {
			t.Fatalf("waiting for %s: %v", pay.ID, err)
		}
		return final
	}
	if pay := asyncPayment("before"); pay.Gateway != "a" || pay.Status != payments.StatusCaptured {
		t.Fatalf("before the change: %s via %q; want captured via a", pay.Status, pay.Gateway)
	}

	auth, err := payments.APIKeys(nil, []string{"sk_admin"})
	if err != nil {
		t.Fatal(err)
	}
	h, err := payments.NewHandler(server.p, auth)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.HandleAdmin("routes", routing.AdminHandler(server.router)); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("PUT", "/admin/routes", strings.NewReader(`{"default": {"gateways": ["b"]}}`))
	req.Header.Set("Authorization", "Bearer sk_admin")
	req.Header.Set("Content-Type", "application/json")
	res := httptest.NewRecorder()
	h.ServeHTTP(res, req)
	if res.Code != http.StatusOK {
		t.Fatalf("PUT /admin/routes: %d %s", res.Code, res.Body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for worker.router.Version() != server.router.Version() {
		if time.Now().After(deadline) {
			t.Fatalf("the worker is at policy version %d, the server at %d, 5 s after the change", worker.router.Version(), server.router.Version())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if pay := asyncPayment("after"); pay.Gateway != "b" || pay.Status != payments.StatusCaptured {
		t.Fatalf("after the change: %s via %q; want captured via b", pay.Status, pay.Gateway)
	}
}
