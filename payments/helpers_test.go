package payments_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/payments"
)

// env is a processor with a mock gateway, served over real HTTP.
type env struct {
	t    *testing.T
	p    *payments.Processor
	mock *mock.Mock
	srv  *httptest.Server
	h    *payments.Handler
}

type envOption struct {
	gatewayURL string
	procOpts   []payments.Option
	auth       payments.Authenticator
	noWorker   bool
}

func newEnv(t *testing.T, eo envOption) *env {
	t.Helper()
	ctx := context.Background()
	if eo.gatewayURL == "" {
		eo.gatewayURL = "mock://"
	}
	g, err := gateway.Open(ctx, eo.gatewayURL)
	if err != nil {
		t.Fatal(err)
	}
	var m *mock.Mock
	if !g.As(&m) {
		t.Fatal("gateway is not a mock")
	}
	opts := append([]payments.Option{
		payments.WithGateway(g),
		payments.WithRetryPolicy(payments.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}),
	}, eo.procOpts...)
	p, err := payments.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	if eo.auth == nil {
		eo.auth, err = payments.APIKeys(map[string]string{"sk_a": "merchant-a", "sk_b": "merchant-b"}, []string{"sk_admin"})
		if err != nil {
			t.Fatal(err)
		}
	}
	h, err := payments.NewHandler(p, eo.auth)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, p: p, mock: m, srv: httptest.NewServer(h), h: h}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	if !eo.noWorker {
		w, err := payments.NewWorker(p)
		if err != nil {
			t.Fatal(err)
		}
		go func() { done <- w.Run(wctx) }()
	} else {
		done <- nil
	}
	t.Cleanup(func() {
		e.srv.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
		if err := p.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return e
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return m
}

// do sends a request. headers are alternating name, value.
func (e *env) do(method, path, body string, headers ...string) resp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b}
}

const auth = "Authorization"

func bearer(k string) string { return "Bearer " + k }

func payBody(pm string) string {
	return `{"amount":1999,"currency":"EUR","payment_method":"` + pm + `","origin":"web","capture_method":"automatic","metadata":{"order":"42"}}`
}

// create posts a payment as merchant-a with the given key.
func (e *env) create(key, body string, extra ...string) resp {
	e.t.Helper()
	return e.do("POST", "/payments", body, append([]string{auth, bearer("sk_a"), "Idempotency-Key", key}, extra...)...)
}

func wantStatus(t *testing.T, r resp, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d; body %s", r.status, want, r.body)
	}
}

func wantProblem(t *testing.T, r resp, status int, code string) map[string]any {
	t.Helper()
	wantStatus(t, r, status)
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	m := r.json(t)
	if m["code"] != code {
		t.Fatalf("code %v, want %s; body %s", m["code"], code, r.body)
	}
	if m["status"] != float64(status) || m["title"] == "" || !strings.HasSuffix(m["type"].(string), "#"+code) {
		t.Fatalf("incomplete problem document: %s", r.body)
	}
	return m
}

// eventually polls f until it returns true or the deadline passes.
func eventually(t *testing.T, d time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if f() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("condition not met within %v", d)
}

func sameBytes(a, b []byte) bool { return bytes.Equal(a, b) }
