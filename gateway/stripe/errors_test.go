package stripe_test

// Error mapping, timeouts and idempotency, against an httptest server that
// answers with Stripe's real error bodies (stripe-mock cannot produce
// errors, time out or honour Idempotency-Key).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/driver"
	"github.com/payrail/payrail/payments"
)

const clientSecret = "pi_3Q_secret_DoNotLogMe"

func authorizeReq() *driver.AuthorizeRequest {
	return &driver.AuthorizeRequest{IdempotencyKey: "pay_1:authorize", PaymentID: "pay_1", Amount: 1999, Currency: "EUR",
		PaymentMethod: "pm_card_visa", CaptureMethod: driver.CaptureAutomatic}
}

func cardError(code, decline, msg string) string {
	d := ""
	if decline != "" {
		d = fmt.Sprintf(`"decline_code": %q,`, decline)
	}
	return fmt.Sprintf(`{"error": {"charge": "ch_3Q", "code": %q, %s "doc_url": "https://stripe.com/docs/error-codes/%s",
	  "message": %q, "payment_intent": {"id": "pi_3Q", "object": "payment_intent", "amount": 1999, "currency": "eur",
	  "client_secret": %q, "status": "requires_payment_method"}, "request_log_url": "https://dashboard.stripe.com/test/logs/req_1",
	  "type": "card_error"}}`, code, d, code, msg, clientSecret)
}

func apiError(typ, code, msg string) string {
	c := ""
	if code != "" {
		c = fmt.Sprintf(`"code": %q,`, code)
	}
	return fmt.Sprintf(`{"error": {%s "message": %q, "type": %q}}`, c, msg, typ)
}

// The table of Stripe errors and the gateway error class each becomes.
func TestStripeErrorTable(t *testing.T) {
	cases := []struct {
		name         string
		status       int
		header       map[string]string
		body         string
		kind         gateway.Kind
		notProcessed bool
		code         string
		decline      string
		soft         bool
		retryAfter   time.Duration
	}{
		{"generic decline", 402, nil, cardError("card_declined", "generic_decline", "Your card was declined."), gateway.KindDeclined, true, "card_declined", "generic_decline", false, 0},
		{"insufficient funds", 402, nil, cardError("card_declined", "insufficient_funds", "Your card has insufficient funds."), gateway.KindDeclined, true, "card_declined", "insufficient_funds", false, 0},
		{"try again later", 402, nil, cardError("card_declined", "try_again_later", "Your card was declined."), gateway.KindDeclined, true, "card_declined", "try_again_later", true, 0},
		{"issuer not available", 402, nil, cardError("card_declined", "issuer_not_available", "Your card was declined."), gateway.KindDeclined, true, "card_declined", "issuer_not_available", true, 0},
		{"expired card", 402, nil, cardError("expired_card", "", "Your card has expired."), gateway.KindDeclined, true, "expired_card", "expired_card", false, 0},
		{"incorrect cvc", 402, nil, cardError("incorrect_cvc", "", "Your card's security code is incorrect."), gateway.KindDeclined, true, "incorrect_cvc", "incorrect_cvc", false, 0},
		{"processing error", 402, nil, cardError("processing_error", "", "An error occurred while processing your card. Try again in a little bit."), gateway.KindDeclined, true, "processing_error", "processing_error", true, 0},
		{"authentication required", 402, nil, cardError("authentication_required", "authentication_required", "Your card was declined. This transaction requires authentication."), gateway.KindDeclined, true, "authentication_required", "authentication_required", false, 0},
		{"rate limit", 429, nil, apiError("invalid_request_error", "rate_limit", "Too many requests hit the API too quickly."), gateway.KindTransient, true, "rate_limit", "", false, time.Second},
		{"rate limit with Retry-After", 429, map[string]string{"Retry-After": "3"}, apiError("invalid_request_error", "rate_limit", "Too many requests."), gateway.KindTransient, true, "rate_limit", "", false, 3 * time.Second},
		{"lock timeout", 429, nil, apiError("invalid_request_error", "lock_timeout", "This object cannot be accessed right now because another API request or Stripe process is currently accessing it."), gateway.KindTransient, true, "lock_timeout", "", false, time.Second},
		{"api error", 500, nil, apiError("api_error", "", "Sorry, something went wrong. We've already been notified of the problem."), gateway.KindTransient, false, "api_error", "", false, 0},
		{"502 from a proxy", 502, map[string]string{"Content-Type": "text/html"}, "<html><body>Bad Gateway</body></html>", gateway.KindTransient, false, "http_502", "", false, 0},
		{"503 empty", 503, nil, "", gateway.KindTransient, false, "http_503", "", false, 0},
		{"idempotency error", 400, nil, apiError("idempotency_error", "", "Keys for idempotent requests can only be used with the same parameters they were first used with."), gateway.KindInvalidRequest, false, "idempotency_error", "", false, 0},
		{"idempotency key in use", 409, nil, apiError("invalid_request_error", "idempotency_key_in_use", "There is currently another in-progress request using this Idempotent Key."), gateway.KindTransient, false, "idempotency_key_in_use", "", false, 0},
		{"invalid api key", 401, nil, apiError("invalid_request_error", "", "Invalid API Key provided: sk_test_*********************1234"), gateway.KindAuthentication, true, "authentication_error", "", false, 0},
		{"expired api key", 401, nil, apiError("invalid_request_error", "api_key_expired", "Expired API Key provided: sk_live_****1234"), gateway.KindAuthentication, true, "api_key_expired", "", false, 0},
		{"permission", 403, nil, apiError("invalid_request_error", "", "The provided key 'rk_test_***1234' does not have the required permissions for this endpoint."), gateway.KindAuthentication, true, "permission_error", "", false, 0},
		{"no such payment method", 400, nil, apiError("invalid_request_error", "resource_missing", "No such PaymentMethod: 'pm_nope'"), gateway.KindNotFound, true, "resource_missing", "", false, 0},
		{"bad parameter", 400, nil, apiError("invalid_request_error", "parameter_invalid_integer", "Invalid integer: 19.99"), gateway.KindInvalidRequest, true, "parameter_invalid_integer", "", false, 0},
		{"unexpected state", 400, nil, apiError("invalid_request_error", "payment_intent_unexpected_state", "This PaymentIntent's amount could not be updated because it has a status of canceled."), gateway.KindInvalidRequest, true, "payment_intent_unexpected_state", "", false, 0},
		{"amount too small", 400, nil, apiError("invalid_request_error", "amount_too_small", "Amount must be at least €0.50 eur"), gateway.KindInvalidRequest, true, "amount_too_small", "", false, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Request-Id", "req_1")
				w.Header().Set("Content-Type", "application/json")
				for k, v := range c.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(c.status)
				_, _ = io.WriteString(w, c.body)
			}))
			defer srv.Close()
			g, err := gateway.New("stripe", newDriver(t, srv.URL))
			if err != nil {
				t.Fatal(err)
			}
			_, err = g.Authorize(context.Background(), authorizeReq())
			var ge *gateway.Error
			if !errors.As(err, &ge) {
				t.Fatalf("error %v is not a *gateway.Error", err)
			}
			if ge.Kind != c.kind || ge.NotProcessed != c.notProcessed || ge.Code != c.code || ge.DeclineCode != c.decline ||
				ge.SoftDecline != c.soft || ge.RetryAfter != c.retryAfter {
				t.Fatalf("got kind=%v notProcessed=%v code=%q decline=%q soft=%v retryAfter=%v; want %v %v %q %q %v %v",
					ge.Kind, ge.NotProcessed, ge.Code, ge.DeclineCode, ge.SoftDecline, ge.RetryAfter,
					c.kind, c.notProcessed, c.code, c.decline, c.soft, c.retryAfter)
			}
			msg := err.Error()
			for _, secret := range []string{clientSecret, "sk_test_", "sk_live_", "rk_test_", "sk_test_payrail"} {
				if strings.Contains(msg, secret) {
					t.Fatalf("error message leaks %q: %s", secret, msg)
				}
			}
			if gateway.Retryable(err) != (c.kind == gateway.KindTransient) {
				t.Fatalf("Retryable = %v", gateway.Retryable(err))
			}
		})
	}
}

// Network failures: "not processed" only when the request was never
// completely sent.
func TestStripeNetworkFailures(t *testing.T) {
	ctx := context.Background()
	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		_, err = newDriver(t, "http://"+addr).Authorize(ctx, authorizeReq())
		wantClass(t, err, gateway.KindTransient, true, "connection_error")
	})
	t.Run("deadline before sending", func(t *testing.T) {
		var hits atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
		defer srv.Close()
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := newDriver(t, srv.URL).Authorize(cctx, authorizeReq())
		wantClass(t, err, gateway.KindTransient, true, "timeout")
		if hits.Load() != 0 {
			t.Fatal("the request reached the server")
		}
	})
	t.Run("timeout after sending", func(t *testing.T) {
		var hits atomic.Int64
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.ReadAll(r.Body)
			hits.Add(1)
			<-release
		}))
		defer func() { close(release); srv.Close() }()
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		g, _ := gateway.New("stripe", newDriver(t, srv.URL))
		_, err := g.Authorize(cctx, authorizeReq())
		wantClass(t, err, gateway.KindTransient, false, "timeout")
		if hits.Load() != 1 {
			t.Fatalf("server saw %d requests", hits.Load())
		}
	})
	t.Run("connection dropped after sending", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.ReadAll(r.Body)
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}))
		defer srv.Close()
		_, err := newDriver(t, srv.URL).Authorize(ctx, authorizeReq())
		wantClass(t, err, gateway.KindTransient, false, "connection_error")
	})
}

func wantClass(t *testing.T, err error, kind gateway.Kind, notProcessed bool, code string) {
	t.Helper()
	var ge *gateway.Error
	if !errors.As(err, &ge) || ge.Kind != kind || ge.NotProcessed != notProcessed || ge.Code != code {
		t.Fatalf("error %v: want kind %v, not processed %v, code %s", err, kind, notProcessed, code)
	}
}

// fakeStripe honours Idempotency-Key like Stripe: the first request with a
// key is executed and its response saved; later ones replay it. It answers
// the first execution only after delay (a slow Stripe), failing the first
// failFirst requests with a 500 api_error of unknown effect after executing.
type fakeStripe struct {
	mu        sync.Mutex
	saved     map[string]string
	created   atomic.Int64 // PaymentIntents created
	keys      []string     // Idempotency-Key of every request
	delay     time.Duration
	failFirst int
}

func (f *fakeStripe) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	key := r.Header.Get("Idempotency-Key")
	f.mu.Lock()
	f.keys = append(f.keys, key)
	body, replay := f.saved[key]
	if !replay {
		n := f.created.Add(1)
		body = fmt.Sprintf(`{"id":"pi_fake_%d","object":"payment_intent","amount":%s,"amount_received":%s,"currency":%q,
		  "capture_method":"automatic","status":"succeeded","metadata":{"payrail_payment_id":%q}}`,
			n, r.Form.Get("amount"), r.Form.Get("amount"), r.Form.Get("currency"), r.Form.Get("metadata[payrail_payment_id]"))
		f.saved[key] = body
	}
	fail := f.failFirst > 0
	if fail {
		f.failFirst--
	}
	delay := f.delay
	f.delay = 0
	f.mu.Unlock()
	time.Sleep(delay)
	w.Header().Set("Content-Type", "application/json")
	if fail {
		w.WriteHeader(500)
		_, _ = io.WriteString(w, apiError("api_error", "", "Sorry, something went wrong."))
		return
	}
	_, _ = io.WriteString(w, body)
}

// Through the processor: the first attempt times out after Stripe charged,
// the retry carries the same Idempotency-Key and gets the saved answer:
// one PaymentIntent, one charge.
func TestStripeIdempotentRetryAfterTimeout(t *testing.T) {
	for _, c := range []struct {
		name  string
		fake  *fakeStripe
		calls int
	}{
		{"timeout after sending", &fakeStripe{saved: map[string]string{}, delay: 300 * time.Millisecond}, 2},
		{"500 of unknown effect", &fakeStripe{saved: map[string]string{}, failFirst: 1}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(c.fake)
			defer srv.Close()
			g, err := gateway.New("stripe", newDriver(t, srv.URL))
			if err != nil {
				t.Fatal(err)
			}
			p, err := payments.New(payments.WithGateway(g), payments.WithGatewayTimeout(100*time.Millisecond),
				payments.WithRetryPolicy(payments.RetryPolicy{MaxAttempts: 3, InitialBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			pay, err := p.Authorize(context.Background(), payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "order-1",
				Amount: 1999, Currency: "EUR", PaymentMethod: "pm_card_visa"})
			if err != nil || pay.Status != payments.StatusCaptured || pay.GatewayReference != "pi_fake_1" || pay.AmountCaptured != 1999 {
				t.Fatalf("%v %+v", err, pay)
			}
			c.fake.mu.Lock()
			defer c.fake.mu.Unlock()
			if c.fake.created.Load() != 1 || len(c.fake.keys) != c.calls {
				t.Fatalf("created %d PaymentIntents over %d requests, want 1 over %d", c.fake.created.Load(), len(c.fake.keys), c.calls)
			}
			for _, k := range c.fake.keys {
				if k != pay.ID+":authorize" {
					t.Fatalf("Idempotency-Key %q, want %s:authorize", k, pay.ID)
				}
			}
		})
	}
}

func TestOpenURL(t *testing.T) {
	ctx := context.Background()
	t.Setenv("PAYRAIL_TEST_STRIPE_KEY", "sk_test_fromenv")
	m := newStripeMock(t, nil)
	g, err := gateway.Open(ctx, "stripe://?name=stripe-eu&api_key_env=PAYRAIL_TEST_STRIPE_KEY&base_url="+url.QueryEscape(m.url))
	if err != nil {
		t.Fatal(err)
	}
	if g.Name() != "stripe-eu" {
		t.Fatalf("name %q", g.Name())
	}
	if err := g.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if auth := m.requests()[0].header.Get("Authorization"); auth != "Bearer sk_test_fromenv" {
		t.Fatalf("Authorization %q", auth)
	}

	keyFile := t.TempDir() + "/stripe-key"
	if err := writeFile(keyFile, "sk_test_fromfile\n"); err != nil {
		t.Fatal(err)
	}
	g, err = gateway.Open(ctx, "stripe://?api_key_file="+url.QueryEscape(keyFile)+"&base_url="+url.QueryEscape(m.url))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	reqs := m.requests()
	if auth := reqs[len(reqs)-1].header.Get("Authorization"); auth != "Bearer sk_test_fromfile" {
		t.Fatalf("Authorization %q", auth)
	}

	t.Setenv("STRIPE_API_KEY", "")
	for _, c := range []struct{ url, want string }{
		{"stripe://?api_key=sk_test_inurl", "never put the API key in the URL"},
		{"stripe://", "STRIPE_API_KEY is not set"},
		{"stripe://?api_key_env=PAYRAIL_TEST_UNSET_VAR", "PAYRAIL_TEST_UNSET_VAR is not set"},
		{"stripe://?api_key_env=A&api_key_file=/x", "not both"},
		{"stripe://?api_key_file=/nonexistent/key", "reading the API key file"},
		{"stripe://?api_key_env=PAYRAIL_TEST_STRIPE_KEY&colour=blue", `unknown URL parameter "colour"`},
		{"stripe://?api_key_env=PAYRAIL_TEST_STRIPE_KEY&base_url=ftp://x", "want an http(s) URL"},
		{"stripe://?api_key_env=PAYRAIL_TEST_STRIPE_KEY&lookup_window=-1h", "lookup_window"},
		{"stripe://?api_key_env=PAYRAIL_TEST_STRIPE_KEY&max_network_retries=x", "max_network_retries"},
		{"stripe://api.stripe.com?api_key_env=PAYRAIL_TEST_STRIPE_KEY", "no host or path"},
	} {
		_, err := gateway.Open(ctx, c.url)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%s) = %v, want an error containing %q", c.url, err, c.want)
			continue
		}
		for _, secret := range []string{"sk_test_inurl", "sk_test_fromenv", "sk_test_fromfile"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("Open(%s) error leaks the key: %v", c.url, err)
			}
		}
	}
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
