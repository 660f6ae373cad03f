package stripe_test

// These tests run the driver against stripe-mock (github.com/stripe/stripe-mock),
// Stripe's own API simulator, in-process: it validates every request
// against Stripe's OpenAPI specification and answers with fixtures. It is
// stateless (no idempotency, fixed statuses), so the tests set the fixture
// a scenario needs and check request shape and wiring; error mapping,
// timeouts and idempotency are tested in errors_test.go.

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	stripego "github.com/stripe/stripe-go/v82"
	"github.com/stripe/stripe-mock/embedded"
	"github.com/stripe/stripe-mock/server"
	mockspec "github.com/stripe/stripe-mock/spec"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/driver"
	pstripe "github.com/payrail/payrail/gateway/stripe"
)

var (
	specOnce sync.Once
	mockSpec *mockspec.Spec
	specErr  error
)

// recorded is a request stripe-mock received and its answer.
type recorded struct {
	method, path string
	form         url.Values
	header       http.Header
	status       int
}

type stripeMock struct {
	url  string
	mu   sync.Mutex
	reqs []recorded
}

func (m *stripeMock) requests() []recorded {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]recorded(nil), m.reqs...)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) { s.status = code; s.ResponseWriter.WriteHeader(code) }

// newStripeMock serves stripe-mock with its embedded spec and fixtures;
// fixture edits the fixture resources (e.g. a PaymentIntent's status)
// before the server starts. Its strict version check stays off: its spec
// is newer than stripe-go v82's API version.
func newStripeMock(t *testing.T, fixture func(res map[mockspec.ResourceID]any)) *stripeMock {
	t.Helper()
	specOnce.Do(func() { mockSpec, specErr = server.LoadSpec(embedded.OpenAPISpec, "") })
	if specErr != nil {
		t.Fatal(specErr)
	}
	fx, err := server.LoadFixtures(embedded.OpenAPIFixtures, "")
	if err != nil {
		t.Fatal(err)
	}
	if fixture != nil {
		fixture(fx.Resources)
	}
	stub, err := server.NewStubServer(fx, mockSpec, false, false)
	if err != nil {
		t.Fatal(err)
	}
	m := &stripeMock{}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		form, _ := url.ParseQuery(string(body))
		if r.Method == http.MethodGet {
			form = r.URL.Query()
		}
		sr := &statusRecorder{ResponseWriter: w, status: 200}
		stub.HandleRequest(sr, r)
		m.mu.Lock()
		m.reqs = append(m.reqs, recorded{r.Method, r.URL.Path, form, r.Header.Clone(), sr.status})
		m.mu.Unlock()
	})
	srv := httptest.NewServer(&server.DoubleSlashFixHandler{Mux: mux})
	t.Cleanup(srv.Close)
	m.url = srv.URL
	return m
}

func setFields(res map[mockspec.ResourceID]any, resource string, kv map[string]any) {
	obj := res[mockspec.ResourceID(resource)].(map[string]any)
	for k, v := range kv {
		obj[k] = v
	}
}

func newDriver(t *testing.T, base string, opts ...pstripe.Option) *pstripe.Gateway {
	t.Helper()
	g, err := pstripe.New("sk_test_payrail", append([]pstripe.Option{pstripe.WithBaseURL(base)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func wantForm(t *testing.T, r recorded, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := r.form.Get(k); got != v {
			t.Errorf("%s %s: %s = %q, want %q (form %v)", r.method, r.path, k, got, v, r.form)
		}
	}
}

func only(t *testing.T, m *stripeMock) recorded {
	t.Helper()
	reqs := m.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1: %+v", len(reqs), reqs)
	}
	if reqs[0].status != http.StatusOK {
		t.Fatalf("stripe-mock refused the request (%d): it does not match Stripe's API", reqs[0].status)
	}
	return reqs[0]
}

func TestStripeMockAuthorize(t *testing.T) {
	for _, c := range []struct {
		capture       driver.CaptureMethod
		status        string
		want          driver.Status
		wantCaptured  int64
		captureMethod string
	}{
		{driver.CaptureManual, "requires_capture", driver.StatusAuthorized, 0, "manual"},
		{driver.CaptureAutomatic, "succeeded", driver.StatusCaptured, 1999, "automatic"},
	} {
		t.Run(string(c.capture), func(t *testing.T) {
			m := newStripeMock(t, func(res map[mockspec.ResourceID]any) {
				setFields(res, "payment_intent", map[string]any{"status": c.status, "amount_received": c.wantCaptured, "last_payment_error": nil})
			})
			g := newDriver(t, m.url)
			tx, err := g.Authorize(context.Background(), &driver.AuthorizeRequest{
				IdempotencyKey: "pay_1:authorize", PaymentID: "pay_1", Merchant: "acme", Origin: "pos",
				Amount: 1999, Currency: "EUR", PaymentMethod: "pm_card_visa", CaptureMethod: c.capture,
				Metadata: map[string]string{"order": "1001"},
			})
			if err != nil {
				t.Fatal(err)
			}
			if tx.Status != c.want || tx.Reference == "" || tx.Amount != 1999 || tx.Currency != "EUR" || tx.AmountCaptured != c.wantCaptured {
				t.Fatalf("transaction %+v", tx)
			}
			r := only(t, m)
			if r.method != "POST" || r.path != "/v1/payment_intents" {
				t.Fatalf("%s %s", r.method, r.path)
			}
			if r.header.Get("Idempotency-Key") != "pay_1:authorize" || r.header.Get("Authorization") != "Bearer sk_test_payrail" {
				t.Fatalf("headers %v", r.header)
			}
			wantForm(t, r, map[string]string{
				"amount": "1999", "currency": "eur", "payment_method": "pm_card_visa", "confirm": "true",
				"capture_method": c.captureMethod, "error_on_requires_action": "true",
				"automatic_payment_methods[enabled]": "true", "automatic_payment_methods[allow_redirects]": "never",
				"metadata[order]": "1001", "metadata[payrail_payment_id]": "pay_1", "metadata[payrail_key]": "pay_1:authorize",
				"metadata[payrail_merchant]": "acme", "metadata[payrail_origin]": "pos",
			})
		})
	}
}

func TestStripeMockCaptureVoidRefund(t *testing.T) {
	ctx := context.Background()
	t.Run("partial capture", func(t *testing.T) {
		m := newStripeMock(t, func(res map[mockspec.ResourceID]any) {
			setFields(res, "payment_intent", map[string]any{"id": "pi_42", "status": "succeeded", "amount": 1999, "amount_received": 1200, "currency": "eur"})
		})
		tx, err := newDriver(t, m.url).Capture(ctx, &driver.CaptureRequest{IdempotencyKey: "pay_1:capture", PaymentID: "pay_1",
			Reference: "pi_42", Amount: 1200, Currency: "EUR"})
		if err != nil || tx.Status != driver.StatusCaptured || tx.AmountCaptured != 1200 || tx.Amount != 1999 {
			t.Fatalf("%+v %v", tx, err)
		}
		r := only(t, m)
		if r.path != "/v1/payment_intents/pi_42/capture" || r.header.Get("Idempotency-Key") != "pay_1:capture" {
			t.Fatalf("%+v", r)
		}
		wantForm(t, r, map[string]string{"amount_to_capture": "1200", "metadata[payrail_capture_key]": "pay_1:capture"})
	})
	t.Run("void", func(t *testing.T) {
		m := newStripeMock(t, func(res map[mockspec.ResourceID]any) {
			setFields(res, "payment_intent", map[string]any{"id": "pi_42", "status": "canceled"})
		})
		tx, err := newDriver(t, m.url).Void(ctx, &driver.VoidRequest{IdempotencyKey: "pay_1:void", Reference: "pi_42"})
		if err != nil || tx.Status != driver.StatusVoided {
			t.Fatalf("%+v %v", tx, err)
		}
		r := only(t, m)
		if r.path != "/v1/payment_intents/pi_42/cancel" || r.header.Get("Idempotency-Key") != "pay_1:void" {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("partial refund", func(t *testing.T) {
		m := newStripeMock(t, func(res map[mockspec.ResourceID]any) {
			setFields(res, "refund", map[string]any{"status": "succeeded", "currency": "eur"})
			setFields(res, "charge", map[string]any{"amount": 1999, "amount_captured": 1999, "amount_refunded": 500, "refunded": false})
		})
		tx, err := newDriver(t, m.url).Refund(ctx, &driver.RefundRequest{IdempotencyKey: "re_payrail_1", PaymentID: "pay_1",
			RefundID: "re_payrail_1", Reference: "pi_42", Amount: 500, Currency: "EUR"})
		if err != nil || !strings.HasPrefix(tx.RefundReference, "re_") || tx.Status != driver.StatusCaptured || tx.AmountRefunded != 500 || tx.AmountCaptured != 1999 {
			t.Fatalf("%+v %v", tx, err)
		}
		r := only(t, m)
		if r.path != "/v1/refunds" || r.header.Get("Idempotency-Key") != "re_payrail_1" {
			t.Fatalf("%+v", r)
		}
		wantForm(t, r, map[string]string{"payment_intent": "pi_42", "amount": "500", "expand[0]": "charge",
			"metadata[payrail_refund_id]": "re_payrail_1", "metadata[payrail_payment_id]": "pay_1", "metadata[payrail_key]": "re_payrail_1"})
	})
	t.Run("ISK has two decimals at Stripe", func(t *testing.T) {
		m := newStripeMock(t, func(res map[mockspec.ResourceID]any) {
			setFields(res, "payment_intent", map[string]any{"status": "requires_capture", "last_payment_error": nil})
		})
		tx, err := newDriver(t, m.url).Authorize(ctx, &driver.AuthorizeRequest{IdempotencyKey: "pay_2:authorize", PaymentID: "pay_2",
			Amount: 500, Currency: "ISK", PaymentMethod: "pm_card_visa", CaptureMethod: driver.CaptureManual})
		if err != nil || tx.Amount != 500 || tx.Currency != "ISK" {
			t.Fatalf("%+v %v", tx, err)
		}
		wantForm(t, only(t, m), map[string]string{"amount": "50000", "currency": "isk"})
	})
}

// Lookup finds the payment's PaymentIntent through Search and reads its
// current state; with no match, a complete listing of the lookup window
// proves absence.
func TestStripeMockLookup(t *testing.T) {
	ctx := context.Background()
	t.Run("found by search", func(t *testing.T) {
		m := newStripeMock(t, func(res map[mockspec.ResourceID]any) {
			setFields(res, "payment_intent", map[string]any{"id": "pi_9", "status": "requires_capture", "last_payment_error": nil,
				"metadata": map[string]any{"payrail_payment_id": "pay_9", "payrail_key": "pay_9:authorize"}})
		})
		tx, err := newDriver(t, m.url).Lookup(ctx, "pay_9:authorize")
		if err != nil || tx.Reference != "pi_9" || tx.Status != driver.StatusAuthorized {
			t.Fatalf("%+v %v", tx, err)
		}
		reqs := m.requests()
		if len(reqs) != 2 || reqs[0].path != "/v1/payment_intents/search" || reqs[1].path != "/v1/payment_intents/pi_9" {
			t.Fatalf("requests %+v", reqs)
		}
		if q := reqs[0].form.Get("query"); q != "metadata['payrail_payment_id']:'pay_9'" {
			t.Fatalf("search query %q", q)
		}
		for _, r := range reqs {
			if r.status != 200 {
				t.Fatalf("stripe-mock refused %s %s (%d)", r.method, r.path, r.status)
			}
		}
		// A capture lookup on a PaymentIntent still awaiting capture: not processed.
		if _, err := newDriver(t, m.url).Lookup(ctx, "pay_9:capture"); !errors.Is(err, gateway.ErrNotFound) {
			t.Fatalf("capture lookup: %v", err)
		}
	})
	t.Run("declined", func(t *testing.T) {
		m := newStripeMock(t, func(res map[mockspec.ResourceID]any) {
			setFields(res, "payment_intent", map[string]any{"status": "requires_payment_method",
				"last_payment_error": map[string]any{"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds"},
				"metadata":           map[string]any{"payrail_payment_id": "pay_8"}})
		})
		tx, err := newDriver(t, m.url).Lookup(ctx, "pay_8:authorize")
		if err != nil || tx.Status != driver.StatusDeclined || tx.DeclineCode != "insufficient_funds" {
			t.Fatalf("%+v %v", tx, err)
		}
	})
	t.Run("not found", func(t *testing.T) {
		m := newStripeMock(t, nil)
		_, err := newDriver(t, m.url).Lookup(ctx, "pay_missing:authorize")
		if !errors.Is(err, gateway.ErrNotFound) {
			t.Fatalf("%v", err)
		}
		reqs := m.requests()
		if len(reqs) != 2 || reqs[1].path != "/v1/payment_intents" || reqs[1].form.Get("created[gte]") == "" ||
			reqs[1].form.Get("limit") != "100" || reqs[1].status != 200 {
			t.Fatalf("listing %+v", reqs)
		}
		if _, err := newDriver(t, m.url).Lookup(ctx, "re_unknown"); !errors.Is(err, gateway.ErrNotFound) {
			t.Fatalf("refund lookup: %v", err)
		}
		last := m.requests()[2]
		if last.path != "/v1/refunds" || last.form.Get("created[gte]") == "" || last.status != 200 {
			t.Fatalf("refund listing %+v", last)
		}
	})
	t.Run("listing cap is inconclusive", func(t *testing.T) {
		m := newStripeMock(t, nil)
		_, err := newDriver(t, m.url, pstripe.WithLookupMaxScan(1)).Lookup(ctx, "pay_missing:authorize")
		var ge *gateway.Error
		if !errors.As(err, &ge) || ge.Kind != gateway.KindTransient || ge.NotProcessed || ge.Code != "lookup_inconclusive" {
			t.Fatalf("%v", err)
		}
	})
	t.Run("refused key", func(t *testing.T) {
		if _, err := newDriver(t, "http://127.0.0.1:1").Lookup(ctx, "pay_1'or'x:authorize"); !errors.Is(err, gateway.ErrInvalidRequest) {
			t.Fatalf("%v", err)
		}
	})
}

func TestStripeMockPingAndAuth(t *testing.T) {
	m := newStripeMock(t, nil)
	if err := newDriver(t, m.url).Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	bad, err := pstripe.New("sk_live_notatestkey", pstripe.WithBaseURL(m.url))
	if err != nil {
		t.Fatal(err)
	}
	err = bad.Ping(context.Background())
	if !errors.Is(err, gateway.ErrAuthentication) || strings.Contains(err.Error(), "notatestkey") {
		t.Fatalf("bad key: %v", err)
	}
	_, err = bad.Authorize(context.Background(), &driver.AuthorizeRequest{IdempotencyKey: "k", Amount: 1, Currency: "EUR", PaymentMethod: "pm_card_visa"})
	var ge *gateway.Error
	if !errors.As(err, &ge) || ge.Kind != gateway.KindAuthentication || !ge.NotProcessed || strings.Contains(err.Error(), "notatestkey") {
		t.Fatalf("bad key authorize: %v", err)
	}
}

func TestAsExposesClient(t *testing.T) {
	g, err := gateway.New("stripe", newDriver(t, "http://127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	var c *stripego.Client
	if !g.As(&c) || c == nil || c.V1PaymentIntents == nil {
		t.Fatal("As(**stripe.Client) failed")
	}
	var s string
	if g.As(&s) {
		t.Fatal("As accepted an unrelated type")
	}
}
