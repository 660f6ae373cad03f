package bench_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/bench"
	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/payments"
)

// payBody is the request body of every POST /payments, payrail's and the
// trivial handler's.
const payBody = bench.PayBody

// newProcessor returns a processor with the defaults a new user gets
// (memory stores, in-memory bus) and the mock gateway with zero latency.
func newProcessor(b *testing.B) *payments.Processor {
	g, err := gateway.New("mock", mock.New())
	if err != nil {
		b.Fatal(err)
	}
	p, err := payments.New(payments.WithGateway(g))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = p.Close() })
	return p
}

// serveCreates sends b.N POST /payments through h from parallel
// goroutines, each with a new Idempotency-Key, and checks the status.
func serveCreates(b *testing.B, h http.Handler, want int, extra ...string) {
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/payments", strings.NewReader(payBody))
			req.Header.Set("Authorization", "Bearer sk_a")
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", "k"+strconv.FormatInt(seq.Add(1), 10))
			for i := 0; i+1 < len(extra); i += 2 {
				req.Header.Set(extra[i], extra[i+1])
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != want {
				b.Errorf("status %d, want %d: %s", w.Code, want, w.Body)
				return
			}
		}
	})
}

// benchHTTPPayrail is POST /payments through payments.NewHandler, sync
// (201) or async (202, Prefer: respond-async, with a Worker running).
func benchHTTPPayrail(async bool) func(*testing.B) {
	return func(b *testing.B) {
		p := newProcessor(b)
		auth, err := payments.APIKeys(map[string]string{"sk_a": "merchant-a"}, nil)
		if err != nil {
			b.Fatal(err)
		}
		h, err := payments.NewHandler(p, auth)
		if err != nil {
			b.Fatal(err)
		}
		if !async {
			serveCreates(b, h, http.StatusCreated)
			return
		}
		w, err := payments.NewWorker(p)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		b.Cleanup(func() {
			sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer scancel()
			_ = w.Shutdown(sctx)
			cancel()
			<-done
		})
		serveCreates(b, h, http.StatusAccepted, "Prefer", "respond-async")
	}
}

func benchHTTPTrivial(b *testing.B) { serveCreates(b, bench.TrivialHandler(), http.StatusCreated) }

// benchAuthorize is payments.Processor.Authorize called directly (sync,
// memory stores, mock gateway), a new idempotency key each time.
func benchAuthorize(b *testing.B) {
	p := newProcessor(b)
	ctx := context.Background()
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := payments.AuthorizeRequest{Merchant: "m", Amount: 1999, Currency: "EUR", PaymentMethod: "pm_card_visa", Origin: "web"}
		for pb.Next() {
			req.IdempotencyKey = "k" + strconv.FormatInt(seq.Add(1), 10)
			if _, err := p.Authorize(ctx, req); err != nil {
				b.Errorf("Authorize: %v", err)
				return
			}
		}
	})
}
