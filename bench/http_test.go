package bench_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/payments"
)

// payBody is the request body of every POST /payments, payrail's and the
// trivial handler's.
const payBody = `{"amount":1999,"currency":"EUR","payment_method":"pm_card_visa","origin":"web","capture_method":"automatic","metadata":{"order":"42"}}`

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

// trivialRequest and trivialResponse are what the trivial handler decodes
// and encodes: the same request fields, and a response of about 300 bytes
// shaped like a payment.
type trivialRequest struct {
	Amount        int64             `json:"amount"`
	Currency      string            `json:"currency"`
	PaymentMethod string            `json:"payment_method"`
	Origin        string            `json:"origin"`
	CaptureMethod string            `json:"capture_method"`
	Metadata      map[string]string `json:"metadata"`
}

type trivialResponse struct {
	ID             string            `json:"id"`
	Merchant       string            `json:"merchant"`
	Amount         int64             `json:"amount"`
	Currency       string            `json:"currency"`
	PaymentMethod  string            `json:"payment_method"`
	Origin         string            `json:"origin"`
	CaptureMethod  string            `json:"capture_method"`
	Status         string            `json:"status"`
	AmountCaptured int64             `json:"amount_captured"`
	AmountRefunded int64             `json:"amount_refunded"`
	Refunds        []string          `json:"refunds"`
	Metadata       map[string]string `json:"metadata"`
	CreatedAt      time.Time         `json:"created_at"`
	UpdatedAt      time.Time         `json:"updated_at"`
}

// trivialHandler is the baseline: a net/http JSON handler that checks the
// two headers, decodes the body and encodes a payment-shaped response.
func trivialHandler() http.Handler {
	var seq atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer sk_a" || r.Header.Get("Idempotency-Key") == "" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		var in trivialRequest
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		now := time.Now().UTC()
		out := trivialResponse{ID: "pay_" + strconv.FormatInt(seq.Add(1), 36), Merchant: "merchant-a", Amount: in.Amount,
			Currency: in.Currency, PaymentMethod: in.PaymentMethod, Origin: in.Origin, CaptureMethod: in.CaptureMethod,
			Status: "captured", AmountCaptured: in.Amount, Refunds: []string{}, Metadata: in.Metadata, CreatedAt: now, UpdatedAt: now}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(out)
	})
}

func benchHTTPTrivial(b *testing.B) { serveCreates(b, trivialHandler(), http.StatusCreated) }

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
