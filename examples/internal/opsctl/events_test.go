package opsctl_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/payments"
	paypostgres "github.com/payrail/payrail/payments/postgres"
	"github.com/payrail/payrail/webhook"
)

// eventsFixture is a payment with one event in a PostgreSQL payment
// store, delivered once to two real HTTP endpoints: ep_fail answered 500
// (pending, retried later) and ep_gone 410 (dead-lettered).
type eventsFixture struct {
	env                 map[string]string
	store               payments.Store
	merchant, pay, evID string
	secret              webhook.Secret
}

func newEventsFixture(t *testing.T) eventsFixture {
	t.Helper()
	ctx := context.Background()
	u := pgURL(t, "opsctl_events_", paypostgres.Migrate)
	store, err := payments.OpenStore(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	answer := func(code int) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	sec, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	const m = "acme"
	client, err := webhook.NewClient(webhook.AllowInsecureHTTP(), webhook.WithAllowedNetworks(netip.MustParsePrefix("127.0.0.0/8")))
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.Open(ctx, "mock://")
	if err != nil {
		t.Fatal(err)
	}
	p, err := payments.New(payments.WithGateway(gw), payments.WithStore(store), payments.WithEvents())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	w, err := payments.NewWorker(p, payments.WithWebhooks(payments.Webhooks{
		Endpoints: payments.StaticEndpoints{
			{ID: "ep_fail", Merchant: m, URL: answer(http.StatusInternalServerError), Secrets: []webhook.Secret{sec}, Enabled: true},
			{ID: "ep_gone", Merchant: m, URL: answer(http.StatusGone), Secrets: []webhook.Secret{sec}, Enabled: true},
		},
		Client: client,
	}))
	if err != nil {
		t.Fatal(err)
	}
	pay, err := p.Authorize(ctx, payments.AuthorizeRequest{Merchant: m, IdempotencyKey: "ev-1", Amount: 1250, Currency: "EUR",
		PaymentMethod: "pm_card_visa", CaptureMethod: payments.CaptureAutomatic})
	if err != nil {
		t.Fatal(err)
	}
	// One delivery attempt per endpoint, made here rather than by a
	// running worker, so that the store's state is known.
	if n, err := w.DeliverEvents(ctx, m, pay.ID); err != nil || n != 2 {
		t.Fatalf("DeliverEvents = %d, %v; want 2 attempts", n, err)
	}
	stored, err := store.Get(ctx, m, pay.ID)
	if err != nil || len(stored.Events) != 1 || len(stored.Events[0].Deliveries) != 2 {
		t.Fatalf("stored payment: %+v, %v", stored, err)
	}
	return eventsFixture{env: map[string]string{"PAYMENTS_STORE_URL": u}, store: store, merchant: m, pay: pay.ID,
		evID: stored.Events[0].ID(stored), secret: sec}
}

// delivery returns the stored delivery of the fixture's event to ep.
func (f eventsFixture) delivery(t *testing.T, ep string) payments.Delivery {
	t.Helper()
	p, err := f.store.Get(context.Background(), f.merchant, f.pay)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range p.Events[0].Deliveries {
		if d.Endpoint == ep {
			return d
		}
	}
	t.Fatalf("no delivery to %s", ep)
	return payments.Delivery{}
}

func jsonLines[T any](t *testing.T, out string) []T {
	t.Helper()
	var vs []T
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		vs = append(vs, v)
	}
	return vs
}

// TestEvents runs the events commands against a PostgreSQL payment store.
func TestEvents(t *testing.T) {
	f := newEventsFixture(t)
	secret := strings.TrimPrefix(f.secret.Reveal(), "whsec_")

	// pending: the 500 is pending with one attempt; the 410 is dead, not pending.
	code, out, errOut := run(t, f.env, "events", "pending")
	want(t, "events pending", code, 0, out+errOut, "-- 1 pending deliver(ies) of 1 payment(s)")
	wantRow(t, "events pending", out, f.pay, f.merchant, f.evID, "payment.captured", "ep_fail", "1")
	if !strings.Contains(out, "HTTP 500 Internal Server Error") || strings.Contains(out, "ep_gone") {
		t.Errorf("events pending:\n%s", out)
	}
	code, out, _ = run(t, f.env, "events", "pending", "-o", "json")
	rows := jsonLines[struct {
		PaymentID   string     `json:"payment_id"`
		EventID     string     `json:"event_id"`
		Type        string     `json:"type"`
		Endpoint    string     `json:"endpoint"`
		Status      string     `json:"status"`
		Attempts    int        `json:"attempts"`
		NextAttempt *time.Time `json:"next_attempt"`
		LastResult  string     `json:"last_result"`
	}](t, out)
	if code != 0 || len(rows) != 1 || rows[0].PaymentID != f.pay || rows[0].EventID != f.evID || rows[0].Endpoint != "ep_fail" ||
		rows[0].Status != "pending" || rows[0].Attempts != 1 || rows[0].NextAttempt == nil || rows[0].LastResult != "HTTP 500 Internal Server Error" {
		t.Errorf("events pending -o json = %d %+v", code, rows)
	}

	// list: every delivery of every event.
	code, out, _ = run(t, f.env, "events", "list", f.merchant, f.pay)
	want(t, "events list", code, 0, out, "-- 1 event(s) of payment "+f.pay+" (status captured)")
	wantRow(t, "events list", out, f.evID, "payment.captured", "ep_fail", "pending", "1")
	wantRow(t, "events list", out, f.evID, "payment.captured", "ep_gone", "dead", "1", "-", "HTTP", "410", "Gone")
	code, out, _ = run(t, f.env, "events", "ls", f.merchant, f.pay, "-o", "json")
	evs := jsonLines[struct {
		ID         string `json:"id"`
		Type       string `json:"type"`
		Status     string `json:"payment_status"`
		Resolved   bool   `json:"resolved"`
		Deliveries []struct {
			Endpoint, Status string
		} `json:"deliveries"`
	}](t, out)
	if code != 0 || len(evs) != 1 || evs[0].ID != f.evID || !evs[0].Resolved || evs[0].Status != "captured" || len(evs[0].Deliveries) != 2 {
		t.Errorf("events list -o json = %d %+v", code, evs)
	}

	// inspect: the payload sent, the payment as it was; never a secret.
	code, out, _ = run(t, f.env, "events", "inspect", f.merchant, f.pay, f.evID, "-o", "json")
	var insp struct {
		ID      string         `json:"id"`
		Payload *webhook.Event `json:"payload"`
	}
	if err := json.Unmarshal([]byte(out), &insp); err != nil || code != 0 || insp.Payload == nil {
		t.Fatalf("events inspect -o json = %d %v\n%s", code, err, out)
	}
	var data struct {
		ID             string `json:"id"`
		Status         string `json:"status"`
		Amount         int64  `json:"amount"`
		Currency       string `json:"currency"`
		AmountCaptured int64  `json:"amount_captured"`
	}
	if err := json.Unmarshal(insp.Payload.Data, &data); err != nil {
		t.Fatal(err)
	}
	if insp.Payload.ID != f.evID || insp.Payload.Type != webhook.PaymentCaptured || insp.Payload.PaymentID != f.pay ||
		insp.Payload.Merchant != f.merchant || data.ID != f.pay || data.Status != "captured" || data.Amount != 1250 ||
		data.Currency != "EUR" || data.AmountCaptured != 1250 {
		t.Errorf("payload %+v, data %+v", insp.Payload, data)
	}
	code, out, _ = run(t, f.env, "events", "inspect", f.merchant, f.pay, f.evID)
	want(t, "events inspect", code, 0, out, "Event:    "+f.evID, "Payload:", `"type": "payment.captured"`)
	wantRow(t, "events inspect", out, "ep_gone", "dead", "1")
	if strings.Contains(out, secret) {
		t.Errorf("events inspect prints the secret:\n%s", out)
	}

	// redeliver: a dry run changes nothing.
	code, out, _ = run(t, f.env, "events", "redeliver", f.merchant, f.pay, f.evID)
	want(t, "redeliver dry run", code, 0, out, "-- dry run: would redeliver "+f.evID+" to 1 endpoint(s); add --apply")
	wantRow(t, "redeliver dry run", out, "ep_gone", "dead", "1", "would", "redeliver")
	wantRow(t, "redeliver dry run", out, "ep_fail", "pending", "1", "unchanged")
	if d := f.delivery(t, "ep_gone"); d.Status != payments.DeliveryDead {
		t.Fatalf("a dry run changed the delivery: %+v", d)
	}
	// Errors: unknown endpoint, event, payment (1); contradicting flags (2).
	code, _, errOut = run(t, f.env, "events", "redeliver", f.merchant, f.pay, f.evID, "--endpoint", "ep_nope", "--apply")
	want(t, "redeliver to an unknown endpoint", code, 1, errOut, "never sent to endpoint ep_nope", "ep_fail, ep_gone")
	code, _, errOut = run(t, f.env, "events", "redeliver", f.merchant, f.pay, f.evID, "--endpoint", "ep_fail", "--all")
	want(t, "--endpoint with --all", code, 2, errOut, "contradict")
	code, _, errOut = run(t, f.env, "events", "inspect", f.merchant, f.pay, "evt_nope")
	want(t, "unknown event", code, 1, errOut, "has no event evt_nope", f.evID)
	code, _, errOut = run(t, f.env, "events", "list", f.merchant, "pay_nope")
	want(t, "unknown payment", code, 1, errOut, "merchant acme has no payment pay_nope")
	code, _, errOut = run(t, f.env, "events", "list", f.merchant)
	want(t, "missing argument", code, 2, errOut, "needs the arguments MERCHANT PAYMENT_ID")
	code, _, errOut = run(t, map[string]string{}, "events", "pending")
	want(t, "memory store", code, 2, errOut, "PAYMENTS_STORE_URL is memory://")

	// --apply: the dead delivery starts over, now; the pending one is left.
	before := f.delivery(t, "ep_fail")
	code, out, _ = run(t, f.env, "events", "redeliver", f.merchant, f.pay, f.evID, "--apply", "-o", "json")
	var rep struct {
		DryRun      bool `json:"dry_run"`
		Redelivered int  `json:"redelivered"`
		Items       []struct{ Endpoint, Action string }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || rep.DryRun || rep.Redelivered != 1 {
		t.Fatalf("redeliver --apply = %d %+v %v\n%s", code, rep, err, out)
	}
	if d := f.delivery(t, "ep_gone"); d.Status != payments.DeliveryPending || d.Attempts != 0 || d.NextAttempt.IsZero() {
		t.Errorf("after redeliver: %+v, want pending from scratch", d)
	}
	if d := f.delivery(t, "ep_fail"); d.Attempts != before.Attempts || !d.NextAttempt.Equal(before.NextAttempt) {
		t.Errorf("redeliver changed the other delivery: %+v, was %+v", d, before)
	}
	code, out, _ = run(t, f.env, "events", "pending")
	want(t, "events pending after redeliver", code, 0, out, "-- 2 pending deliver(ies) of 1 payment(s)")
	wantRow(t, "events pending after redeliver", out, f.pay, "ep_gone", "0")

	// --endpoint redelivers one endpoint's delivery whatever its state.
	code, out, _ = run(t, f.env, "events", "redeliver", f.merchant, f.pay, f.evID, "--endpoint", "ep_fail", "--apply")
	want(t, "redeliver --endpoint", code, 0, out, "-- redelivered "+f.evID+" to 1 endpoint(s)")
	if d := f.delivery(t, "ep_fail"); d.Attempts != 0 || d.LastResult != "" {
		t.Errorf("after redeliver --endpoint: %+v", d)
	}
}

// TestEventsDead: the dead-lettered deliveries across payments, and their
// bulk redelivery once the endpoint is fixed.
func TestEventsDead(t *testing.T) {
	f := newEventsFixture(t)

	code, out, _ := run(t, f.env, "events", "dead")
	want(t, "events dead", code, 0, out, "-- 1 dead-lettered deliver(ies) in 1 payment(s)")
	wantRow(t, "events dead", out, f.pay, f.merchant, f.evID, "payment.captured", "ep_gone", "1", "HTTP", "410")
	if strings.Contains(out, "ep_fail") {
		t.Errorf("events dead lists the pending delivery:\n%s", out)
	}
	code, out, _ = run(t, f.env, "events", "dead", "--endpoint", "ep_fail", "-o", "json")
	if code != 0 || strings.TrimSpace(out) != "" {
		t.Errorf("events dead --endpoint ep_fail -o json = %d %q, want nothing", code, out)
	}

	// A dry run changes nothing; --apply starts the dead delivery over.
	code, out, _ = run(t, f.env, "events", "redeliver-dead", "--endpoint", "ep_gone")
	want(t, "redeliver-dead dry run", code, 0, out, "-- dry run: would redeliver 1 dead-lettered deliver(ies)")
	if d := f.delivery(t, "ep_gone"); d.Status != payments.DeliveryDead {
		t.Fatalf("a dry run changed the delivery: %+v", d)
	}
	code, out, _ = run(t, f.env, "events", "redeliver-dead", "--endpoint", "ep_gone", "--apply")
	want(t, "redeliver-dead --apply", code, 0, out, "-- redelivered 1 dead-lettered deliver(ies)")
	if d := f.delivery(t, "ep_gone"); d.Status != payments.DeliveryPending || d.Attempts != 0 {
		t.Errorf("after redeliver-dead: %+v, want pending from scratch", d)
	}
	code, out, _ = run(t, f.env, "events", "dead")
	want(t, "events dead after redeliver-dead", code, 0, out, "-- 0 dead-lettered deliver(ies) in 0 payment(s)")
}
