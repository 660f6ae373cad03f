package bench

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// PayBody is the request body of every POST /payments the benchmarks and
// the load generator send, to payrail and to the trivial handler.
const PayBody = `{"amount":1999,"currency":"EUR","payment_method":"pm_card_visa","origin":"web","capture_method":"automatic","metadata":{"order":"42"}}`

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

// TrivialHandler is the baseline of the HTTP rows: a net/http JSON handler
// that checks the two headers (Authorization: Bearer sk_a, an
// Idempotency-Key), decodes the body and encodes a payment-shaped response
// of about 300 bytes with status 201. It stores nothing.
func TrivialHandler() http.Handler {
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
