package payments_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/idempotency/memory"
	"github.com/payrail/payrail/internal/testkit"
	"github.com/payrail/payrail/payments"
)

// BenchmarkAuthorize measures in-process synchronous authorizations: memory
// stores, mock gateway with zero latency, a new idempotency key each time.
func BenchmarkAuthorize(b *testing.B) {
	p, err := payments.New(payments.WithGateway(mockGateway(&testing.T{}, mock.New())), benchIdempotency())
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	benchAuthorize(b, p)
}

// benchIdempotency is the default idempotency store (memory) with room
// for every key a long benchmark run makes: the default bound (1M
// unexpired keys) would refuse new ones with idempotency_store_full past
// about a million iterations.
func benchIdempotency() payments.Option {
	return payments.WithIdempotencyStore(idempotency.New(memory.New(memory.WithMaxEntries(1 << 26))))
}

// benchAuthorize runs parallel sync authorizations on p, each with a new
// idempotency key.
func benchAuthorize(b *testing.B, p *payments.Processor) {
	ctx := context.Background()
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := payments.AuthorizeRequest{Merchant: "m", Amount: 1999, Currency: "EUR", PaymentMethod: "pm_card_visa", Origin: "web"}
		for pb.Next() {
			req.IdempotencyKey = "k" + strconv.FormatInt(seq.Add(1), 10)
			if _, err := p.Authorize(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "auth/s")
}

// BenchmarkHTTPCreatePayment measures POST /payments through the real
// handler, in-process (no network): the handler's own cost.
func BenchmarkHTTPCreatePayment(b *testing.B) {
	p, err := payments.New(payments.WithGateway(mockGateway(&testing.T{}, mock.New())), benchIdempotency())
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	benchHTTPCreate(b, p)
}

// benchHTTPCreate runs parallel POST /payments requests through p's
// handler, each with a new idempotency key.
func benchHTTPCreate(b *testing.B, p *payments.Processor) {
	a, _ := payments.APIKeys(map[string]string{"sk_a": "merchant-a"}, nil)
	h, err := payments.NewHandler(p, a)
	if err != nil {
		b.Fatal(err)
	}
	body := payBody("pm_card_visa")
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/payments", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer sk_a")
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", "k"+strconv.FormatInt(seq.Add(1), 10))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusCreated {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// A sync authorization (memory stores, mock gateway) stays within its
// allocation budget: 8 allocations on Go 1.26 (the claim, which also holds
// the payment, its gateway request, the gateway attempt's deadline context
// and the stored response; one string for the payment id, its gateway key,
// the fingerprint and the idempotency token; the idempotency result; the
// mock gateway's three; the stored body and the outcome), checked with one
// of slack so that toolchain updates do not break the build.
// BenchmarkAuthorize shows the exact figure.
func TestAuthorizeAllocationBudget(t *testing.T) {
	testkit.SkipAllocsUnderRace(t)
	p, err := payments.New(payments.WithGateway(mockGateway(t, mock.New())))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	req := payments.AuthorizeRequest{Merchant: "m", Amount: 1999, Currency: "EUR", PaymentMethod: "pm_card_visa", Origin: "web"}
	const runs = 2000
	keys := make([]string, runs+1)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	i := 0
	allocs := testing.AllocsPerRun(runs, func() {
		req.IdempotencyKey = keys[i]
		i++
		if pay, err := p.Authorize(ctx, req); err != nil || pay.Status != payments.StatusCaptured {
			t.Fatal(pay, err)
		}
	})
	if allocs > 9 {
		t.Errorf("Authorize: %v allocations per call, budget 9", allocs)
	}
}

// The HTTP API's create path stays within its allocation budget too,
// tracing and metrics included (no SDK installed): 46 on Go 1.26
// (httptest's request and recorder included), with some slack.
func TestHTTPCreateAllocationBudget(t *testing.T) {
	testkit.SkipAllocsUnderRace(t)
	p, err := payments.New(payments.WithGateway(mockGateway(t, mock.New())))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	a, err := payments.APIKeys(map[string]string{"sk_a": "merchant-a"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := payments.NewHandler(p, a)
	if err != nil {
		t.Fatal(err)
	}
	body := payBody("pm_card_visa")
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		req := httptest.NewRequest(http.MethodPost, "/payments", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer sk_a")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "k"+strconv.Itoa(i))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusCreated {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	})
	if allocs > 48 {
		t.Errorf("POST /payments: %v allocations per request, budget 48", allocs)
	}
}
