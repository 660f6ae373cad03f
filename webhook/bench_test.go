package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/payrail/payrail/webhook"
)

// BenchmarkDeliver measures deliveries per second to a local receiver (an
// httptest TLS server) on the path the worker takes: Client.Deliver signs
// and POSTs the event through the SSRF-guarded transport to a receiver
// whose Verifier.Middleware checks the signature, the timestamp and the
// replay store before a handler answers 204. The baseline posts the same
// JSON with a plain net/http client (same TLS) to a handler that only
// reads it: no signing, no guard, no breaker, no verification.
func BenchmarkDeliver(b *testing.B) {
	sec := mustSecret(b)
	v := mustVerifier(b, []string{sec.Reveal()}, webhook.WithSeenStore(webhook.NewMemorySeenStore(0)))
	mux := http.NewServeMux()
	mux.Handle("POST /verified", v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})))
	mux.HandleFunc("POST /raw", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	})
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()

	ev := testEvent("evt_bench")
	body, err := json.Marshal(ev)
	if err != nil {
		b.Fatal(err)
	}
	var seq atomic.Int64
	nextEvent := func() *webhook.Event {
		e := *ev
		e.ID = "evt_bench_" + strconv.FormatInt(seq.Add(1), 10) // fresh ids: the replay store must accept each
		return &e
	}

	run := func(b *testing.B, parallel bool, one func() bool) {
		b.ReportAllocs()
		b.ResetTimer()
		if parallel {
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if !one() {
						b.Error("delivery failed")
						return
					}
				}
			})
		} else {
			for b.Loop() {
				if !one() {
					b.Fatal("delivery failed")
				}
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
	}

	plain := &http.Client{Transport: &http.Transport{TLSClientConfig: trusting(srv), MaxIdleConnsPerHost: 64, ForceAttemptHTTP2: true}}
	defer plain.CloseIdleConnections()
	rawPost := func() bool {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL+"/raw", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := plain.Do(req)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusNoContent
	}
	c := loopbackClient(b, srv, webhook.WithConcurrency(64))
	ep := endpointFor(b, srv.URL+"/verified", sec)
	deliver := func() bool {
		return c.Deliver(context.Background(), ep, nextEvent()).Outcome == webhook.Delivered
	}

	b.Run("baseline=plain-post/serial", func(b *testing.B) { run(b, false, rawPost) })
	b.Run("webhook=deliver-verified/serial", func(b *testing.B) { run(b, false, deliver) })
	b.Run("baseline=plain-post/parallel", func(b *testing.B) { run(b, true, rawPost) })
	b.Run("webhook=deliver-verified/parallel", func(b *testing.B) { run(b, true, deliver) })
}
