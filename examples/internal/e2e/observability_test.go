package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/examples/deploy"
	"github.com/payrail/payrail/examples/internal/apptest"
	"github.com/payrail/payrail/internal/testkit/otlpsink"
	"github.com/payrail/payrail/payments"
	"github.com/payrail/payrail/webhook"
)

// Secrets the test drives through the server and then looks for in every
// log line, span, metric and scrape: none may appear.
const (
	obsAPIKey    = "sk_test_obsE2E_9f3c2a7b41d8e6"
	obsAdminKey  = "sk_admin_obsE2E_5b8d1e4c7a2f90"
	obsWrongKey  = "sk_live_obsE2E_wrong_0c6e3b9d27"
	obsTokenPart = "t0kSecretPart7Q3"    // the secret part of a payment method token
	obsPANMeta   = "4111111111111111"    // a PAN in metadata (refused: 422)
	obsPANField  = "5555555555554444"    // a PAN in an unknown field (refused: 400)
	obsPANSpaced = "4000 0566 5566 5556" // a PAN with spaces in metadata
)

// obsDo sends a request to st with the API key key and the idempotency
// key idemKey, if not empty, and the header pairs given.
func obsDo(st *stack, method, path, key, idemKey, body string, headers ...string) response {
	st.tb.Helper()
	var h []string
	if key != "" {
		h = append(h, "Authorization", "Bearer "+key)
	}
	if idemKey != "" {
		h = append(h, "Idempotency-Key", idemKey)
	}
	return st.Do(method, path, body, append(h, headers...)...)
}

// obsWaitStatus polls GET /payments/{id} until the payment has status.
func obsWaitStatus(t *testing.T, st *stack, id string, status payments.Status) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	st.waitFinal(ctx, map[string]payments.Status{"/payments/" + id: status}, "Authorization", "Bearer "+obsAPIKey)
}

// obsScrape returns the series names (with _bucket, _sum, _count, _total
// suffixes, as PromQL sees them) of a Prometheus text exposition, and the
// text.
func obsScrape(t *testing.T, st *stack, path string) (map[string]bool, string) {
	t.Helper()
	// With API keys configured, /metrics takes an admin key.
	r := st.Do(http.MethodGet, path, "", "Authorization", "Bearer "+obsAdminKey)
	if r.Status != http.StatusOK {
		t.Fatalf("GET %s: %d", path, r.Status)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		if i := strings.IndexAny(l, "{ "); i > 0 {
			names[l[:i]] = true
		}
	}
	return names, string(r.Body)
}

// TestObservabilityEndToEnd runs the reference server (in-memory bus, its
// worker in process, mock gateway) exporting over OTLP/gRPC to a real OTLP
// receiver, drives sync, async, failing and malicious requests, and checks:
// one async payment is one trace from the HTTP request through the bus to
// the worker and the gateway; the guide's metrics arrive with their
// attributes; every metric the dashboard and the alerting rules query is in
// a real scrape of /metrics; and no log line, span, metric or scrape holds
// an API key, a payment method token's secret part or a card number.
func TestObservabilityEndToEnd(t *testing.T) {
	repo, err := filepath.Abs("../../..") // before apptest.Config changes the directory
	if err != nil {
		t.Fatal(err)
	}
	sink := otlpsink.StartOTLPSink(t)
	// Merchant webhooks: one endpoint that takes every event, one that
	// always answers 500 (its deliveries are retried and stay pending).
	hookSecret, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	hookOK := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer hookOK.Close()
	hookDown := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) }))
	defer hookDown.Close()
	cfg := apptest.Config(t, map[string]string{
		"PAYRAIL_WEBHOOK_ENDPOINTS": fmt.Sprintf(`[{"id":"ep_obs_ok","merchant":"merchant-obs","url":%q,"secrets":[%q]},`+
			`{"id":"ep_obs_down","merchant":"merchant-obs","url":%q,"secrets":[%q]}]`,
			hookOK.URL, hookSecret.Reveal(), hookDown.URL, hookSecret.Reveal()),
		"PAYRAIL_WEBHOOK_ALLOW_INSECURE":   "true",
		"PAYRAIL_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
		"PAYRAIL_WEBHOOK_SWEEP_INTERVAL":   "100ms",
		"MESSAGE_BUS_ADAPTER":              "inmemory",
		"PAYRAIL_API_KEYS":                 obsAPIKey + ":merchant-obs",
		"PAYRAIL_ADMIN_KEYS":               obsAdminKey,
		"PAYMENTS_MAX_ATTEMPTS":            "2",
		// The routing policy names the origins metrics may carry; any
		// other origin is counted as "other".
		"GATEWAY_ROUTES":              `{"rules":[{"name":"channels","match":{"origins":["web","pos"]},"gateways":["mock"]}],"default":{"gateways":["mock"]}}`,
		"LOG_LEVEL":                   "debug", // the most log lines to check for secrets
		"SERVICE_NAME":                "payrail-e2e",
		"OTEL_EXPORTER_OTLP_ENDPOINT": sink.GRPCEndpoint(),
		"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
		"OTEL_BSP_SCHEDULE_DELAY":     "100",
		"OTEL_METRIC_EXPORT_INTERVAL": "300",
	})
	st := startStack(t, cfg, stackOptions{})
	logs := st.ServerLogs

	token := "pm_obs_" + obsTokenPart
	// 1. The async payment whose trace is checked.
	r := obsDo(st, http.MethodPost, "/payments", obsAPIKey, "obs-async-1",
		`{"amount":4200,"currency":"GBP","payment_method":"`+token+`","origin":"pos","metadata":{"order":"A-1"}}`, "Prefer", "respond-async")
	if r.Status != http.StatusAccepted {
		t.Fatalf("async create: %d %v", r.Status, r.JSON)
	}
	asyncID, _ := r.JSON["id"].(string)
	obsWaitStatus(t, st, asyncID, payments.StatusCaptured)

	// 2. Sync payments: approved, replayed, reused key (409), declined (402).
	body := `{"amount":1999,"currency":"EUR","payment_method":"` + token + `","origin":"web"}`
	if r := obsDo(st, http.MethodPost, "/payments", obsAPIKey, "obs-sync-1", body); r.Status != http.StatusCreated {
		t.Fatalf("sync create: %d %v", r.Status, r.JSON)
	}
	if r := obsDo(st, http.MethodPost, "/payments", obsAPIKey, "obs-sync-1", body); r.Status != http.StatusCreated || r.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %v", r.Status, r.Header)
	}
	if r := obsDo(st, http.MethodPost, "/payments", obsAPIKey, "obs-sync-1", strings.Replace(body, "1999", "2999", 1)); r.Status != http.StatusConflict {
		t.Fatalf("reused key: %d %v", r.Status, r.JSON)
	}
	if r := obsDo(st, http.MethodPost, "/payments", obsAPIKey, "obs-decline-1",
		`{"amount":1999,"currency":"EUR","payment_method":"pm_card_insufficientFunds"}`); r.Status != http.StatusPaymentRequired {
		t.Fatalf("decline: %d %v", r.Status, r.JSON)
	}

	// 3. An async payment the gateway keeps failing: retried, then failed
	// and dead-lettered.
	r = obsDo(st, http.MethodPost, "/payments", obsAPIKey, "obs-async-fail",
		`{"amount":500,"currency":"EUR","payment_method":"pm_card_processingError","origin":"pos"}`, "Prefer", "respond-async")
	if r.Status != http.StatusAccepted {
		t.Fatalf("async failing create: %d %v", r.Status, r.JSON)
	}
	obsWaitStatus(t, st, r.JSON["id"].(string), payments.StatusFailed)

	// 4. Card numbers where they do not belong, and wrong keys.
	if r := obsDo(st, http.MethodPost, "/payments", obsAPIKey, "obs-pan-meta",
		`{"amount":100,"currency":"EUR","payment_method":"pm_card_visa","metadata":{"note":"card `+obsPANMeta+`","other":"`+obsPANSpaced+`"}}`); r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("PAN in metadata: %d %v", r.Status, r.JSON)
	}
	if r := obsDo(st, http.MethodPost, "/payments", obsAPIKey, "obs-pan-field",
		`{"amount":100,"currency":"EUR","payment_method":"pm_card_visa","card_number":"`+obsPANField+`"}`); r.Status != http.StatusBadRequest {
		t.Fatalf("PAN in an unknown field: %d %v", r.Status, r.JSON)
	}
	if r := obsDo(st, http.MethodPost, "/payments", obsAPIKey, "obs-pan-pm",
		`{"amount":100,"currency":"EUR","payment_method":"`+obsPANField+`"}`); r.Status != http.StatusUnprocessableEntity {
		t.Fatalf("PAN as payment method: %d %v", r.Status, r.JSON)
	}
	if r := obsDo(st, http.MethodGet, "/payments/"+asyncID, obsWrongKey, "", ""); r.Status != http.StatusUnauthorized {
		t.Fatalf("wrong key: %d", r.Status)
	}
	if r := obsDo(st, http.MethodGet, "/admin/mode", obsAdminKey, "", ""); r.Status != http.StatusOK {
		t.Fatalf("admin: %d %v", r.Status, r.JSON)
	}

	// 5. Every metric the dashboard and the alerts query is in a real
	// scrape of /metrics, and the scrape holds no secret. The webhook
	// metrics appear once the worker attempted deliveries and a sweep saw
	// one pending.
	var scraped map[string]bool
	var text string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		scraped, text = obsScrape(t, st, "/metrics")
		if scraped["payrail_webhook_deliveries_total"] && scraped["payrail_webhook_pending_age_seconds"] || time.Now().After(deadline) {
			break
		}
	}
	obsCheckQueriedMetrics(t, repo, scraped)

	// 6. The queue gauges are read at each periodic export while the bus
	// is open: wait for one that saw the dead letter. Then stop: the server
	// flushes the rest of its telemetry on the way out.
	if !sink.Wait(15*time.Second, func() bool {
		for _, p := range sink.MetricPoints() {
			if p.Metric == "payrail.bus.dead_letters" && p.Value >= 1 {
				return true
			}
		}
		return false
	}) {
		t.Error("no periodic metric export with the DLQ gauge")
	}
	st.Stop()
	spans := sink.Spans()
	points := sink.MetricPoints()

	t.Run("one trace per async payment", func(t *testing.T) { obsCheckAsyncTrace(t, spans, asyncID) })
	t.Run("guide metrics with attributes", func(t *testing.T) { obsCheckMetrics(t, points) })
	t.Run("logs correlate with traces", func(t *testing.T) { obsCheckLogs(t, logs.String(), spans) })
	t.Run("no secrets or card data", func(t *testing.T) {
		// Positive controls: the search sees what was exported and logged,
		// including the requests that carried card numbers.
		if len(sink.Find(asyncID)) == 0 || !strings.Contains(logs.String(), "payrail server starting") {
			t.Fatal("the searches find nothing, not even the payment id and the start-up line")
		}
		var refused int
		for _, s := range spans {
			if s.Kind == "server" && (s.Attrs["http.response.status_code"] == "422" || s.Attrs["http.response.status_code"] == "400") {
				refused++
			}
		}
		if refused < 3 {
			t.Fatalf("%d spans of the refused card-number requests, want 3", refused)
		}
		for _, secret := range []string{obsAPIKey, obsAdminKey, obsWrongKey, obsTokenPart, obsPANMeta, obsPANField, obsPANSpaced,
			strings.ReplaceAll(obsPANSpaced, " ", ""), strings.TrimPrefix(hookSecret.Reveal(), webhook.SecretPrefix)} {
			if hits := sink.Find(secret); len(hits) > 0 {
				t.Errorf("%q exported over OTLP:\n%s", secret, strings.Join(hits, "\n"))
			}
			if strings.Contains(logs.String(), secret) {
				for _, l := range strings.Split(logs.String(), "\n") {
					if strings.Contains(l, secret) {
						t.Errorf("%q logged: %s", secret, l)
					}
				}
			}
			if strings.Contains(text, secret) {
				t.Errorf("%q in /metrics", secret)
			}
		}
	})
}

// obsCheckQueriedMetrics: every metric name in the dashboard's and the
// rules' expressions is emitted (or defined by a recording rule).
func obsCheckQueriedMetrics(t *testing.T, repo string, scraped map[string]bool) {
	t.Helper()
	queries, err := deploy.DashboardQueries()
	if err != nil {
		t.Fatal(err)
	}
	rules, recorded, err := deploy.RuleExpressions()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{"ALERTS": true} // Prometheus' own series of alert states
	for _, r := range recorded {
		known[r] = true
	}
	used := map[string][]string{}
	metricNames := func(where, q string) []string {
		names, err := deploy.MetricNames(q) // Prometheus' PromQL parser
		if err != nil {
			t.Errorf("%s: %v", where, err)
		}
		return names
	}
	for where, q := range queries {
		for _, n := range metricNames("dashboard "+where, q) {
			used[n] = append(used[n], "dashboard "+where)
		}
	}
	for where, q := range rules {
		for _, n := range metricNames("rule "+where, q) {
			used[n] = append(used[n], "rule "+where)
		}
	}
	// The PromQL quoted in the runbooks: emitted too, or (for series that
	// exist only after an event this test does not cause, like a redrive)
	// defined by the code's instruments.
	defined := map[string]bool{}
	for _, c := range []string{bus.MetricRedriven, bus.MetricSentMessages, bus.MetricConsumedMessages} {
		defined[strings.ReplaceAll(c, ".", "_")+"_total"] = true
	}
	b, err := os.ReadFile(filepath.Join(repo, "docs/runbooks.md"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(string(b), -1) {
		q := m[1]
		if !regexp.MustCompile(`\b(rate|increase|histogram_quantile|sum by|max by)\s*\(|^[a-z_:]+\{`).MatchString(q) || strings.Contains(q, "&&") {
			continue // not PromQL (TraceQL has &&; commands and names have neither)
		}
		n++
		for _, name := range metricNames("docs/runbooks.md", q) {
			if !scraped[name] && !defined[name] {
				used[name] = append(used[name], "docs/runbooks.md")
			}
		}
	}
	if n < 10 {
		t.Errorf("docs/runbooks.md: only %d PromQL expressions found", n)
	}
	if len(used) < 10 {
		t.Fatalf("only %d metric names found in the queries: %v", len(used), used)
	}
	var names []string
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !scraped[n] && !known[n] {
			t.Errorf("metric %s is queried by %v but not emitted (not in the /metrics scrape)", n, used[n])
		}
	}
	t.Logf("%d metric names queried by the dashboard and the rules, all emitted or recorded: %v", len(names), names)
}

// obsCheckAsyncTrace: the async payment's trace holds the HTTP server span,
// the bus publish and process spans, the worker's span and the gateway
// call, each a descendant of the previous.
func obsCheckAsyncTrace(t *testing.T, spans []otlpsink.SinkSpan, paymentID string) {
	var process *otlpsink.SinkSpan
	for i, s := range spans {
		if s.Name == "payments.process" && s.Attrs["payrail.payment.id"] == paymentID {
			process = &spans[i]
		}
	}
	if process == nil {
		t.Fatalf("no payments.process span for %s among %d spans", paymentID, len(spans))
	}
	trace := otlpsink.Trace(spans, process.TraceID)
	find := func(pred func(otlpsink.SinkSpan) bool, what string) otlpsink.SinkSpan {
		t.Helper()
		for _, s := range trace {
			if pred(s) {
				return s
			}
		}
		var names []string
		for _, s := range trace {
			names = append(names, s.Kind+" "+s.Name)
		}
		t.Fatalf("trace %s has no %s; spans: %v", process.TraceID, what, names)
		return otlpsink.SinkSpan{}
	}
	httpSpan := find(func(s otlpsink.SinkSpan) bool {
		return s.Kind == "server" && s.Name == "POST /payments" && s.Attrs["http.response.status_code"] == "202"
	}, "HTTP server span POST /payments (202)")
	publish := find(func(s otlpsink.SinkSpan) bool { return s.Kind == "producer" && s.Name == "publish payments" }, "producer span publish payments")
	busProcess := find(func(s otlpsink.SinkSpan) bool { return s.Kind == "consumer" && s.Name == "process payments" }, "consumer span process payments")
	gw := find(func(s otlpsink.SinkSpan) bool {
		return s.Kind == "client" && s.Name == "gateway.authorize" && s.Attrs["payrail.payment.id"] == paymentID
	}, "client span gateway.authorize")
	for _, link := range []struct {
		ancestor, span otlpsink.SinkSpan
	}{{httpSpan, publish}, {publish, busProcess}, {busProcess, *process}, {*process, gw}} {
		if !otlpsink.IsAncestor(trace, link.ancestor.SpanID, link.span.SpanID) {
			t.Errorf("%s is not under %s", link.span.Name, link.ancestor.Name)
		}
	}
	if busProcess.ParentSpanID != publish.SpanID {
		t.Error("the bus process span's parent is not the publish span (trace context not taken from the message)")
	}
	if httpSpan.ParentSpanID != "" {
		t.Errorf("the HTTP span has a parent %s: the request carried no trace context", httpSpan.ParentSpanID)
	}
	if httpSpan.Attrs["url.path"] != "/payments" || publish.Attrs["messaging.system"] != "inmemory" ||
		publish.Attrs["messaging.destination.name"] != "payments" || gw.Attrs["payrail.gateway"] != "mock" ||
		process.Attrs["payrail.outcome"] != "captured" || process.Attrs["payrail.origin"] != "pos" {
		t.Errorf("attributes: http %v\npublish %v\nprocess %v\ngateway %v", httpSpan.Attrs, publish.Attrs, process.Attrs, gw.Attrs)
	}
	for _, s := range trace {
		if s.Resource["service.name"] != "payrail-e2e" {
			t.Errorf("span %s from service %q, want payrail-e2e (SERVICE_NAME)", s.Name, s.Resource["service.name"])
		}
	}
}

// obsCheckMetrics: the operations guide's metrics arrived over OTLP with
// the attributes the dashboard and alerts group by.
func obsCheckMetrics(t *testing.T, points []otlpsink.SinkPoint) {
	has := func(metric string, want map[string]string, ok func(otlpsink.SinkPoint) bool) {
		t.Helper()
		for _, p := range points {
			if p.Metric != metric {
				continue
			}
			match := true
			for k, v := range want {
				if p.Attrs[k] != v {
					match = false
					break
				}
			}
			if match && (ok == nil || ok(p)) {
				return
			}
		}
		var seen []string
		for _, p := range points {
			if p.Metric == metric {
				seen = append(seen, fmt.Sprint(p.Attrs))
			}
		}
		slices.Sort(seen)
		seen = slices.Compact(seen)
		t.Errorf("no %s point with %v; points: %v", metric, want, seen)
	}
	positive := func(p otlpsink.SinkPoint) bool { return p.Value > 0 || p.Count > 0 }
	has("http.server.request.duration", map[string]string{"http.route": "/payments", "http.request.method": "POST", "http.response.status_code": "202"}, positive)
	has("http.server.request.duration", map[string]string{"http.route": "/payments", "http.response.status_code": "409"}, positive)
	has("payrail.payment.operations", map[string]string{"payrail.operation": "process", "payrail.outcome": "captured", "payrail.gateway": "mock", "payrail.origin": "pos"}, positive)
	has("payrail.payment.operations", map[string]string{"payrail.operation": "authorize", "payrail.outcome": "captured", "payrail.gateway": "mock", "payrail.origin": "web"}, positive)
	has("payrail.payment.operations", map[string]string{"payrail.operation": "authorize", "payrail.outcome": "declined"}, positive)
	has("payrail.payment.operations", map[string]string{"payrail.operation": "authorize", "payrail.outcome": "replayed"}, positive)
	has("payrail.payment.operations", map[string]string{"payrail.operation": "process", "payrail.outcome": "failed"}, positive)
	has("payrail.payment.operation.duration", map[string]string{"payrail.operation": "authorize", "payrail.gateway": "mock"}, positive)
	has("payrail.gateway.request.duration", map[string]string{"payrail.gateway": "mock", "payrail.operation": "authorize"}, positive)
	has("payrail.gateway.request.duration", map[string]string{"payrail.gateway": "mock", "error.type": "transient"}, positive)
	has("payrail.gateway.request.duration", map[string]string{"payrail.gateway": "mock", "error.type": "declined"}, positive)
	has("payrail.idempotency.requests", map[string]string{"payrail.idempotency.outcome": "mismatch"}, positive)
	has("payrail.idempotency.requests", map[string]string{"payrail.idempotency.outcome": "replay"}, positive)
	has("payrail.http.server.problems", map[string]string{"http.route": "/payments", "http.response.status_code": "409", "payrail.error.code": "idempotency_key_reused"}, positive)
	has("payrail.http.server.problems", map[string]string{"http.response.status_code": "422", "payrail.error.code": "validation_failed"}, positive)
	bus := map[string]string{"messaging.system": "inmemory"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{"messaging.system": "inmemory"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	has("messaging.client.sent.messages", with("messaging.destination.name", "payments"), positive)
	has("messaging.client.consumed.messages", with("messaging.destination.subscription.name", "payments"), positive)
	has("messaging.client.operation.duration", with("messaging.operation.name", "publish"), positive)
	has("messaging.client.operation.duration", with("messaging.operation.name", "ack", "messaging.destination.subscription.name", "payments"), positive)
	has("messaging.client.operation.duration", with("messaging.operation.name", "nack"), positive)
	has("messaging.client.operation.duration", with("messaging.operation.name", "dead_letter"), positive)
	has("messaging.process.duration", with("messaging.destination.subscription.name", "payments"), positive)
	has("payrail.bus.delivery.lag", bus, positive)
	has("payrail.webhook.deliveries", map[string]string{"payrail.webhook.endpoint": "ep_obs_ok", "payrail.outcome": "delivered"}, positive)
	has("payrail.webhook.deliveries", map[string]string{"payrail.webhook.endpoint": "ep_obs_down", "payrail.outcome": "retry"}, positive)
	has("payrail.webhook.pending.age", map[string]string{"payrail.webhook.endpoint": "ep_obs_down"}, positive)
	has("payrail.bus.backlog", with("messaging.destination.subscription.name", "payments"), nil)
	has("payrail.bus.in_flight", bus, nil)
	has("payrail.bus.dead_letters", with("messaging.destination.subscription.name", "payments"), func(p otlpsink.SinkPoint) bool { return p.Value >= 1 })
}

// obsCheckLogs: every line is JSON; lines logged while handling a request
// or a message carry the trace and span ids of an exported span.
func obsCheckLogs(t *testing.T, logs string, spans []otlpsink.SinkSpan) {
	ids := map[string]bool{}
	for _, s := range spans {
		ids[s.TraceID+"/"+s.SpanID] = true
	}
	var traced, correlated int
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("log line is not JSON: %s", l)
			continue
		}
		tid, _ := m["trace_id"].(string)
		sid, _ := m["span_id"].(string)
		if tid == "" {
			continue
		}
		traced++
		if ids[tid+"/"+sid] {
			correlated++
		}
	}
	// The failing async payment logs from the worker's span.
	if traced == 0 || correlated == 0 {
		t.Errorf("%d log lines with trace ids, %d of them matching an exported span; want some of each", traced, correlated)
	}
}
