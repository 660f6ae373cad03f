package webhook_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/webhook"
)

type problem struct {
	Type   string `json:"type"`
	Status int    `json:"status"`
	Code   string `json:"code"`
}

// post sends a delivery to a real HTTP server and decodes its answer.
func post(t *testing.T, url string, h http.Header, body []byte) (int, problem, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var p problem
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") {
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Fatalf("problem body %q: %v", raw, err)
		}
		if p.Status != resp.StatusCode || !strings.HasSuffix(p.Type, "#"+p.Code) {
			t.Fatalf("inconsistent problem %+v for status %d", p, resp.StatusCode)
		}
	}
	return resp.StatusCode, p, string(raw)
}

func eventBody(t testing.TB, id string) []byte {
	t.Helper()
	b, err := json.Marshal(webhook.Event{
		ID: id, Type: webhook.PaymentCaptured, CreatedAt: time.Now().UTC(), PaymentID: "pay_1",
		Merchant: "m_1", PaymentVersion: 3, Data: json.RawMessage(`{"id":"pay_1","amount":1000,"currency":"EUR"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMiddleware(t *testing.T) {
	sec := mustSecret(t)
	v := mustVerifier(t, []string{sec.Reveal()}, webhook.WithSeenStore(webhook.NewMemorySeenStore(0)), webhook.WithMaxBodyBytes(4096))
	var fail atomic.Bool
	var got atomic.Pointer[webhook.Event]
	var raw atomic.Value
	srv := httptest.NewServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev, ok := webhook.EventFromContext(r.Context())
		if !ok {
			t.Error("no event in the context")
		}
		b, _ := io.ReadAll(r.Body)
		raw.Store(string(b))
		if fail.Load() {
			http.Error(w, "database down", http.StatusInternalServerError)
			return
		}
		got.Store(ev)
		w.WriteHeader(http.StatusNoContent)
	})))
	defer srv.Close()

	body := eventBody(t, "evt_1")
	h := signed(t, []webhook.Secret{sec}, "evt_1", time.Now(), body)

	// The handler fails: the id is forgotten, so the sender's retry (same
	// id, fresh timestamp) is processed.
	fail.Store(true)
	if code, _, _ := post(t, srv.URL, h, body); code != http.StatusInternalServerError {
		t.Fatalf("failing handler: status %d", code)
	}
	fail.Store(false)
	retry := signed(t, []webhook.Secret{sec}, "evt_1", time.Now().Add(time.Second), body)
	if code, _, text := post(t, srv.URL, retry, body); code != http.StatusNoContent {
		t.Fatalf("retry after a failure: status %d %s", code, text)
	}
	ev := got.Load()
	if ev == nil || ev.ID != "evt_1" || ev.Type != webhook.PaymentCaptured || ev.PaymentVersion != 3 || ev.PaymentID != "pay_1" {
		t.Fatalf("handler got %+v", ev)
	}
	if raw.Load() != string(body) {
		t.Fatalf("the handler read %q, want the raw body", raw.Load())
	}

	b2, b3, bOther, b7, b8 := eventBody(t, "evt_2"), eventBody(t, "evt_3"), eventBody(t, "evt_other"), eventBody(t, "evt_7"), eventBody(t, "evt_8")
	otherSecret := signed(t, []webhook.Secret{mustSecret(t)}, "evt_2", time.Now(), b2)
	stale := signed(t, []webhook.Secret{sec}, "evt_3", time.Now().Add(-time.Hour), b3)
	mismatch := signed(t, []webhook.Secret{sec}, "evt_4", time.Now(), bOther)
	notEvent := signed(t, []webhook.Secret{sec}, "evt_5", time.Now(), []byte(`[1,2]`))
	big := bytes.Repeat([]byte("x"), 5000)
	bigH := signed(t, []webhook.Secret{sec}, "evt_6", time.Now(), big)
	noSig := signed(t, []webhook.Secret{sec}, "evt_7", time.Now(), b7)
	noSig.Del(webhook.HeaderSignature)
	badTS := signed(t, []webhook.Secret{sec}, "evt_8", time.Now(), b8)
	badTS.Set(webhook.HeaderTimestamp, "yesterday")
	for _, c := range []struct {
		name   string
		h      http.Header
		body   []byte
		status int
		code   string
	}{
		{"replay of a processed delivery", retry, body, http.StatusConflict, webhook.CodeReplayed},
		{"wrong secret", otherSecret, b2, http.StatusUnauthorized, webhook.CodeSignatureInvalid},
		{"an hour old", stale, b3, http.StatusUnauthorized, webhook.CodeTimestampOutOfWindow},
		{"body id is not webhook-id", mismatch, bOther, http.StatusBadRequest, webhook.CodeEventInvalid},
		{"body is not an event", notEvent, []byte(`[1,2]`), http.StatusBadRequest, webhook.CodeEventInvalid},
		{"over the cap", bigH, big, http.StatusRequestEntityTooLarge, webhook.CodeBodyTooLarge},
		{"no signature", noSig, b7, http.StatusBadRequest, webhook.CodeHeaderMissing},
		{"timestamp not Unix seconds", badTS, b8, http.StatusBadRequest, webhook.CodeHeaderMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, p, text := post(t, srv.URL, c.h, c.body)
			if code != c.status || p.Code != c.code {
				t.Fatalf("status %d code %q (%s), want %d %q", code, p.Code, text, c.status, c.code)
			}
		})
	}
	// A rejected event's id stays usable: evt_4 correctly signed now passes.
	fixed := eventBody(t, "evt_4")
	if code, _, text := post(t, srv.URL, signed(t, []webhook.Secret{sec}, "evt_4", time.Now(), fixed), fixed); code != http.StatusNoContent {
		t.Fatalf("evt_4 after its invalid body: %d %s", code, text)
	}

	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodPost {
		t.Fatalf("GET: %d Allow=%q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

func TestMiddlewareForgetsOnPanic(t *testing.T) {
	sec := mustSecret(t)
	v := mustVerifier(t, []string{sec.Reveal()}, webhook.WithSeenStore(webhook.NewMemorySeenStore(0)))
	var calls atomic.Int32
	srv := httptest.NewServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			panic(http.ErrAbortHandler) // net/http's quiet abort
		}
	})))
	defer srv.Close()
	body := eventBody(t, "evt_p")
	req := func() (*http.Response, error) {
		r, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
		for k, vv := range signed(t, []webhook.Secret{sec}, "evt_p", time.Now(), body) {
			r.Header[k] = vv
		}
		return http.DefaultClient.Do(r)
	}
	if resp, err := req(); err == nil {
		resp.Body.Close()
		t.Fatalf("the panicking handler answered %d", resp.StatusCode)
	}
	resp, err := req()
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || calls.Load() != 2 {
		t.Fatalf("redelivery after a panic: %d, %d calls", resp.StatusCode, calls.Load())
	}
}
