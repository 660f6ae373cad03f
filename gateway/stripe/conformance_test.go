package stripe_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mockspec "github.com/stripe/stripe-mock/spec"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/internal/testkit"
)

// stripe-mock is stateless and never fails a valid request, so the
// harness states what it cannot prove and proves the error classes with
// Stripe's own error bodies (errors_test.go: cardError, apiError) served in
// place of, or after, stripe-mock's answer.
var stripeNotes = map[string]string{
	testkit.CapStateful: "stripe-mock is stateless: it answers from fixtures, so amounts captured or refunded, " +
		"state rules and unknown references cannot be proven; the driver's mapping of each PaymentIntent status and of " +
		"the charge's amounts is covered by TestStripeMockCaptureVoidRefund with per-scenario fixtures",
	testkit.CapIdempotent: "stripe-mock ignores Idempotency-Key; ObservesKeys proves every operation sends its key, " +
		"FaultKeyReused and FaultKeyInUse prove the classification of Stripe's idempotency errors, and " +
		"TestStripeIdempotentRetryAfterTimeout the retry with the same key after a lost answer",
	testkit.CapLookup: "Lookup needs stored PaymentIntents and refunds; TestStripeMockLookup covers search, listing, " +
		"declines and the inconclusive scan with stripe-mock fixtures",
	testkit.CapDeclines:     "stripe-mock never declines (its README: card test responses are not supported); FaultDeclined serves Stripe's 402 card_error body",
	testkit.CapSoftDeclines: "stripe-mock never declines; FaultSoftDeclined serves Stripe's 402 try_again_later body",
}

// The API keys the harness configures; no error may quote them.
const (
	suiteKey     = "sk_test_gwkitsuite"
	suiteLiveKey = "sk_live_gwkitnotatestkey"
)

// TestConformance runs the gateway driver suite against stripe-mock.
func TestConformance(t *testing.T) {
	peer := newSuitePeer(t)
	testkit.RunGatewayConformance(t, testkit.GatewayHarness{
		Open:    peer.open,
		Tokens:  testkit.GatewayTokens{Approved: "pm_card_visa"},
		Secrets: []string{suiteKey, suiteLiveKey},
		Capabilities: testkit.GatewayCapabilities{
			Delay: true, ObservesKeys: true,
			Faults: slices.Clone(testkit.GatewayFaults),
			Notes:  stripeNotes,
		},
	})
}

// suitePeer is stripe-mock with one fixture set per PaymentIntent status
// Stripe answers with: requires_capture after a manual confirmation,
// succeeded after an automatic one or a capture, canceled after a cancel.
// Every answer is generated and every request validated by stripe-mock
// against Stripe's OpenAPI specification; the harness only picks which
// fixture set answers, from what the request asks for.
type suitePeer struct {
	requiresCapture, succeeded, canceled *stripeMock
}

func newSuitePeer(t *testing.T) *suitePeer {
	status := func(st string) *stripeMock {
		return newStripeMock(t, func(res map[mockspec.ResourceID]any) {
			setFields(res, "payment_intent", map[string]any{"status": st, "last_payment_error": nil})
		})
	}
	return &suitePeer{requiresCapture: status("requires_capture"), succeeded: status("succeeded"), canceled: status("canceled")}
}

// route returns the stripe-mock that answers r, whose form is parsed.
func (p *suitePeer) route(r *http.Request, form url.Values) *stripeMock {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/payment_intents":
		if form.Get("capture_method") == "manual" {
			return p.requiresCapture
		}
		return p.succeeded
	case strings.HasSuffix(r.URL.Path, "/cancel"):
		return p.canceled
	}
	return p.succeeded
}

// front is what one gateway of the suite talks to: it records the
// idempotency keys that reach stripe-mock, delays and injects faults.
type front struct {
	p        *suitePeer
	cfg      testkit.GatewayPeerConfig
	faulted  atomic.Bool
	mu       sync.Mutex
	received []string
}

func (f *front) keys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.received)
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(body))
	if r.Method == http.MethodGet {
		form = r.URL.Query()
	}
	forward := func(w http.ResponseWriter) {
		if k := r.Header.Get("Idempotency-Key"); k != "" {
			f.mu.Lock()
			f.received = append(f.received, k)
			f.mu.Unlock()
		}
		if f.cfg.Delay > 0 {
			time.Sleep(f.cfg.Delay) // Stripe keeps processing when the client gives up
		}
		req, err := http.NewRequest(r.Method, f.p.route(r, form).url+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		req.Header = r.Header.Clone()
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		for k, v := range res.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(res.StatusCode)
		_, _ = io.Copy(w, res.Body)
	}
	if f.cfg.Fault == "" || f.faulted.Swap(true) {
		forward(w)
		return
	}
	answer := func(status int, body string) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Request-Id", "req_gwkit")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
	switch f.cfg.Fault {
	case testkit.FaultDeclined:
		answer(http.StatusPaymentRequired, cardError("card_declined", "generic_decline", "Your card was declined."))
	case testkit.FaultSoftDeclined:
		answer(http.StatusPaymentRequired, cardError("card_declined", "try_again_later", "Your card was declined."))
	case testkit.FaultRefused:
		answer(http.StatusTooManyRequests, apiError("invalid_request_error", "rate_limit", "Too many requests hit the API too quickly."))
	case testkit.FaultKeyReused:
		answer(http.StatusBadRequest, apiError("idempotency_error", "",
			"Keys for idempotent requests can only be used with the same parameters they were first used with."))
	case testkit.FaultKeyInUse:
		answer(http.StatusConflict, apiError("invalid_request_error", "idempotency_key_in_use",
			"There is currently another in-progress request using this Idempotent Key."))
	case testkit.FaultServerError:
		forward(httptest.NewRecorder()) // processed; the answer is replaced
		answer(http.StatusInternalServerError, apiError("api_error", "", "Sorry, something went wrong. We've already been notified of the problem."))
	case testkit.FaultNoAnswer:
		forward(httptest.NewRecorder()) // processed; the connection drops
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
	default:
		forward(w)
	}
}

// open opens a gateway by URL, with the API key in a file, as an
// operator would configure it.
func (p *suitePeer) open(ctx context.Context, t testing.TB, cfg testkit.GatewayPeerConfig) (*testkit.GatewayPeer, error) {
	key := suiteKey
	if cfg.Fault == testkit.FaultAuthentication {
		key = suiteLiveKey // stripe-mock itself answers 401 to any key that is not a test key
	}
	keyFile := filepath.Join(t.TempDir(), "stripe-key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		return nil, err
	}
	f := &front{p: p, cfg: cfg}
	base := ""
	if cfg.Fault == testkit.FaultUnreachable {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		base = "http://" + ln.Addr().String()
		ln.Close() // nothing listens there: connection refused
	} else {
		srv := httptest.NewServer(f)
		t.Cleanup(srv.Close)
		base = srv.URL
	}
	u := fmt.Sprintf("stripe://?name=stripe-suite&api_key_file=%s&base_url=%s", url.QueryEscape(keyFile), url.QueryEscape(base))
	g, err := gateway.Open(ctx, u)
	if err != nil {
		return nil, err
	}
	return &testkit.GatewayPeer{Gateway: g, ReceivedKeys: f.keys}, nil
}
