package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/examples/internal/apptest"
	"github.com/payrail/payrail/payments"
)

// TestSharedRoutingPolicyServerToWorker runs the runbook's "switch the
// gateway selector" on a production-shaped deployment: the reference
// server and a standalone worker sharing PostgreSQL (payments and the
// routing policy) and Kafka (kfake). A PUT /admin/routes on the server
// moves the async payments the worker processes: the worker shows the new
// policy version on its admin port within ROUTING_POLL_INTERVAL, and the
// next async payment is processed by the newly selected gateway.
func TestSharedRoutingPolicyServerToWorker(t *testing.T) {
	paymentsURL, idemURL := storesPeers(t)
	brokers := apptest.Kafka(t, 2, "payments-routes-e2e")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := apptest.Config(t, map[string]string{
		"MESSAGE_BUS_ADAPTER":   "kafka",
		"KAFKA_BROKERS":         brokers,
		"PAYMENTS_TOPIC":        "payments-routes-e2e",
		"KAFKA_GROUP_ID":        "payments-worker-routes-e2e",
		"PAYMENTS_STORE_URL":    paymentsURL,
		"IDEMPOTENCY_URL":       idemURL,
		"GATEWAY_URL":           "mock://?name=primary",
		"GATEWAY_URLS":          "alt=mock://",
		"ROUTING_POLL_INTERVAL": "100ms",
		"PAYRAIL_API_KEYS":      "sk_merchant:acme",
		"PAYRAIL_ADMIN_KEYS":    "sk_admin",
		"LOG_LEVEL":             "warn",
	})
	storesOpsctl(t, cfg, "db", "migrate", "--apply")
	st := startStack(t, cfg, stackOptions{Ready: "/readyz"})
	merchant := []string{"Authorization", "Bearer sk_merchant"}
	admin := []string{"Authorization", "Bearer sk_admin"}

	asyncVia := func(key string) string {
		t.Helper()
		resp := st.Post(key, `{"amount":1200,"currency":"EUR","payment_method":"pm_card_visa","origin":"web"}`, true, merchant...)
		if resp.Status != http.StatusAccepted {
			t.Fatalf("async POST = %d %s", resp.Status, resp.Body)
		}
		loc := resp.Header.Get("Location")
		st.waitFinal(ctx, map[string]payments.Status{loc: payments.StatusCaptured}, merchant...)
		var p struct{ Gateway string }
		if r := st.Do(http.MethodGet, loc, "", merchant...); json.Unmarshal(r.Body, &p) != nil {
			t.Fatalf("GET %s: %s", loc, r.Body)
		}
		return p.Gateway
	}
	if gw := asyncVia("routes-before"); gw != "primary" {
		t.Fatalf("before the switch the worker used %q; want primary", gw)
	}

	put := st.Do(http.MethodPut, "/admin/routes", `{"default":{"gateways":["alt","primary"]}}`,
		append(admin, "Content-Type", "application/json")...)
	if put.Status != http.StatusOK {
		t.Fatalf("PUT /admin/routes on the server = %d %s", put.Status, put.Body)
	}
	version := put.Header.Get("ETag")

	// The worker's admin port shows the same policy version, shortly.
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, st.WorkerBase+"/admin/routes", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer sk_admin")
		res, err := st.Client.Do(req)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK && res.Header.Get("ETag") == version {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker's /admin/routes does not show version %s 10 s after the switch (last: %v)", version, fmt.Sprint(res, err))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if gw := asyncVia("routes-after"); gw != "alt" {
		t.Fatalf("after the switch the worker used %q; want alt", gw)
	}
	if !strings.Contains(version, `"`) {
		t.Errorf("ETag %q is not a quoted version", version)
	}
}
