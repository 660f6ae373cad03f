package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-mock/embedded"
	smserver "github.com/stripe/stripe-mock/server"
	mockspec "github.com/stripe/stripe-mock/spec"

	"github.com/payrail/payrail/examples/internal/apptest"
	"github.com/payrail/payrail/gateway/routing"
)

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

// TestRoutingSwitchOnReferenceServer runs the runbook step "switch an origin
// to mock or an alternate gateway temporarily" on the reference server:
// gateways from GATEWAY_URL and GATEWAY_URLS (a mock and Stripe, served by
// stripe-mock), the policy from GATEWAY_ROUTES, then GET and PUT
// /admin/routes with the admin key while payments flow.
func TestRoutingSwitchOnReferenceServer(t *testing.T) {
	stripeURL := routingStripeMock(t)
	t.Setenv("PAYRAIL_E2E_STRIPE_KEY", "sk_test_e2e")
	cfg := apptest.Config(t, map[string]string{
		"GATEWAY_URL":        "mock://?name=primary",
		"GATEWAY_URLS":       "stripe=stripe://?api_key_env=PAYRAIL_E2E_STRIPE_KEY&base_url=" + url.QueryEscape(stripeURL) + ",alt=mock://",
		"GATEWAY_ROUTES":     `{"rules":[{"name":"pos","match":{"origins":["pos"]},"gateways":["primary","alt"]}],"default":{"gateways":["primary"]}}`,
		"PAYRAIL_API_KEYS":   "sk_merchant:acme",
		"PAYRAIL_ADMIN_KEYS": "sk_admin",
		"LOG_LEVEL":          "warn",
	})
	st := startStack(t, cfg, stackOptions{Ready: "/readyz", ReadyTimeout: 20 * time.Second, StopTimeout: 30 * time.Second})
	do := func(method, path, key, body string, hdr ...string) response {
		t.Helper()
		return st.Do(method, path, body, append([]string{"Authorization", "Bearer " + key}, hdr...)...)
	}
	pay := func(key, origin string) string {
		t.Helper()
		r := do("POST", "/payments", "sk_merchant",
			`{"amount":1999,"currency":"EUR","payment_method":"pm_card_visa","origin":"`+origin+`"}`, "Idempotency-Key", key)
		if r.Status != 201 || r.JSON["status"] != "captured" {
			t.Fatalf("payment %s: %d %s", key, r.Status, r.Body)
		}
		return r.JSON["gateway"].(string)
	}

	if gw := pay("order-1", "pos"); gw != "primary" {
		t.Fatalf("pos payment went to %s", gw)
	}
	if r := do("GET", "/admin/routes", "sk_merchant", ""); r.Status != 403 {
		t.Fatalf("merchant key on /admin/routes: %d", r.Status)
	}
	got := do("GET", "/admin/routes", "sk_admin", "")
	if got.Status != 200 || got.Header.Get("ETag") == "" {
		t.Fatalf("GET /admin/routes: %d %s", got.Status, got.Body)
	}
	policy, err := routing.ParsePolicy(got.Body)
	if err != nil || len(policy.Rules) != 1 {
		t.Fatalf("GET /admin/routes body: %v\n%s", err, got.Body)
	}
	policy.Rules[0].Gateways = []string{"nope"}
	bad, _ := json.Marshal(policy)
	if r := do("PUT", "/admin/routes", "sk_admin", string(bad)); r.Status != 422 {
		t.Fatalf("invalid policy: %d %s", r.Status, r.Body)
	}
	policy.Rules[0].Gateways = []string{"stripe", "alt"} // pos → Stripe, temporarily
	b, _ := json.Marshal(policy)
	switched := string(b)
	if gw := pay("order-2", "pos"); gw != "primary" {
		t.Fatalf("a refused policy changed routing: %s", gw)
	}
	if r := do("PUT", "/admin/routes", "sk_admin", switched, "If-Match", got.Header.Get("ETag")); r.Status != 200 {
		t.Fatalf("PUT /admin/routes: %d %s", r.Status, r.Body)
	}
	if gw := pay("order-3", "pos"); gw != "stripe" {
		t.Fatalf("pos payment after the switch went to %s", gw)
	}
	if gw := pay("order-4", "web"); gw != "primary" {
		t.Fatalf("web payment went to %s", gw)
	}
	h := do("GET", "/admin/gateways", "sk_admin", "")
	if h.Status != 200 || len(h.JSON["gateways"].([]any)) != 3 {
		t.Fatalf("GET /admin/gateways: %d %s", h.Status, h.Body)
	}
	if !strings.Contains(st.ServerLogs.String(), "routing: policy replaced") {
		t.Fatal("the policy switch was not logged")
	}
	if strings.Contains(st.ServerLogs.String(), "sk_test_e2e") {
		t.Fatal("the Stripe key appeared in the logs")
	}
}
