package stripe_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v82/webhook"
	mockspec "github.com/stripe/stripe-mock/spec"

	"github.com/payrail/payrail/gateway"
	pstripe "github.com/payrail/payrail/gateway/stripe"
	"github.com/payrail/payrail/payments"
)

const (
	whNew = "whsec_new_0123456789"
	whOld = "whsec_old_0123456789"
)

// stripeEvent renders a Stripe event of type typ around object.
func stripeEvent(t *testing.T, id, typ string, object map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"id": id, "object": "event", "type": typ, "api_version": "2024-06-20", "created": time.Now().Unix(),
		"livemode": false, "pending_webhooks": 1, "data": map[string]any{"object": object},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signed signs body as Stripe does (stripe-go's test helper), with secret
// at time at.
func signed(body []byte, secret string, at time.Time) http.Header {
	p := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secret, Timestamp: at})
	h := http.Header{}
	h.Set("Stripe-Signature", p.Header)
	return h
}

func paymentIntent(id, paymentID, status string, amount, received int64) map[string]any {
	return map[string]any{"id": id, "object": "payment_intent", "status": status, "amount": amount,
		"amount_received": received, "currency": "usd", "capture_method": "automatic",
		"metadata": map[string]string{pstripe.MetaPaymentID: paymentID, pstripe.MetaMerchant: "m1", pstripe.MetaKey: paymentID + ":authorize"}}
}

// TestParseWebhookVerifies: only a body signed with one of the endpoint's
// secrets (two while rolling), within the tolerance, is accepted.
func TestParseWebhookVerifies(t *testing.T) {
	ctx := context.Background()
	g := newDriver(t, "http://127.0.0.1:1", pstripe.WithWebhookSecret(whNew, whOld))
	body := stripeEvent(t, "evt_1", "payment_intent.succeeded", paymentIntent("pi_1", "pay_1", "succeeded", 1000, 1000))
	for _, secret := range []string{whNew, whOld} {
		ev, err := g.ParseWebhook(ctx, signed(body, secret, time.Now()), body)
		if err != nil {
			t.Fatalf("signed with a configured secret: %v", err)
		}
		if ev.ID != "evt_1" || ev.PaymentID != "pay_1" || ev.Merchant != "m1" || ev.Transaction == nil ||
			ev.Transaction.Status != gateway.StatusCaptured || ev.Transaction.AmountCaptured != 1000 || ev.Transaction.Reference != "pi_1" {
			t.Errorf("event = %+v (tx %+v)", ev, ev.Transaction)
		}
	}
	tampered := []byte(strings.Replace(string(body), `"amount":1000`, `"amount":1`, 1))
	for name, c := range map[string]struct {
		h    http.Header
		body []byte
	}{
		"unsigned":     {http.Header{}, body},
		"wrong secret": {signed(body, "whsec_other", time.Now()), body},
		"too old":      {signed(body, whNew, time.Now().Add(-10*time.Minute)), body},
		"tampered":     {signed(body, whNew, time.Now()), tampered},
	} {
		if _, err := g.ParseWebhook(ctx, c.h, c.body); !errors.Is(err, gateway.ErrWebhookSignature) {
			t.Errorf("%s: err = %v, want ErrWebhookSignature", name, err)
		} else if strings.Contains(err.Error(), "whsec_") {
			t.Errorf("%s: the error shows a secret: %v", name, err)
		}
	}
	if _, err := newDriver(t, "http://127.0.0.1:1").ParseWebhook(ctx, signed(body, whNew, time.Now()), body); !errors.Is(err, gateway.ErrWebhookUnsupported) {
		t.Errorf("without a secret: %v, want ErrWebhookUnsupported", err)
	}
}

// TestWebhookSecretNeverInURL: the signing secret comes from the
// environment or a file, never the URL.
func TestWebhookSecretNeverInURL(t *testing.T) {
	t.Setenv("STRIPE_API_KEY", "sk_test_payrail")
	t.Setenv("PAYRAIL_TEST_WHSEC", whNew+", "+whOld)
	ctx := context.Background()
	if _, err := gateway.Open(ctx, "stripe://?webhook_secret="+whNew); err == nil || strings.Contains(err.Error(), whNew) {
		t.Errorf("a secret in the URL: %v", err)
	}
	g, err := gateway.Open(ctx, "stripe://?webhook_secret_env=PAYRAIL_TEST_WHSEC&webhook_tolerance=1m")
	if err != nil {
		t.Fatal(err)
	}
	body := stripeEvent(t, "evt_2", "payment_intent.canceled", paymentIntent("pi_2", "pay_2", "canceled", 10, 0))
	ev, err := g.ParseWebhook(ctx, signed(body, whOld, time.Now()), body)
	if err != nil || ev.Transaction == nil || ev.Transaction.Status != gateway.StatusVoided {
		t.Fatalf("ParseWebhook = %+v, %v", ev, err)
	}
	if _, err := g.ParseWebhook(ctx, signed(body, whOld, time.Now().Add(-2*time.Minute)), body); !errors.Is(err, gateway.ErrWebhookSignature) {
		t.Errorf("older than webhook_tolerance: %v", err)
	}
}

// TestWebhookSettlesAndRecords runs Stripe webhooks through the processor's
// handler: a processing payment (its outcome unknown to payrail) is settled
// by payment_intent.succeeded; duplicates and stale events change nothing;
// a refund made in Stripe's dashboard (charge.refunded, whose PaymentIntent
// the driver reads from stripe-mock) is recorded once; unsigned requests
// are refused with a problem and change nothing; a payment of another
// gateway is not touched.
func TestWebhookSettlesAndRecords(t *testing.T) {
	ctx := context.Background()
	mock := newStripeMock(t, func(res map[mockspec.ResourceID]any) {
		setFields(res, "payment_intent", map[string]any{"id": "pi_77", "status": "succeeded", "amount": 1000,
			"amount_received": 1000, "currency": "usd", "last_payment_error": nil,
			"metadata": map[string]any{pstripe.MetaPaymentID: "pay_77", pstripe.MetaMerchant: "m1"}})
		setFields(res, "charge", map[string]any{"amount": 1000, "amount_captured": 1000, "amount_refunded": 300, "refunded": false, "currency": "usd"})
	})
	drv := newDriver(t, mock.url, pstripe.WithWebhookSecret(whNew))
	g, err := gateway.New("stripe", drv)
	if err != nil {
		t.Fatal(err)
	}
	store := payments.NewMemoryStore()
	now := time.Now().UTC()
	for _, p := range []*payments.Payment{
		{ID: "pay_77", Merchant: "m1", Amount: 1000, Currency: "USD", PaymentMethod: "pm_card_visa", Origin: "web",
			CaptureMethod: payments.CaptureAutomatic, Status: payments.StatusProcessing, Gateway: "stripe", CreatedAt: now, UpdatedAt: now},
		{ID: "pay_other", Merchant: "m1", Amount: 500, Currency: "USD", PaymentMethod: "pm_card_visa", Origin: "web",
			CaptureMethod: payments.CaptureAutomatic, Status: payments.StatusProcessing, Gateway: "adyen", CreatedAt: now, UpdatedAt: now},
	} {
		if err := store.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	p, err := payments.New(payments.WithStore(store), payments.WithGateway(g))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/{gateway}", payments.NewGatewayWebhookHandler(p))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	post := func(h http.Header, body []byte) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/webhooks/stripe", strings.NewReader(string(body)))
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("response %d %s: %v", resp.StatusCode, b, err)
		}
		return resp.StatusCode, m
	}
	get := func(id string) *payments.Payment {
		t.Helper()
		pay, err := store.Get(ctx, "m1", id)
		if err != nil {
			t.Fatal(err)
		}
		return pay
	}
	expect := func(step string, h http.Header, body []byte, status int, result string) {
		t.Helper()
		code, m := post(h, body)
		if code != status || (result != "" && m["result"] != result) || (result == "" && m["code"] == nil) {
			t.Errorf("%s: %d %v, want %d %q", step, code, m, status, result)
		}
	}

	succeeded := stripeEvent(t, "evt_s", "payment_intent.succeeded", paymentIntent("pi_77", "pay_77", "succeeded", 1000, 1000))
	expect("unsigned", http.Header{}, succeeded, http.StatusBadRequest, "")
	if got := get("pay_77"); got.Status != payments.StatusProcessing {
		t.Fatalf("an unsigned webhook changed the payment: %s", got.Status)
	}
	expect("succeeded", signed(succeeded, whNew, time.Now()), succeeded, http.StatusOK, string(payments.GatewayEventSettled))
	if got := get("pay_77"); got.Status != payments.StatusCaptured || got.AmountCaptured != 1000 || got.GatewayReference != "pi_77" {
		t.Fatalf("after payment_intent.succeeded: %s captured %d ref %s", got.Status, got.AmountCaptured, got.GatewayReference)
	}
	v := get("pay_77").Version
	expect("duplicate", signed(succeeded, whNew, time.Now()), succeeded, http.StatusOK, string(payments.GatewayEventUnchanged))
	stale := stripeEvent(t, "evt_a", "payment_intent.amount_capturable_updated", paymentIntent("pi_77", "pay_77", "requires_capture", 1000, 0))
	expect("stale authorization", signed(stale, whNew, time.Now()), stale, http.StatusOK, string(payments.GatewayEventUnchanged))
	if got := get("pay_77"); got.Version != v || got.Status != payments.StatusCaptured {
		t.Errorf("duplicate or stale events changed the payment: version %d → %d, %s", v, got.Version, got.Status)
	}

	refunded := stripeEvent(t, "evt_r", "charge.refunded", map[string]any{"id": "ch_1", "object": "charge", "amount": 1000,
		"amount_captured": 1000, "amount_refunded": 300, "refunded": false, "currency": "usd", "payment_intent": "pi_77"})
	expect("dashboard refund", signed(refunded, whNew, time.Now()), refunded, http.StatusOK, string(payments.GatewayEventUpdated))
	expect("dashboard refund again", signed(refunded, whNew, time.Now()), refunded, http.StatusOK, string(payments.GatewayEventUnchanged))
	got := get("pay_77")
	if got.AmountRefunded != 300 || len(got.Refunds) != 1 || got.Refunds[0].Amount != 300 || got.Status != payments.StatusCaptured {
		t.Errorf("after the dashboard refund: %s refunded %d refunds %+v", got.Status, got.AmountRefunded, got.Refunds)
	}

	other := stripeEvent(t, "evt_o", "payment_intent.succeeded", paymentIntent("pi_o", "pay_other", "succeeded", 500, 500))
	expect("another gateway's payment", signed(other, whNew, time.Now()), other, http.StatusOK, string(payments.GatewayEventIgnored))
	if got := get("pay_other"); got.Status != payments.StatusProcessing {
		t.Errorf("a stripe event settled a payment of another gateway: %s", got.Status)
	}
	unknown := httptest.NewRequest(http.MethodPost, "/webhooks/nope", strings.NewReader("{}"))
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, unknown)
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), string(payments.CodeWebhookNotConfigured)) {
		t.Errorf("unknown gateway: %d %s", rec.Code, rec.Body)
	}
}
