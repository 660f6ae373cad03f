package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-mock/embedded"
	smserver "github.com/stripe/stripe-mock/server"
	mockspec "github.com/stripe/stripe-mock/spec"

	"github.com/payrail/payrail/examples/internal/config"
	"github.com/payrail/payrail/examples/internal/server"
	"github.com/payrail/payrail/gateway/routing"
)

// routingLogs collects the server's logs.
type routingLogs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *routingLogs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *routingLogs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// routingStripeMock serves stripe-mock (Stripe's API simulator, in-process)
// answering PaymentIntents as captured.
func routingStripeMock(t *testing.T) string {
	t.Helper()
	spec, err := smserver.LoadSpec(embedded.OpenAPISpec, "")
	if err != nil {
		t.Fatal(err)
	}
	fx, err := smserver.LoadFixtures(embedded.OpenAPIFixtures, "")
	if err != nil {
		t.Fatal(err)
	}
	pi := fx.Resources[mockspec.ResourceID("payment_intent")].(map[string]any)
	pi["status"], pi["amount_received"], pi["last_payment_error"] = "succeeded", 1999, nil
	stub, err := smserver.NewStubServer(fx, spec, false, false)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", stub.HandleRequest)
	srv := httptest.NewServer(&smserver.DoubleSlashFixHandler{Mux: mux})
	t.Cleanup(srv.Close)
	return srv.URL
}

// routingConfig isolates the test from the developer's environment and .env.
func routingConfig(t *testing.T, env map[string]string) *config.Config {
	t.Helper()
	t.Chdir(t.TempDir())
	for _, n := range config.Names() {
		t.Setenv(n, "")
	}
	for _, n := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_SERVICE_NAME"} {
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

type routingResp struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// TestRoutingSwitchOnReferenceServer runs the runbook step "switch an origin
// to mock or an alternate gateway temporarily" on the reference server:
// gateways from GATEWAY_URL and GATEWAY_URLS (a mock and Stripe, served by
// stripe-mock), the policy from GATEWAY_ROUTES, then GET and PUT
// /admin/routes with the admin key while payments flow.
func TestRoutingSwitchOnReferenceServer(t *testing.T) {
	stripeURL := routingStripeMock(t)
	t.Setenv("PAYRAIL_E2E_STRIPE_KEY", "sk_test_e2e")
	cfg := routingConfig(t, map[string]string{
		"GATEWAY_URL":        "mock://?name=primary",
		"GATEWAY_URLS":       "stripe=stripe://?api_key_env=PAYRAIL_E2E_STRIPE_KEY&base_url=" + url.QueryEscape(stripeURL) + ",alt=mock://",
		"GATEWAY_ROUTES":     `{"rules":[{"name":"pos","match":{"origins":["pos"]},"gateways":["primary","alt"]}],"default":{"gateways":["primary"]}}`,
		"PAYRAIL_API_KEYS":   "sk_merchant:acme",
		"PAYRAIL_ADMIN_KEYS": "sk_admin",
		"LOG_LEVEL":          "warn",
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	var logs routingLogs
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, cfg, server.Deps{Listener: ln, Stdout: &logs}) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server returned %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("server did not stop")
		}
		if t.Failed() {
			t.Logf("server logs:\n%s", &logs)
		}
	})
	client := &http.Client{Timeout: 10 * time.Second}
	do := func(method, path, key, body string, hdr ...string) routingResp {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		r := routingResp{status: res.StatusCode, header: res.Header, raw: string(b)}
		_ = json.Unmarshal(b, &r.body)
		return r
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if res, err := client.Get(base + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("server not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	pay := func(key, origin string) string {
		t.Helper()
		r := do("POST", "/payments", "sk_merchant",
			`{"amount":1999,"currency":"EUR","payment_method":"pm_card_visa","origin":"`+origin+`"}`, "Idempotency-Key", key)
		if r.status != 201 || r.body["status"] != "captured" {
			t.Fatalf("payment %s: %d %s", key, r.status, r.raw)
		}
		return r.body["gateway"].(string)
	}

	if gw := pay("order-1", "pos"); gw != "primary" {
		t.Fatalf("pos payment went to %s", gw)
	}
	if r := do("GET", "/admin/routes", "sk_merchant", ""); r.status != 403 {
		t.Fatalf("merchant key on /admin/routes: %d", r.status)
	}
	got := do("GET", "/admin/routes", "sk_admin", "")
	if got.status != 200 || got.header.Get("ETag") == "" {
		t.Fatalf("GET /admin/routes: %d %s", got.status, got.raw)
	}
	policy, err := routing.ParsePolicy([]byte(got.raw))
	if err != nil || len(policy.Rules) != 1 {
		t.Fatalf("GET /admin/routes body: %v\n%s", err, got.raw)
	}
	policy.Rules[0].Gateways = []string{"nope"}
	bad, _ := json.Marshal(policy)
	if r := do("PUT", "/admin/routes", "sk_admin", string(bad)); r.status != 422 {
		t.Fatalf("invalid policy: %d %s", r.status, r.raw)
	}
	policy.Rules[0].Gateways = []string{"stripe", "alt"} // pos → Stripe, temporarily
	b, _ := json.Marshal(policy)
	switched := string(b)
	if gw := pay("order-2", "pos"); gw != "primary" {
		t.Fatalf("a refused policy changed routing: %s", gw)
	}
	if r := do("PUT", "/admin/routes", "sk_admin", switched, "If-Match", got.header.Get("ETag")); r.status != 200 {
		t.Fatalf("PUT /admin/routes: %d %s", r.status, r.raw)
	}
	if gw := pay("order-3", "pos"); gw != "stripe" {
		t.Fatalf("pos payment after the switch went to %s", gw)
	}
	if gw := pay("order-4", "web"); gw != "primary" {
		t.Fatalf("web payment went to %s", gw)
	}
	h := do("GET", "/admin/gateways", "sk_admin", "")
	if h.status != 200 || len(h.body["gateways"].([]any)) != 3 {
		t.Fatalf("GET /admin/gateways: %d %s", h.status, h.raw)
	}
	if !strings.Contains(logs.String(), "routing: policy replaced") {
		t.Fatal("the policy switch was not logged")
	}
	if strings.Contains(logs.String(), "sk_test_e2e") {
		t.Fatal("the Stripe key appeared in the logs")
	}
}
