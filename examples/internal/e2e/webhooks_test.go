package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/examples/internal/apptest"
	"github.com/payrail/payrail/webhook"
)

// merchantReceiver is a merchant's webhook endpoint, as a merchant writes
// it: every delivery is verified with webhook.Verifier before it is
// answered. While down it answers 500 to deliveries that verify.
type merchantReceiver struct {
	srv      *httptest.Server
	down     atomic.Bool
	mu       sync.Mutex
	events   []*webhook.Event // verified and accepted
	failed   map[string]int   // event id → verified deliveries answered 500
	rejected int              // deliveries that did not verify
}

func newMerchantReceiver(t *testing.T, secret webhook.Secret) *merchantReceiver {
	t.Helper()
	v, err := webhook.NewVerifier([]string{secret.Reveal()})
	if err != nil {
		t.Fatal(err)
	}
	r := &merchantReceiver{failed: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if err := v.Verify(req.Header, body); err != nil {
			r.rejected++
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		ev, err := webhook.ParseEvent(body)
		if err != nil {
			r.rejected++
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.down.Load() {
			r.failed[ev.ID]++
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		r.events = append(r.events, ev)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// received returns the accepted events of a payment.
func (r *merchantReceiver) received(paymentID string) []*webhook.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*webhook.Event
	for _, ev := range r.events {
		if ev.PaymentID == paymentID {
			out = append(out, ev)
		}
	}
	return out
}

func (r *merchantReceiver) counts(eventID string) (failed, rejected int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed[eventID], r.rejected
}

// eventually polls f every 50ms until it reports true, failing the test
// after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !f(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
	}
}

// pendingDelivery is a line of opsctl events pending -o json.
type pendingDelivery struct {
	PaymentID   string     `json:"payment_id"`
	EventID     string     `json:"event_id"`
	Type        string     `json:"type"`
	Endpoint    string     `json:"endpoint"`
	Attempts    int        `json:"attempts"`
	NextAttempt *time.Time `json:"next_attempt"`
	LastResult  string     `json:"last_result"`
}

// TestWebhooksEndToEnd deploys the reference server and a standalone
// worker (Kafka, PostgreSQL payment store, Redis idempotency keys) with a
// merchant endpoint configured as operators do (PAYRAIL_WEBHOOK_ENDPOINTS,
// http and loopback allowed by the development flags): the payments the
// server captures (sync) and the worker captures (async) each reach the
// merchant as a payment.captured that webhook.Verifier accepts, with the
// payment as the API shows it. Then the endpoint answers 500: opsctl events
// pending shows the delivery retried, and once the endpoint recovers
// opsctl events redeliver --apply gets it delivered at once.
func TestWebhooksEndToEnd(t *testing.T) {
	paymentsURL, idemURL := storesPeers(t)
	brokers := apptest.Kafka(t, 1, "payments-webhooks-e2e")
	secret, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	recv := newMerchantReceiver(t, secret)
	const apiKey = "sk_test_webhooks_e2e_3f9a"
	cfg := apptest.Config(t, map[string]string{
		"MESSAGE_BUS_ADAPTER": "kafka",
		"KAFKA_BROKERS":       brokers,
		"PAYMENTS_TOPIC":      "payments-webhooks-e2e",
		"KAFKA_GROUP_ID":      "payments-worker-webhooks-e2e",
		"PAYMENTS_STORE_URL":  paymentsURL,
		"IDEMPOTENCY_URL":     idemURL,
		"PAYRAIL_API_KEYS":    apiKey + ":acme",
		"PAYRAIL_WEBHOOK_ENDPOINTS": fmt.Sprintf(`[{"id":"ep_acme","merchant":"acme","url":%q,"secrets":[%q],"event_types":["payment.captured","payment.refunded"]}]`,
			recv.srv.URL+"/webhooks/payrail", secret.Reveal()),
		"PAYRAIL_WEBHOOK_ALLOW_INSECURE":   "true",
		"PAYRAIL_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
		"PAYRAIL_WEBHOOK_SWEEP_INTERVAL":   "100ms",
		"LOG_LEVEL":                        "warn",
	})
	if !cfg.Events || !cfg.Webhooks() {
		t.Fatalf("webhooks not enabled by the configuration: events %v, endpoints %d", cfg.Events, len(cfg.WebhookEndpoints))
	}
	storesOpsctl(t, cfg, "db", "migrate", "--apply")
	st := startStack(t, cfg, stackOptions{Ready: "/readyz"})
	auth := []string{"Authorization", "Bearer " + apiKey}

	// The payment as the API shows it now.
	apiView := func(id string) map[string]any {
		t.Helper()
		r := st.Do(http.MethodGet, "/payments/"+id, "", auth...)
		if r.Status != http.StatusOK || r.JSON == nil {
			t.Fatalf("GET /payments/%s = %d %s", id, r.Status, r.Body)
		}
		return r.JSON
	}
	// checkCaptured waits for the payment's payment.captured at the
	// merchant and compares it with the API's view of the payment.
	checkCaptured := func(id string) *webhook.Event {
		t.Helper()
		eventually(t, 20*time.Second, "payment.captured of "+id+" at the merchant", func() bool { return len(recv.received(id)) > 0 })
		evs := recv.received(id)
		if len(evs) != 1 {
			t.Fatalf("payment %s: %d events delivered, want only payment.captured (the endpoint filters the others)", id, len(evs))
		}
		ev := evs[0]
		if ev.Type != webhook.PaymentCaptured || ev.Merchant != "acme" || ev.PaymentID != id || ev.PaymentVersion < 1 {
			t.Errorf("delivered %s %s for %s/%s version %d", ev.ID, ev.Type, ev.Merchant, ev.PaymentID, ev.PaymentVersion)
		}
		var data map[string]any
		if err := json.Unmarshal(ev.Data, &data); err != nil {
			t.Fatal(err)
		}
		if want := apiView(id); !reflect.DeepEqual(data, want) {
			t.Errorf("payment %s: event data\n %v\nwant the API's view\n %v", id, data, want)
		}
		if data["status"] != "captured" {
			t.Errorf("event data status %v", data["status"])
		}
		return ev
	}

	// 1. Sync: the server captures and records the event; the worker
	// delivers it.
	r := st.Post("wh-sync-1", `{"amount":1999,"currency":"EUR","payment_method":"pm_card_visa"}`, false, auth...)
	if r.Status != http.StatusCreated {
		t.Fatalf("sync POST = %d %s", r.Status, r.Body)
	}
	syncID, _ := r.JSON["id"].(string)
	checkCaptured(syncID)

	// 2. Async: the worker captures, and records the event itself.
	r = st.Post("wh-async-1", `{"amount":4250,"currency":"GBP","payment_method":"pm_card_visa"}`, true, auth...)
	if r.Status != http.StatusAccepted {
		t.Fatalf("async POST = %d %s", r.Status, r.Body)
	}
	asyncID, _ := r.JSON["id"].(string)
	checkCaptured(asyncID)

	// 3. The merchant's endpoint fails: the delivery is retried, and
	// opsctl events pending shows it.
	recv.down.Store(true)
	r = st.Post("wh-down-1", `{"amount":700,"currency":"EUR","payment_method":"pm_card_visa"}`, false, auth...)
	if r.Status != http.StatusCreated {
		t.Fatalf("sync POST = %d %s", r.Status, r.Body)
	}
	downID, _ := r.JSON["id"].(string)
	var pending pendingDelivery
	// The first retry is 5s (±20%) after the first attempt.
	eventually(t, 20*time.Second, "two failed attempts in opsctl events pending", func() bool {
		pending = pendingDelivery{}
		sc := bufio.NewScanner(strings.NewReader(storesOpsctl(t, cfg, "events", "pending", "-o", "json")))
		for sc.Scan() {
			var d pendingDelivery
			if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
				t.Fatalf("events pending line %q: %v", sc.Text(), err)
			}
			if d.PaymentID == downID {
				pending = d
			}
		}
		return pending.Attempts >= 2
	})
	if pending.Type != "payment.captured" || pending.Endpoint != "ep_acme" || pending.LastResult != "HTTP 500 Internal Server Error" ||
		pending.NextAttempt == nil || !pending.NextAttempt.After(time.Now()) {
		t.Errorf("pending delivery %+v; want payment.captured to ep_acme retried after HTTP 500, next attempt ahead", pending)
	}
	if failed, _ := recv.counts(pending.EventID); failed < 2 {
		t.Errorf("the endpoint answered %d signed deliveries of %s with 500, want the 2 attempts", failed, pending.EventID)
	}
	table := storesOpsctl(t, cfg, "events", "pending")
	if !strings.Contains(table, pending.EventID) || !strings.Contains(table, "HTTP 500 Internal Server Error") {
		t.Errorf("events pending table:\n%s", table)
	}

	// 4. The endpoint recovers; a redelivery sends the event at once (the
	// next scheduled retry is 20s away).
	recv.down.Store(false)
	dry := storesOpsctl(t, cfg, "events", "redeliver", "acme", downID, pending.EventID, "--endpoint", "ep_acme")
	if !strings.Contains(dry, "dry run: would redeliver") || len(recv.received(downID)) != 0 {
		t.Fatalf("redeliver dry run:\n%s", dry)
	}
	storesOpsctl(t, cfg, "events", "redeliver", "acme", downID, pending.EventID, "--endpoint", "ep_acme", "--apply")
	eventually(t, 5*time.Second, "the redelivered event", func() bool { return len(recv.received(downID)) > 0 })
	if ev := checkCaptured(downID); ev.ID != pending.EventID {
		t.Errorf("redelivered %s, want %s (the same id as the failed attempts)", ev.ID, pending.EventID)
	}
	// Delivered by the redelivery's first attempt, not a scheduled retry.
	list := storesOpsctl(t, cfg, "events", "list", "acme", downID, "-o", "json")
	var listed struct {
		Deliveries []struct {
			Endpoint, Status string
			Attempts         int
		} `json:"deliveries"`
	}
	if err := json.Unmarshal([]byte(list), &listed); err != nil || len(listed.Deliveries) != 1 ||
		listed.Deliveries[0].Status != "delivered" || listed.Deliveries[0].Attempts != 1 {
		t.Errorf("events list after the redelivery: %v\n%s", err, list)
	}
	eventually(t, 5*time.Second, "an empty outbox", func() bool {
		return strings.TrimSpace(storesOpsctl(t, cfg, "events", "pending", "-o", "json")) == ""
	})
	if _, rejected := recv.counts(""); rejected != 0 {
		t.Errorf("%d deliveries failed the merchant's verification", rejected)
	}
}
