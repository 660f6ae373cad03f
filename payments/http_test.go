package payments_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/payrail/payrail/payments"
)

func TestCreatePaymentSync(t *testing.T) {
	e := newEnv(t, envOption{})
	r := e.create("k1", payBody("pm_card_visa"))
	wantStatus(t, r, http.StatusCreated)
	m := r.json(t)
	for _, f := range []string{"id", "status", "amount", "currency", "origin", "gateway", "amount_captured", "amount_refunded", "created_at", "updated_at", "payment_method", "capture_method", "metadata"} {
		if _, ok := m[f]; !ok {
			t.Errorf("field %s missing from %s", f, r.body)
		}
	}
	if m["status"] != "captured" || m["amount"] != float64(1999) || m["currency"] != "EUR" || m["amount_captured"] != float64(1999) || m["gateway"] != "mock" {
		t.Fatalf("unexpected payment %s", r.body)
	}
	id := m["id"].(string)
	if got := r.header.Get("Location"); got != "/payments/"+id {
		t.Fatalf("Location %q", got)
	}
	g := e.do("GET", "/payments/"+id, "", auth, bearer("sk_a"))
	wantStatus(t, g, http.StatusOK)
	if g.json(t)["status"] != "captured" {
		t.Fatalf("GET: %s", g.body)
	}
}

func TestIdempotencyHTTP(t *testing.T) {
	e := newEnv(t, envOption{})
	t.Run("missing key", func(t *testing.T) {
		r := e.do("POST", "/payments", payBody("pm_card_visa"), auth, bearer("sk_a"))
		wantProblem(t, r, 400, "idempotency_key_missing")
	})
	t.Run("key too long", func(t *testing.T) {
		wantProblem(t, e.create(strings.Repeat("k", 256), payBody("pm_card_visa")), 400, "idempotency_key_invalid")
		wantStatus(t, e.create(strings.Repeat("k", 255), payBody("pm_card_visa")), 201)
	})
	t.Run("replay byte for byte", func(t *testing.T) {
		first := e.create("replay", payBody("pm_card_visa"))
		wantStatus(t, first, 201)
		if first.header.Get("Idempotent-Replayed") != "" {
			t.Fatal("first response marked replayed")
		}
		second := e.create("replay", payBody("pm_card_visa"))
		wantStatus(t, second, 201)
		if !sameBytes(first.body, second.body) {
			t.Fatalf("replay differs:\n%s\n%s", first.body, second.body)
		}
		if second.header.Get("Idempotent-Replayed") != "true" || second.header.Get("Location") != first.header.Get("Location") {
			t.Fatalf("replay headers %v", second.header)
		}
		if n := e.mock.Calls("authorize"); n != 2 { // "replay" + the 255-char key above
			t.Fatalf("gateway authorize calls %d, want 2", n)
		}
	})
	t.Run("same key different payload", func(t *testing.T) {
		wantStatus(t, e.create("reuse", payBody("pm_card_visa")), 201)
		r := e.create("reuse", strings.Replace(payBody("pm_card_visa"), "1999", "2000", 1))
		wantProblem(t, r, 409, "idempotency_key_reused")
	})
	t.Run("canonical body: key order and whitespace do not matter", func(t *testing.T) {
		wantStatus(t, e.create("canon", `{"amount":500,"currency":"EUR","payment_method":"pm_card_visa"}`), 201)
		r := e.create("canon", "{ \"payment_method\": \"pm_card_visa\",\n \"currency\": \"eur\", \"amount\": 500 }")
		wantStatus(t, r, 201)
		if r.header.Get("Idempotent-Replayed") != "true" {
			t.Fatal("equivalent body not treated as the same request")
		}
	})
	t.Run("validation failures are not stored", func(t *testing.T) {
		bad := e.create("fixme", `{"amount":0,"currency":"EUR","payment_method":"pm_card_visa"}`)
		wantProblem(t, bad, 422, "validation_failed")
		good := e.create("fixme", payBody("pm_card_visa"))
		wantStatus(t, good, 201)
	})
	t.Run("outcomes after the gateway are stored", func(t *testing.T) {
		d := e.create("declined", payBody("pm_card_chargeDeclined"))
		wantProblem(t, d, 402, "payment_declined")
		again := e.create("declined", payBody("pm_card_chargeDeclined"))
		if again.status != 402 || !sameBytes(d.body, again.body) || again.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("decline not replayed: %d %s", again.status, again.body)
		}
	})
	t.Run("keys are scoped per merchant", func(t *testing.T) {
		a := e.create("shared", payBody("pm_card_visa"))
		b := e.do("POST", "/payments", payBody("pm_card_visa"), auth, bearer("sk_b"), "Idempotency-Key", "shared")
		wantStatus(t, a, 201)
		wantStatus(t, b, 201)
		if b.header.Get("Idempotent-Replayed") != "" || a.json(t)["id"] == b.json(t)["id"] {
			t.Fatal("merchant b replayed merchant a's key")
		}
	})
}

func TestIdempotencyInProgress(t *testing.T) {
	e := newEnv(t, envOption{gatewayURL: "mock://?latency=400ms"})
	var wg sync.WaitGroup
	var first resp
	wg.Go(func() { first = e.create("slow", payBody("pm_card_visa")) })
	// Wait until the first request holds the key.
	eventually(t, 2*time.Second, func() bool { return e.mock.Calls("authorize") == 1 })
	r := e.create("slow", payBody("pm_card_visa"))
	wantProblem(t, r, 409, "idempotency_key_in_use")
	if ra := r.header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Fatalf("Retry-After %q", ra)
	}
	wg.Wait()
	wantStatus(t, first, 201)
	again := e.create("slow", payBody("pm_card_visa"))
	if !sameBytes(first.body, again.body) {
		t.Fatal("replay after completion differs")
	}
}

// 200 goroutines send the same key and payload: exactly one gateway call,
// every response is the same payment or an in-use conflict.
func TestIdempotencyConcurrentSameKey(t *testing.T) {
	e := newEnv(t, envOption{gatewayURL: "mock://?latency=20ms"})
	const n = 200
	var wg sync.WaitGroup
	results := make([]resp, n)
	for i := range n {
		wg.Go(func() { results[i] = e.create("concurrent", payBody("pm_card_visa")) })
	}
	wg.Wait()
	var body []byte
	created, conflicts := 0, 0
	for _, r := range results {
		switch r.status {
		case 201:
			created++
			if body == nil {
				body = r.body
			} else if !sameBytes(body, r.body) {
				t.Fatalf("two different payments for one key:\n%s\n%s", body, r.body)
			}
		case 409:
			conflicts++
			if r.json(t)["code"] != "idempotency_key_in_use" {
				t.Fatalf("unexpected 409: %s", r.body)
			}
		default:
			t.Fatalf("unexpected status %d: %s", r.status, r.body)
		}
	}
	if created == 0 {
		t.Fatal("no request succeeded")
	}
	if calls := e.mock.Calls("authorize"); calls != 1 {
		t.Fatalf("gateway authorize called %d times, want exactly 1", calls)
	}
	t.Logf("%d created/replayed, %d in-use conflicts, 1 gateway call", created, conflicts)
}

func TestDeclineAndFailure(t *testing.T) {
	e := newEnv(t, envOption{})
	for _, tc := range []struct{ pm, decline string }{
		{"pm_card_chargeDeclined", "card_declined"},
		{"pm_card_insufficientFunds", "insufficient_funds"},
	} {
		r := e.create("d-"+tc.pm, payBody(tc.pm))
		m := wantProblem(t, r, 402, "payment_declined")
		if m["decline_code"] != tc.decline || m["payment_id"] == nil {
			t.Fatalf("decline problem %s", r.body)
		}
		g := e.do("GET", "/payments/"+m["payment_id"].(string), "", auth, bearer("sk_a"))
		if p := g.json(t); p["status"] != "declined" || p["decline_code"] != tc.decline {
			t.Fatalf("declined payment %s", g.body)
		}
	}
	r := e.create("proc-err", payBody("pm_card_processingError"))
	m := wantProblem(t, r, 503, "gateway_unavailable")
	if e.mock.Calls("authorize") != 2+3 {
		t.Fatalf("expected 3 attempts for the transient error, got %d total calls", e.mock.Calls("authorize"))
	}
	g := e.do("GET", "/payments/"+m["payment_id"].(string), "", auth, bearer("sk_a"))
	if p := g.json(t); p["status"] != "failed" || p["failure_code"] != "gateway_unavailable" {
		t.Fatalf("failed payment %s", g.body)
	}
}

func TestValidationAndMalformed(t *testing.T) {
	e := newEnv(t, envOption{})
	cases := []struct {
		name, body string
		status     int
		code       string
		field      string
	}{
		{"malformed json", `{"amount":`, 400, "malformed_request", ""},
		{"not an object", `[1,2]`, 400, "malformed_request", ""},
		{"unknown field", `{"amount":100,"currency":"EUR","payment_method":"pm_card_visa","cvv":"123"}`, 400, "malformed_request", ""},
		{"trailing data", `{"amount":100,"currency":"EUR","payment_method":"pm_card_visa"} {}`, 400, "malformed_request", ""},
		{"empty body", ``, 400, "malformed_request", ""},
		{"too large", `{"amount":100,"currency":"EUR","payment_method":"pm_card_visa","metadata":{"x":"` + strings.Repeat("a", 1<<20) + `"}}`, 400, "malformed_request", ""},
		{"amount zero", `{"amount":0,"currency":"EUR","payment_method":"pm_card_visa"}`, 422, "validation_failed", "amount"},
		{"amount negative", `{"amount":-5,"currency":"EUR","payment_method":"pm_card_visa"}`, 422, "validation_failed", "amount"},
		{"amount float", `{"amount":19.99,"currency":"EUR","payment_method":"pm_card_visa"}`, 422, "validation_failed", "amount"},
		{"amount string", `{"amount":"100","currency":"EUR","payment_method":"pm_card_visa"}`, 422, "validation_failed", "amount"},
		{"amount missing", `{"currency":"EUR","payment_method":"pm_card_visa"}`, 422, "validation_failed", "amount"},
		{"amount too large for JPY", `{"amount":1000000000000,"currency":"JPY","payment_method":"pm_card_visa"}`, 422, "validation_failed", "amount"},
		{"unknown currency", `{"amount":100,"currency":"ABC","payment_method":"pm_card_visa"}`, 422, "validation_failed", "currency"},
		{"metal is not payable", `{"amount":100,"currency":"XAU","payment_method":"pm_card_visa"}`, 422, "validation_failed", "currency"},
		{"bad capture method", `{"amount":100,"currency":"EUR","payment_method":"pm_card_visa","capture_method":"later"}`, 422, "validation_failed", "capture_method"},
		{"missing payment method", `{"amount":100,"currency":"EUR"}`, 422, "validation_failed", "payment_method"},
		{"raw card number", `{"amount":100,"currency":"EUR","payment_method":"4242424242424242"}`, 422, "validation_failed", "payment_method"},
		{"card number in metadata", `{"amount":100,"currency":"EUR","payment_method":"pm_card_visa","metadata":{"note":"4242 4242 4242 4242"}}`, 422, "validation_failed", "metadata.note"},
		{"metadata not strings", `{"amount":100,"currency":"EUR","payment_method":"pm_card_visa","metadata":{"n":1}}`, 422, "validation_failed", "metadata.n"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.create(fmt.Sprintf("v%d", i), tc.body)
			m := wantProblem(t, r, tc.status, tc.code)
			if tc.field != "" {
				errs, _ := m["errors"].([]any)
				found := false
				for _, fe := range errs {
					if fe.(map[string]any)["field"] == tc.field {
						found = true
					}
				}
				if !found {
					t.Fatalf("no error for field %s: %s", tc.field, r.body)
				}
			}
		})
	}
	if n := e.mock.Calls("authorize"); n != 0 {
		t.Fatalf("invalid requests reached the gateway %d times", n)
	}
	r := e.do("POST", "/payments", payBody("pm_card_visa"), auth, bearer("sk_a"), "Idempotency-Key", "ct", "Content-Type", "text/plain")
	wantProblem(t, r, 415, "unsupported_media_type")
}

func TestCaptureVoidRefund(t *testing.T) {
	e := newEnv(t, envOption{})
	manual := `{"amount":1000,"currency":"EUR","payment_method":"pm_card_visa","capture_method":"manual"}`
	newAuth := func(key string) string {
		r := e.create(key, manual)
		wantStatus(t, r, 201)
		m := r.json(t)
		if m["status"] != "authorized" || m["amount_captured"] != float64(0) {
			t.Fatalf("manual payment %s", r.body)
		}
		return m["id"].(string)
	}
	as := []string{auth, bearer("sk_a")}

	t.Run("partial capture then refunds", func(t *testing.T) {
		id := newAuth("cap1")
		wantProblem(t, e.do("POST", "/payments/"+id+"/capture", `{"amount":1001}`, as...), 422, "validation_failed")
		c := e.do("POST", "/payments/"+id+"/capture", `{"amount":800}`, as...)
		wantStatus(t, c, 200)
		if m := c.json(t); m["status"] != "captured" || m["amount_captured"] != float64(800) {
			t.Fatalf("capture %s", c.body)
		}
		wantProblem(t, e.do("POST", "/payments/"+id+"/capture", ``, as...), 409, "invalid_state_transition")
		wantProblem(t, e.do("POST", "/payments/"+id+"/void", ``, as...), 409, "invalid_state_transition")

		r1 := e.do("POST", "/payments/"+id+"/refunds", `{"amount":300}`, as...)
		wantStatus(t, r1, 201)
		if m := r1.json(t); m["amount"] != float64(300) || m["payment_id"] != id || m["status"] != "succeeded" {
			t.Fatalf("refund %s", r1.body)
		}
		wantProblem(t, e.do("POST", "/payments/"+id+"/refunds", `{"amount":501}`, as...), 422, "validation_failed")
		g := e.do("GET", "/payments/"+id, "", as...)
		if m := g.json(t); m["status"] != "captured" || m["amount_refunded"] != float64(300) {
			t.Fatalf("after partial refund %s", g.body)
		}
		r2 := e.do("POST", "/payments/"+id+"/refunds", `{"amount":500}`, as...)
		wantStatus(t, r2, 201)
		g = e.do("GET", "/payments/"+id, "", as...)
		if m := g.json(t); m["status"] != "refunded" || m["amount_refunded"] != float64(800) || len(m["refunds"].([]any)) != 2 {
			t.Fatalf("after full refund %s", g.body)
		}
		wantProblem(t, e.do("POST", "/payments/"+id+"/refunds", `{"amount":1}`, as...), 409, "invalid_state_transition")
	})
	t.Run("void", func(t *testing.T) {
		id := newAuth("void1")
		v := e.do("POST", "/payments/"+id+"/void", ``, as...)
		wantStatus(t, v, 200)
		if v.json(t)["status"] != "voided" {
			t.Fatalf("void %s", v.body)
		}
		wantProblem(t, e.do("POST", "/payments/"+id+"/capture", ``, as...), 409, "invalid_state_transition")
		wantProblem(t, e.do("POST", "/payments/"+id+"/refunds", `{"amount":1}`, as...), 409, "invalid_state_transition")
	})
	t.Run("idempotent refund", func(t *testing.T) {
		id := newAuth("irf")
		wantStatus(t, e.do("POST", "/payments/"+id+"/capture", ``, as...), 200)
		k := append([]string{"Idempotency-Key", "refund-1"}, as...)
		a := e.do("POST", "/payments/"+id+"/refunds", `{"amount":100}`, k...)
		b := e.do("POST", "/payments/"+id+"/refunds", `{"amount":100}`, k...)
		wantStatus(t, a, 201)
		if !sameBytes(a.body, b.body) || b.header.Get("Idempotent-Replayed") != "true" {
			t.Fatal("refund not replayed")
		}
		wantProblem(t, e.do("POST", "/payments/"+id+"/refunds", `{"amount":200}`, k...), 409, "idempotency_key_reused")
		g := e.do("GET", "/payments/"+id, "", as...)
		if m := g.json(t); m["amount_refunded"] != float64(100) {
			t.Fatalf("refund applied twice: %s", g.body)
		}
	})
	t.Run("unknown id", func(t *testing.T) {
		wantProblem(t, e.do("GET", "/payments/pay_nope", "", as...), 404, "not_found")
		wantProblem(t, e.do("POST", "/payments/pay_nope/capture", ``, as...), 404, "not_found")
	})
	t.Run("another merchant's payment is not found", func(t *testing.T) {
		id := newAuth("iso")
		other := []string{auth, bearer("sk_b")}
		wantProblem(t, e.do("GET", "/payments/"+id, "", other...), 404, "not_found")
		wantProblem(t, e.do("POST", "/payments/"+id+"/capture", ``, other...), 404, "not_found")
		wantProblem(t, e.do("POST", "/payments/"+id+"/void", ``, other...), 404, "not_found")
		g := e.do("GET", "/payments/"+id, "", as...)
		if g.json(t)["status"] != "authorized" {
			t.Fatalf("other merchant changed the payment: %s", g.body)
		}
	})
}

func TestAsyncHTTP(t *testing.T) {
	e := newEnv(t, envOption{})
	r := e.create("async1", payBody("pm_card_visa"), "Prefer", "respond-async")
	wantStatus(t, r, 202)
	m := r.json(t)
	if m["status"] != "pending" || r.header.Get("Preference-Applied") != "respond-async" || r.header.Get("Location") != "/payments/"+m["id"].(string) {
		t.Fatalf("async response %v %s", r.header, r.body)
	}
	eventually(t, 5*time.Second, func() bool {
		return e.do("GET", "/payments/"+m["id"].(string), "", auth, bearer("sk_a")).json(t)["status"] == "captured"
	})
	replay := e.create("async1", payBody("pm_card_visa"), "Prefer", "respond-async")
	if replay.status != 202 || !sameBytes(replay.body, r.body) {
		t.Fatalf("async replay %d %s", replay.status, replay.body)
	}
	d := e.create("async-decline", payBody("pm_card_insufficientFunds"), "Prefer", "respond-async")
	wantStatus(t, d, 202)
	id := d.json(t)["id"].(string)
	eventually(t, 5*time.Second, func() bool {
		return e.do("GET", "/payments/"+id, "", auth, bearer("sk_a")).json(t)["status"] == "declined"
	})
}

func TestAdminModeSwitch(t *testing.T) {
	e := newEnv(t, envOption{})
	wantProblem(t, e.do("PUT", "/admin/mode", `{"mode":"async"}`, auth, bearer("sk_a")), 403, "forbidden")
	wantProblem(t, e.do("PUT", "/admin/mode", `{"mode":"async"}`), 401, "unauthorized")
	wantProblem(t, e.do("PUT", "/admin/mode", `{"mode":"fast"}`, auth, bearer("sk_admin")), 422, "validation_failed")
	r := e.do("PUT", "/admin/mode", `{"mode":"async"}`, auth, bearer("sk_admin"))
	wantStatus(t, r, 200)
	if r.json(t)["mode"] != "async" || e.p.Mode() != payments.ModeAsync {
		t.Fatalf("mode %s", r.body)
	}
	c := e.create("after-switch", payBody("pm_card_visa"))
	wantStatus(t, c, 202)
	if c.header.Get("Preference-Applied") != "" {
		t.Fatal("Preference-Applied without a Prefer header")
	}
	g := e.do("GET", "/admin/mode", "", auth, bearer("sk_admin"))
	if g.json(t)["mode"] != "async" {
		t.Fatalf("GET mode %s", g.body)
	}
	wantStatus(t, e.do("PUT", "/admin/mode", `{"mode":"sync"}`, auth, bearer("sk_admin")), 200)
	wantStatus(t, e.create("after-switch-back", payBody("pm_card_visa")), 201)
}

func TestAuthAndRouting(t *testing.T) {
	e := newEnv(t, envOption{})
	r := e.do("POST", "/payments", payBody("pm_card_visa"), "Idempotency-Key", "x")
	wantProblem(t, r, 401, "unauthorized")
	if r.header.Get("WWW-Authenticate") == "" {
		t.Fatal("no WWW-Authenticate challenge")
	}
	wantProblem(t, e.do("GET", "/payments/x", "", auth, bearer("sk_wrong")), 401, "unauthorized")
	wantProblem(t, e.do("GET", "/payments/x", "", auth, "Basic c2tfYTo="), 401, "unauthorized")
	m := e.do("DELETE", "/payments/x", "", auth, bearer("sk_a"))
	wantProblem(t, m, 405, "method_not_allowed")
	if m.header.Get("Allow") != "GET" {
		t.Fatalf("Allow %q", m.header.Get("Allow"))
	}
	wantProblem(t, e.do("GET", "/nope", ""), 404, "not_found")
	wantStatus(t, e.do("GET", "/healthz", ""), 200)
	wantStatus(t, e.do("GET", "/readyz", ""), 200)
	e.h.SetDraining(true)
	wantProblem(t, e.do("GET", "/readyz", ""), 503, "service_unavailable")
}

func TestDevAuthenticator(t *testing.T) {
	e := newEnv(t, envOption{auth: payments.DevAuthenticator()})
	r := e.do("POST", "/payments", payBody("pm_card_visa"), "Idempotency-Key", "dev-1")
	wantStatus(t, r, 201)
	if r.json(t)["merchant"] != payments.DevMerchant {
		t.Fatalf("dev merchant %s", r.body)
	}
}
