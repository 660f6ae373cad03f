package payments

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// mirrors of Payment and Refund without MarshalJSON, encoded by
// encoding/json as the reference the hand-written encoder must match.
type refundMirror struct {
	ID               string    `json:"id"`
	PaymentID        string    `json:"payment_id"`
	Amount           int64     `json:"amount"`
	Currency         string    `json:"currency"`
	Status           string    `json:"status"`
	GatewayReference string    `json:"gateway_reference,omitempty"`
	CreatedAt        time.Time `json:"created_at"`
}

type paymentMirror struct {
	ID               string            `json:"id"`
	Merchant         string            `json:"merchant"`
	Amount           int64             `json:"amount"`
	Currency         string            `json:"currency"`
	PaymentMethod    string            `json:"payment_method"`
	Origin           string            `json:"origin"`
	CaptureMethod    CaptureMethod     `json:"capture_method"`
	Status           Status            `json:"status"`
	Gateway          string            `json:"gateway,omitempty"`
	GatewayReference string            `json:"gateway_reference,omitempty"`
	DeclineCode      string            `json:"decline_code,omitempty"`
	FailureCode      string            `json:"failure_code,omitempty"`
	AmountCaptured   int64             `json:"amount_captured"`
	AmountRefunded   int64             `json:"amount_refunded"`
	Refunds          []refundMirror    `json:"refunds"`
	Metadata         map[string]string `json:"metadata"`
	CreatedAt        time.Time         `json:"created_at"`
	UpdatedAt        time.Time         `json:"updated_at"`
}

func reference(t testing.TB, p *Payment) []byte {
	m := paymentMirror{
		ID: p.ID, Merchant: p.Merchant, Amount: p.Amount, Currency: p.Currency, PaymentMethod: p.PaymentMethod,
		Origin: p.Origin, CaptureMethod: p.CaptureMethod, Status: p.Status, Gateway: p.Gateway,
		GatewayReference: p.GatewayReference, DeclineCode: p.DeclineCode, FailureCode: p.FailureCode,
		AmountCaptured: p.AmountCaptured, AmountRefunded: p.AmountRefunded, Metadata: p.Metadata,
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt,
	}
	if m.Metadata == nil {
		m.Metadata = map[string]string{} // payments encode nil metadata as {}
	}
	if p.Refunds != nil {
		m.Refunds = []refundMirror{}
		for _, r := range p.Refunds {
			m.Refunds = append(m.Refunds, refundMirror(r))
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func samplePayment(s string) *Payment {
	at := time.Date(2026, 11, 26, 22, 4, 31, 109684988, time.UTC)
	return &Payment{
		ID: "pay_" + s, Merchant: s, Amount: 1999, Currency: "EUR", PaymentMethod: s, Origin: s,
		CaptureMethod: CaptureManual, Status: StatusCaptured, Gateway: s, GatewayReference: s,
		DeclineCode: s, FailureCode: s, AmountCaptured: 1999, AmountRefunded: 100,
		Refunds:   []Refund{{ID: "re_" + s, PaymentID: "pay_" + s, Amount: 100, Currency: "EUR", Status: "succeeded", GatewayReference: s, CreatedAt: at}},
		Metadata:  map[string]string{s: s, "b": "2", "a": s + "1"},
		CreatedAt: at, UpdatedAt: at.Add(time.Second).In(time.FixedZone("X", 3600)),
	}
}

func TestEncodeMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " and \ backslash`, "ctl \x00\x01\x1f \b\f\n\r\t", "<html>&amp;",
		"utf8 ñ 漢字 🙂", "bad \xff\xfe utf8", "line sep \u2028 para \u2029", "\x7f del",
	} {
		p := samplePayment(s)
		got := p.appendJSON(nil)
		if want := reference(t, p); !bytes.Equal(got, want) {
			t.Errorf("%q:\n got %s\nwant %s", s, got, want)
		}
	}
	// Optional fields empty, nil refunds and metadata.
	p := &Payment{ID: "pay_1", Status: StatusPending}
	if got, want := p.appendJSON(nil), reference(t, p); !bytes.Equal(got, want) {
		t.Errorf("sparse payment:\n got %s\nwant %s", got, want)
	}
	// The encoding round-trips through encoding/json.
	var back Payment
	if err := json.Unmarshal(samplePayment("x").appendJSON(nil), &back); err != nil || back.AmountRefunded != 100 || back.Metadata["a"] != "x1" {
		t.Fatalf("round trip: %v %+v", err, back)
	}
}

func FuzzEncodeMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{"a", "\"\\", "\xff", "\u2028", "\x00"} {
		f.Add(s, int64(1))
	}
	f.Fuzz(func(t *testing.T, s string, n int64) {
		p := samplePayment(s)
		p.Amount = n
		if got, want := p.appendJSON(nil), reference(t, p); !bytes.Equal(got, want) {
			t.Fatalf("%q:\n got %s\nwant %s", s, got, want)
		}
	})
}
