package payments_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/payments"
)

// fuzzAPI is a handler over a processor with the mock gateway and memory
// stores, rebuilt every so often so that a long fuzzing run does not grow
// the stores without bound.
type fuzzAPI struct {
	mu    sync.Mutex
	h     http.Handler
	p     *payments.Processor
	uses  int
	paid  string // a captured payment
	authd string // an authorized payment
}

func (f *fuzzAPI) handler(t testing.TB) (http.Handler, string, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.h == nil || f.uses >= 5000 {
		if f.p != nil {
			_ = f.p.Close()
		}
		g, err := gateway.Open(context.Background(), "mock://")
		if err != nil {
			t.Fatal(err)
		}
		p, err := payments.New(payments.WithGateway(g))
		if err != nil {
			t.Fatal(err)
		}
		h, err := payments.NewHandler(p, payments.DevAuthenticator())
		if err != nil {
			t.Fatal(err)
		}
		f.p, f.h, f.uses = p, h, 0
		ctx := context.Background()
		paid, err := p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "dev", IdempotencyKey: "seed-paid", Amount: 1000, Currency: "EUR", PaymentMethod: "pm_card_visa"})
		if err != nil {
			t.Fatal(err)
		}
		authd, err := p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "dev", IdempotencyKey: "seed-auth", Amount: 1000, Currency: "EUR",
			PaymentMethod: "pm_card_visa", CaptureMethod: payments.CaptureManual})
		if err != nil {
			t.Fatal(err)
		}
		f.paid, f.authd = paid.ID, authd.ID
	}
	f.uses++
	return f.h, f.paid, f.authd
}

// checkAnswer asserts what every answer of the API must be: never a 5xx
// (the mock gateway and memory stores do not fail), a problem document for
// every 4xx, and JSON for every success.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder, body []byte, optional bool) map[string]any {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("5xx for %q: %d %s", body, rec.Code, rec.Body)
	}
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("answer to %q is not a JSON object: %s", body, rec.Body)
	}
	if rec.Code >= 400 {
		if rec.Header().Get("Content-Type") != "application/problem+json" || m["code"] == nil || m["status"] != float64(rec.Code) {
			t.Fatalf("refusal of %q is not a problem document: %d %s", body, rec.Code, rec.Body)
		}
		return m
	}
	// Accepted: the body was one valid JSON object, or absent where it is
	// optional.
	if optional && strings.TrimLeft(string(body), " \t\r\n") == "" {
		return m
	}
	if !utf8.Valid(body) || !strings.HasPrefix(strings.TrimLeft(string(body), " \t\r\n"), "{") {
		t.Fatalf("accepted a body that is not one valid JSON object: %q", body)
	}
	return m
}

func keyFor(body []byte) string {
	sum := sha256.Sum256(body)
	return "fz-" + hex.EncodeToString(sum[:12])
}

var fuzzCreate fuzzAPI

// FuzzCreatePayment sends arbitrary bodies to POST /payments through the
// real handler. An accepted body must have been a strict JSON object whose
// amount, currency and payment method the created payment carries.
func FuzzCreatePayment(f *testing.F) {
	for _, hr := range hostileRequests("pay_x", "pay_y") {
		if hr.path == "/payments" && hr.method == "POST" {
			f.Add([]byte(hr.body))
		}
	}
	f.Add([]byte(payBody("pm_card_visa")))
	f.Add([]byte(`{"amount":1,"currency":"jpy","payment_method":"pm_card_visa","capture_method":"manual","origin":"pos","metadata":{"a":"b\n"}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		h, _, _ := fuzzCreate.handler(t)
		req := httptest.NewRequest("POST", "/payments", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", keyFor(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		m := checkAnswer(t, rec, body, false)
		if rec.Code >= 400 {
			return
		}
		var in struct {
			Amount        int64  `json:"amount"`
			Currency      string `json:"currency"`
			PaymentMethod string `json:"payment_method"`
		}
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("accepted %q, which encoding/json cannot read: %v", body, err)
		}
		if m["amount"] != float64(in.Amount) || m["payment_method"] != in.PaymentMethod ||
			!strings.EqualFold(m["currency"].(string), strings.TrimSpace(in.Currency)) {
			t.Fatalf("created %s from %q", rec.Body, body)
		}
	})
}

var fuzzFollowUp fuzzAPI

// fuzzFollowUpEndpoint fuzzes the body of one follow-up endpoint.
func fuzzFollowUpEndpoint(f *testing.F, suffix string, onPaid bool) {
	for _, b := range []string{``, `{}`, `{"amount":1}`, `{"amount":500}`, `null`, `[]`, `{"amount":1,"amount":2}`, `{"Amount":1}`,
		`{"amount":1.5}`, `{"amount":"1"}`, `{"amount":-1}`, `{"amount":1}{}`, "{\"amount\":1,\"\xff\":1}", ` {"amount": 1 } `} {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		h, paid, authd := fuzzFollowUp.handler(t)
		id := authd
		if onPaid {
			id = paid
		}
		req := httptest.NewRequest("POST", "/payments/"+id+suffix, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", keyFor(append([]byte(suffix), body...)))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkAnswer(t, rec, body, true)
	})
}

// FuzzCapture, FuzzVoid and FuzzRefund send arbitrary bodies to the
// follow-up endpoints of real payments through the real handler.
func FuzzCapture(f *testing.F) { fuzzFollowUpEndpoint(f, "/capture", false) }

// FuzzVoid: see FuzzCapture.
func FuzzVoid(f *testing.F) { fuzzFollowUpEndpoint(f, "/void", false) }

// FuzzRefund: see FuzzCapture.
func FuzzRefund(f *testing.F) { fuzzFollowUpEndpoint(f, "/refunds", true) }
