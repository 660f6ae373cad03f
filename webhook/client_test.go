package webhook_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/webhook"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// trusting returns the TLS configuration that trusts srv's certificate
// (issued for 127.0.0.1, ::1 and example.com).
func trusting(srv *httptest.Server) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return &tls.Config{RootCAs: pool}
}

func newClient(t testing.TB, opts ...webhook.ClientOption) *webhook.Client {
	t.Helper()
	c, err := webhook.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// loopbackClient may reach srv, a TLS test server on a loopback address.
func loopbackClient(t testing.TB, srv *httptest.Server, opts ...webhook.ClientOption) *webhook.Client {
	return newClient(t, append([]webhook.ClientOption{webhook.WithTLSConfig(trusting(srv)), webhook.WithAllowedNetworks(loopback...)}, opts...)...)
}

func testEvent(id string) *webhook.Event {
	return &webhook.Event{
		ID: id, Type: webhook.PaymentAuthorized, CreatedAt: time.Date(2026, 12, 4, 17, 0, 0, 0, time.UTC),
		PaymentID: "pay_1", Merchant: "m_1", PaymentVersion: 2,
		Data: json.RawMessage(`{"id":"pay_1","status":"authorized","amount":1250,"currency":"EUR"}`),
	}
}

func endpointFor(t testing.TB, url string, secrets ...webhook.Secret) *webhook.Endpoint {
	if len(secrets) == 0 {
		secrets = []webhook.Secret{mustSecret(t)}
	}
	return &webhook.Endpoint{ID: "we_" + strconv.FormatInt(time.Now().UnixNano(), 36), Merchant: "m_1", URL: url, Secrets: secrets, Enabled: true}
}

func TestDeliverToVerifyingReceiver(t *testing.T) {
	current, previous := mustSecret(t), mustSecret(t)
	// The merchant has not switched to the new secret yet.
	v := mustVerifier(t, []string{previous.Reveal()}, webhook.WithSeenStore(webhook.NewMemorySeenStore(0)))
	got := make(chan *webhook.Event, 1)
	var ua atomic.Value
	srv := httptest.NewTLSServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev, _ := webhook.EventFromContext(r.Context())
		ua.Store(r.Header.Get("User-Agent") + " " + r.Header.Get("Content-Type"))
		got <- ev
		w.WriteHeader(http.StatusNoContent)
	})))
	defer srv.Close()
	c := loopbackClient(t, srv)
	ep := endpointFor(t, srv.URL+"/hooks", current, previous)
	want := testEvent("evt_deliver1")
	res := c.Deliver(context.Background(), ep, want)
	if res.Outcome != webhook.Delivered || res.StatusCode != http.StatusNoContent || res.Err != nil || !res.Attempted {
		t.Fatalf("Deliver = %+v", res)
	}
	ev := <-got
	if ev.ID != want.ID || ev.Type != want.Type || !ev.CreatedAt.Equal(want.CreatedAt) || ev.PaymentID != want.PaymentID ||
		ev.Merchant != want.Merchant || ev.PaymentVersion != want.PaymentVersion || string(ev.Data) != string(want.Data) {
		t.Fatalf("the receiver decoded %+v, want %+v", ev, want)
	}
	if ua.Load() != "payrail-webhooks/1 application/json" {
		t.Fatalf("User-Agent and Content-Type: %q", ua.Load())
	}
	// A redelivery of the same event carries the same webhook-id: the
	// receiver's replay check refuses it, and the sender retries later.
	res = c.Deliver(context.Background(), ep, want)
	if res.Outcome != webhook.Retry || res.StatusCode != http.StatusConflict || !errors.Is(res.Err, webhook.ErrUnexpectedStatus) {
		t.Fatalf("redelivery = %+v", res)
	}
}

func TestDeliverClassification(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if ra := q.Get("retry_after"); ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		if loc := q.Get("location"); loc != "" {
			w.Header().Set("Location", loc)
		}
		code, _ := strconv.Atoi(q.Get("status"))
		w.WriteHeader(code)
		if n, _ := strconv.Atoi(q.Get("body")); n > 0 {
			_, _ = w.Write([]byte(strings.Repeat("x", n)))
		}
	}))
	defer srv.Close()
	c := loopbackClient(t, srv, webhook.WithMaxResponseBytes(1024), webhook.WithBreaker(webhook.BreakerSettings{ConsecutiveFailures: 1000}))
	date := url.QueryEscape(time.Now().Add(90 * time.Second).UTC().Format(http.TimeFormat))
	for _, tc := range []struct {
		query      string
		outcome    webhook.Outcome
		retryAfter time.Duration // lower bound
		bodyLen    int
	}{
		{"status=200", webhook.Delivered, 0, 0},
		{"status=201&body=10", webhook.Delivered, 0, 10},
		{"status=204", webhook.Delivered, 0, 0},
		{"status=299", webhook.Delivered, 0, 0},
		{"status=200&body=100000", webhook.Delivered, 0, 1024},
		{"status=410", webhook.Disable, 0, 0},
		{"status=500&body=5000", webhook.Retry, 0, 1024},
		{"status=502", webhook.Retry, 0, 0},
		{"status=503&retry_after=" + date, webhook.Retry, 80 * time.Second, 0},
		{"status=429&retry_after=120", webhook.Retry, 120 * time.Second, 0},
		{"status=429&retry_after=99999999", webhook.Retry, 24 * time.Hour, 0},
		{"status=400&retry_after=120", webhook.Retry, 0, 0}, // Retry-After only counts on 429 and 5xx
		{"status=401", webhook.Retry, 0, 0},
		{"status=404", webhook.Retry, 0, 0},
		{"status=302&location=https://example.com/", webhook.Retry, 0, 0},
	} {
		t.Run(tc.query, func(t *testing.T) {
			res := c.Deliver(context.Background(), endpointFor(t, srv.URL+"/?"+tc.query), testEvent("evt_c"))
			if res.Outcome != tc.outcome || !res.Attempted || len(res.Body) != tc.bodyLen {
				t.Fatalf("Deliver = %v (status %d, body %d bytes, %v), want %v with %d bytes", res.Outcome, res.StatusCode, len(res.Body), res.Err, tc.outcome, tc.bodyLen)
			}
			if tc.outcome == webhook.Delivered && res.Err != nil {
				t.Fatalf("delivered with error %v", res.Err)
			}
			if tc.outcome != webhook.Delivered && !errors.Is(res.Err, webhook.ErrUnexpectedStatus) {
				t.Fatalf("Err = %v, want ErrUnexpectedStatus", res.Err)
			}
			if res.RetryAfter < tc.retryAfter || (tc.retryAfter == 0 && res.RetryAfter != 0) || res.RetryAfter > 24*time.Hour {
				t.Fatalf("RetryAfter = %v, want ≥ %v", res.RetryAfter, tc.retryAfter)
			}
		})
	}
}

func TestDeliverTimeouts(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // then net/http notices the client leaving
		if r.URL.Path == "/trickle" {
			// Headers at once, then a body that never ends.
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("partial"))
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release) // before Close, which waits for the handlers
	c := loopbackClient(t, srv, webhook.WithTimeout(300*time.Millisecond))

	res := c.Deliver(context.Background(), endpointFor(t, srv.URL+"/slow"), testEvent("evt_t"))
	if res.Outcome != webhook.Retry || !res.Attempted || !errors.Is(res.Err, context.DeadlineExceeded) || res.Duration > 5*time.Second {
		t.Fatalf("slow endpoint: %+v", res)
	}
	// The response body is read under the same timeout.
	res = c.Deliver(context.Background(), endpointFor(t, srv.URL+"/trickle"), testEvent("evt_t"))
	if res.Outcome != webhook.Delivered || string(res.Body) != "partial" || res.Duration > 5*time.Second {
		t.Fatalf("endless body: %+v (%q)", res, res.Body)
	}
}

func TestDeliverConnectionErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_ = conn.Close() // reset before any TLS
		}
	}()
	c := newClient(t, webhook.WithAllowedNetworks(loopback...))
	res := c.Deliver(context.Background(), endpointFor(t, "https://"+addr+"/"), testEvent("evt_x"))
	if res.Outcome != webhook.Retry || !res.Attempted || res.Err == nil {
		t.Fatalf("closed connection: %+v", res)
	}
	_ = ln.Close()
	res = c.Deliver(context.Background(), endpointFor(t, "https://"+addr+"/"), testEvent("evt_x"))
	if res.Outcome != webhook.Retry || res.Err == nil {
		t.Fatalf("refused connection: %+v", res)
	}
	// An untrusted certificate is retried too (the merchant can fix it).
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	res = c.Deliver(context.Background(), endpointFor(t, srv.URL), testEvent("evt_x"))
	var unknown x509.UnknownAuthorityError
	if res.Outcome != webhook.Retry || !errors.As(res.Err, &unknown) {
		t.Fatalf("untrusted certificate: %+v", res)
	}
}

func TestSSRFGuardOnRealListeners(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	byName := "https://localhost:" + port + "/hook?token=s3cr3t-in-query"
	byIP := srv.URL + "/hook"
	// The certificate names example.com and the loopback IPs; "localhost"
	// dials the same listener.
	tlsByName := trusting(srv)
	tlsByName.ServerName = "example.com"

	def := newClient(t, webhook.WithTLSConfig(tlsByName))
	for _, u := range []string{byName, byIP} {
		res := def.Deliver(context.Background(), endpointFor(t, u), testEvent("evt_s"))
		if res.Outcome != webhook.Undeliverable || !errors.Is(res.Err, webhook.ErrForbiddenAddress) || res.Attempted {
			t.Fatalf("default client to %s: %+v", u, res)
		}
		if strings.Contains(res.Err.Error(), "s3cr3t") {
			t.Fatalf("the error reveals the URL's query: %v", res.Err)
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("the loopback listener received %d requests from a default client", hits.Load())
	}
	// The host name is resolved and its address checked when dialled.
	if err := def.CheckURL(byName); err != nil {
		t.Fatalf("CheckURL cannot know where a name resolves: %v", err)
	}
	if err := def.CheckURL(byIP); !errors.Is(err, webhook.ErrForbiddenAddress) {
		t.Fatalf("CheckURL(%s) = %v", byIP, err)
	}

	allowed := newClient(t, webhook.WithTLSConfig(tlsByName), webhook.WithAllowedNetworks(loopback...))
	for _, u := range []string{byName, byIP} {
		if res := allowed.Deliver(context.Background(), endpointFor(t, u), testEvent("evt_s")); res.Outcome != webhook.Delivered {
			t.Fatalf("allowed client to %s: %+v", u, res)
		}
	}
	if hits.Load() != 2 {
		t.Fatalf("%d requests arrived, want 2", hits.Load())
	}
}

func TestForbiddenAddresses(t *testing.T) {
	c := newClient(t)
	for _, host := range []string{
		"127.0.0.1", "127.1.2.3", "[::1]", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
		"[fe80::1]", "[fc00::1]", "[fd12:3456::1]", "0.0.0.0", "[::]", "224.0.0.1", "239.255.255.250", "[ff02::1]",
		"100.64.0.1", "255.255.255.255", "240.0.0.1", "198.18.0.1", "192.0.2.1",
		"[::ffff:127.0.0.1]", "[::ffff:10.0.0.1]", "[64:ff9b::a00:1]", "[64:ff9b::7f00:1]", "[2002:7f00:1::]", "[2001:db8::1]",
	} {
		if err := c.CheckURL("https://" + host + "/"); !errors.Is(err, webhook.ErrForbiddenAddress) {
			t.Errorf("CheckURL(%s) = %v, want ErrForbiddenAddress", host, err)
		}
	}
	for _, host := range []string{"8.8.8.8", "1.1.1.1", "[2606:4700:4700::1111]", "[64:ff9b::808:808]", "hooks.example.com", "example.com:8443"} {
		if err := c.CheckURL("https://" + host + "/"); err != nil {
			t.Errorf("CheckURL(%s) = %v, want nil", host, err)
		}
	}
	for _, u := range []string{"http://hooks.example.com/", "ftp://example.com/", "https://user:pw@example.com/", "https:///path", "/relative", "https://example.com:0/", "https://example.com:99999/", "::"} {
		if err := c.CheckURL(u); !errors.Is(err, webhook.ErrInvalidURL) {
			t.Errorf("CheckURL(%q) = %v, want ErrInvalidURL", u, err)
		} else if strings.Contains(err.Error(), "pw") {
			t.Errorf("CheckURL(%q) reveals the password: %v", u, err)
		}
	}
	// An allowed network opens exactly its prefix.
	c = newClient(t, webhook.WithAllowedNetworks(netip.MustParsePrefix("10.1.0.0/16")))
	if err := c.CheckURL("https://10.1.2.3/"); err != nil {
		t.Errorf("allowed 10.1.2.3: %v", err)
	}
	if err := c.CheckURL("https://10.2.0.1/"); !errors.Is(err, webhook.ErrForbiddenAddress) {
		t.Errorf("10.2.0.1 outside the allowed prefix: %v", err)
	}
}

func TestInsecureHTTPOnlyInDevMode(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	ep := endpointFor(t, srv.URL)
	res := newClient(t, webhook.WithAllowedNetworks(loopback...)).Deliver(context.Background(), ep, testEvent("evt_h"))
	if res.Outcome != webhook.Undeliverable || !errors.Is(res.Err, webhook.ErrInvalidURL) {
		t.Fatalf("http without the dev option: %+v", res)
	}
	res = newClient(t, webhook.WithAllowedNetworks(loopback...), webhook.AllowInsecureHTTP()).Deliver(context.Background(), ep, testEvent("evt_h"))
	if res.Outcome != webhook.Delivered || hits.Load() != 1 {
		t.Fatalf("http with AllowInsecureHTTP: %+v, %d hits", res, hits.Load())
	}
	// The dev option does not lift the address guard.
	res = newClient(t, webhook.AllowInsecureHTTP()).Deliver(context.Background(), endpointFor(t, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)), testEvent("evt_h"))
	if res.Outcome != webhook.Undeliverable || !errors.Is(res.Err, webhook.ErrForbiddenAddress) {
		t.Fatalf("http to localhost without an allowed network: %+v", res)
	}
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	var targetHits atomic.Int32
	target := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { targetHits.Add(1) }))
	defer target.Close()
	redirector := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/internal", http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	// Both test servers share httptest's certificate.
	res := loopbackClient(t, redirector).Deliver(context.Background(), endpointFor(t, redirector.URL), testEvent("evt_r"))
	if res.Outcome != webhook.Retry || res.StatusCode != http.StatusTemporaryRedirect || targetHits.Load() != 0 {
		t.Fatalf("redirect: %+v, target hit %d times", res, targetHits.Load())
	}
}

func TestPerEndpointConcurrencyLimit(t *testing.T) {
	arrived := make(chan struct{}, 10)
	release := make(chan struct{})
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
	}))
	defer srv.Close()
	c := loopbackClient(t, srv, webhook.WithConcurrency(2))
	ep := endpointFor(t, srv.URL)
	results := make(chan webhook.Result, 2)
	for range 2 {
		go func() { results <- c.Deliver(context.Background(), ep, testEvent("evt_busy")) }()
	}
	<-arrived
	<-arrived
	res := c.Deliver(context.Background(), ep, testEvent("evt_busy"))
	if res.Outcome != webhook.Retry || res.Attempted || !errors.Is(res.Err, webhook.ErrEndpointBusy) || res.RetryAfter <= 0 {
		t.Fatalf("third concurrent delivery: %+v", res)
	}
	// Another endpoint has its own limit.
	other := endpointFor(t, srv.URL)
	go func() { results <- c.Deliver(context.Background(), other, testEvent("evt_busy")) }()
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("another endpoint's delivery was held back")
	}
	close(release)
	for range 3 {
		if r := <-results; r.Outcome != webhook.Delivered {
			t.Fatalf("released delivery: %+v", r)
		}
	}
	if r := c.Deliver(context.Background(), ep, testEvent("evt_busy")); r.Outcome != webhook.Delivered {
		t.Fatalf("after the limit freed up: %+v", r)
	}
}

func TestPerEndpointCircuitBreaker(t *testing.T) {
	var hits atomic.Int32
	var healthy atomic.Bool
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	c := loopbackClient(t, srv, webhook.WithBreaker(webhook.BreakerSettings{ConsecutiveFailures: 3, OpenTimeout: 300 * time.Millisecond}))
	ep := endpointFor(t, srv.URL)
	for i := range 3 {
		if r := c.Deliver(context.Background(), ep, testEvent("evt_cb")); r.Outcome != webhook.Retry || !r.Attempted {
			t.Fatalf("failure %d: %+v", i, r)
		}
	}
	r := c.Deliver(context.Background(), ep, testEvent("evt_cb"))
	if r.Outcome != webhook.Retry || r.Attempted || !errors.Is(r.Err, webhook.ErrCircuitOpen) || hits.Load() != 3 {
		t.Fatalf("open breaker: %+v after %d requests", r, hits.Load())
	}
	// Other endpoints are not affected.
	healthy.Store(true)
	if r := c.Deliver(context.Background(), endpointFor(t, srv.URL), testEvent("evt_cb")); r.Outcome != webhook.Delivered {
		t.Fatalf("another endpoint: %+v", r)
	}
	time.Sleep(400 * time.Millisecond)
	if r := c.Deliver(context.Background(), ep, testEvent("evt_cb")); r.Outcome != webhook.Delivered {
		t.Fatalf("half-open probe: %+v", r)
	}
	if r := c.Deliver(context.Background(), ep, testEvent("evt_cb")); r.Outcome != webhook.Delivered {
		t.Fatalf("closed again: %+v", r)
	}
}

func TestDeliverRefusesBeforeSending(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	c := loopbackClient(t, srv)
	disabled := endpointFor(t, srv.URL)
	disabled.Enabled = false
	filtered := endpointFor(t, srv.URL)
	filtered.EventTypes = []webhook.EventType{webhook.PaymentCaptured, webhook.PaymentRefunded}
	noSecret := endpointFor(t, srv.URL)
	noSecret.Secrets = nil
	badID := testEvent("evt.with.dots")
	for _, tc := range []struct {
		name string
		ep   *webhook.Endpoint
		ev   *webhook.Event
		want error
	}{
		{"disabled", disabled, testEvent("evt_1"), webhook.ErrEndpointDisabled},
		{"filtered", filtered, testEvent("evt_1"), webhook.ErrEventFiltered},
		{"no secret", noSecret, testEvent("evt_1"), webhook.ErrInvalidSecret},
		{"bad id", endpointFor(t, srv.URL), badID, webhook.ErrInvalidID},
		{"bad data", endpointFor(t, srv.URL), &webhook.Event{ID: "evt_1", Type: webhook.PaymentFailed, Data: json.RawMessage(`{`)}, webhook.ErrInvalidEvent},
	} {
		res := c.Deliver(context.Background(), tc.ep, tc.ev)
		if res.Outcome != webhook.Undeliverable || res.Attempted || !errors.Is(res.Err, tc.want) {
			t.Errorf("%s: %+v, want Undeliverable %v", tc.name, res, tc.want)
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("%d requests were sent", hits.Load())
	}
	if !filtered.Accepts(webhook.PaymentRefunded) || filtered.Accepts(webhook.PaymentAuthorized) || !endpointFor(t, "").Accepts("payment.anything") {
		t.Fatal("Accepts")
	}
}

func TestCallerCancellationIsNotAnEndpointFailure(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hang" {
			_, _ = io.Copy(io.Discard, r.Body) // then net/http notices the client leaving
			<-r.Context().Done()
		}
	}))
	defer srv.Close()
	c := loopbackClient(t, srv, webhook.WithBreaker(webhook.BreakerSettings{ConsecutiveFailures: 1}))
	ep := endpointFor(t, srv.URL+"/hang")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if r := c.Deliver(ctx, ep, testEvent("evt_cc")); r.Outcome != webhook.Retry || !errors.Is(r.Err, context.DeadlineExceeded) {
		t.Fatalf("cancelled: %+v", r)
	}
	// The breaker (one failure trips it) did not count the cancellation.
	ep.URL = srv.URL + "/ok"
	if r := c.Deliver(context.Background(), ep, testEvent("evt_cc2")); r.Outcome != webhook.Delivered {
		t.Fatalf("after the caller's cancellation: %+v", r)
	}
}
