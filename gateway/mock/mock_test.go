package mock_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/mock"
)

func open(t *testing.T, u string) *gateway.Gateway {
	t.Helper()
	g, err := gateway.Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return g
}

func auth(key, pm string, capture gateway.CaptureMethod) *gateway.AuthorizeRequest {
	return &gateway.AuthorizeRequest{IdempotencyKey: key, PaymentID: "pay_1", Merchant: "m", Amount: 1000, Currency: "EUR", PaymentMethod: pm, CaptureMethod: capture}
}

func TestDeterministicOutcomes(t *testing.T) {
	g := open(t, "mock://")
	ctx := context.Background()
	tx, err := g.Authorize(ctx, auth("a", "pm_card_visa", gateway.CaptureAutomatic))
	if err != nil || tx.Status != gateway.StatusCaptured || tx.AmountCaptured != 1000 || tx.Reference == "" {
		t.Fatalf("visa: %+v %v", tx, err)
	}
	for pm, code := range map[string]string{"pm_card_chargeDeclined": "card_declined", "pm_card_insufficientFunds": "insufficient_funds"} {
		_, err := g.Authorize(ctx, auth("d-"+pm, pm, gateway.CaptureAutomatic))
		var ge *gateway.Error
		if !errors.Is(err, gateway.ErrDeclined) || !errors.As(err, &ge) || ge.DeclineCode != code || !ge.NotProcessed {
			t.Fatalf("%s: %v", pm, err)
		}
		lt, lerr := g.Lookup(ctx, "d-"+pm)
		if lerr != nil || lt.Status != gateway.StatusDeclined || lt.DeclineCode != code {
			t.Fatalf("lookup of decline: %+v %v", lt, lerr)
		}
	}
	_, err = g.Authorize(ctx, auth("p", "pm_card_processingError", gateway.CaptureAutomatic))
	if !errors.Is(err, gateway.ErrTransient) || !gateway.Retryable(err) {
		t.Fatalf("processing error: %v", err)
	}
	if _, err := g.Lookup(ctx, "p"); !errors.Is(err, gateway.ErrNotFound) {
		t.Fatalf("transient failure must not be recorded: %v", err)
	}
	if _, err := g.Authorize(ctx, auth("x", "tok_raw", gateway.CaptureAutomatic)); !errors.Is(err, gateway.ErrInvalidRequest) {
		t.Fatalf("bad token: %v", err)
	}
}

func TestIdempotencyAndLifecycle(t *testing.T) {
	g := open(t, "mock://?name=psp-a")
	if g.Name() != "psp-a" {
		t.Fatalf("name %q", g.Name())
	}
	var m *mock.Mock
	if !g.As(&m) {
		t.Fatal("As(**Mock) failed")
	}
	ctx := context.Background()
	a, err := g.Authorize(ctx, auth("k", "pm_card_visa", gateway.CaptureManual))
	if err != nil || a.Status != gateway.StatusAuthorized {
		t.Fatal(a, err)
	}
	b, err := g.Authorize(ctx, auth("k", "pm_card_visa", gateway.CaptureManual))
	if err != nil || b.Reference != a.Reference || m.Processed("k") != 1 {
		t.Fatalf("replay: %+v %v", b, err)
	}
	other := auth("k", "pm_card_visa", gateway.CaptureManual)
	other.Amount = 5
	if _, err := g.Authorize(ctx, other); !errors.Is(err, gateway.ErrInvalidRequest) {
		t.Fatalf("key reuse: %v", err)
	}
	if _, err := g.Capture(ctx, &gateway.CaptureRequest{IdempotencyKey: "c0", Reference: a.Reference, Amount: 1001, Currency: "EUR"}); !errors.Is(err, gateway.ErrInvalidRequest) {
		t.Fatalf("over-capture: %v", err)
	}
	c, err := g.Capture(ctx, &gateway.CaptureRequest{IdempotencyKey: "c1", Reference: a.Reference, Amount: 600, Currency: "EUR"})
	if err != nil || c.Status != gateway.StatusCaptured || c.AmountCaptured != 600 {
		t.Fatalf("capture: %+v %v", c, err)
	}
	if _, err := g.Void(ctx, &gateway.VoidRequest{IdempotencyKey: "v", Reference: a.Reference}); !errors.Is(err, gateway.ErrInvalidRequest) {
		t.Fatalf("void after capture: %v", err)
	}
	r1, err := g.Refund(ctx, &gateway.RefundRequest{IdempotencyKey: "r1", Reference: a.Reference, Amount: 200, Currency: "EUR"})
	if err != nil || r1.AmountRefunded != 200 || r1.Status != gateway.StatusCaptured || r1.RefundReference == "" {
		t.Fatalf("refund: %+v %v", r1, err)
	}
	if _, err := g.Refund(ctx, &gateway.RefundRequest{IdempotencyKey: "r2", Reference: a.Reference, Amount: 401, Currency: "EUR"}); !errors.Is(err, gateway.ErrInvalidRequest) {
		t.Fatalf("over-refund: %v", err)
	}
	r3, err := g.Refund(ctx, &gateway.RefundRequest{IdempotencyKey: "r3", Reference: a.Reference, Amount: 400, Currency: "EUR"})
	if err != nil || r3.Status != gateway.StatusRefunded {
		t.Fatalf("full refund: %+v %v", r3, err)
	}
	again, err := g.Refund(ctx, &gateway.RefundRequest{IdempotencyKey: "r1", Reference: a.Reference, Amount: 200, Currency: "EUR"})
	if err != nil || again.RefundReference != r1.RefundReference {
		t.Fatalf("refund replay: %+v %v", again, err)
	}
	if _, err := g.Capture(ctx, &gateway.CaptureRequest{Reference: "nope", Amount: 1, Currency: "EUR"}); !errors.Is(err, gateway.ErrNotFound) {
		t.Fatalf("unknown reference: %v", err)
	}
}

func TestFaultInjection(t *testing.T) {
	g := open(t, "mock://?fail_rate=1&seed=7")
	_, err := g.Authorize(context.Background(), auth("f", "pm_card_visa", gateway.CaptureAutomatic))
	var ge *gateway.Error
	if !errors.As(err, &ge) || ge.Kind != gateway.KindTransient || !ge.NotProcessed {
		t.Fatalf("injected failure: %v", err)
	}
	slow := open(t, "mock://?latency=200ms")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = slow.Authorize(ctx, auth("s", "pm_card_visa", gateway.CaptureAutomatic))
	if !errors.Is(err, gateway.ErrTransient) || time.Since(start) > 150*time.Millisecond {
		t.Fatalf("latency with deadline: %v after %v", err, time.Since(start))
	}
	var m *mock.Mock
	slow.As(&m)
	if m.Processed("s") != 0 {
		t.Fatal("cancelled call was processed")
	}
	for _, bad := range []string{"mock://?latency=-1s", "mock://?fail_rate=2", "mock://?seed=x", "mock://?color=red", "mock://?name=Bad%20Name"} {
		if _, err := gateway.Open(context.Background(), bad); err == nil {
			t.Errorf("%s: expected an error", bad)
		}
	}
}

func TestUnknownDriver(t *testing.T) {
	_, err := gateway.Open(context.Background(), "stripe://")
	if !errors.Is(err, gateway.ErrUnknownDriver) {
		t.Fatalf("err %v", err)
	}
	want := `github.com/payrail/payrail/gateway/stripe`
	if got := err.Error(); !contains(got, want) || !contains(got, "mock") {
		t.Fatalf("message %q should list registered drivers and the import to add", got)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// Concurrent operations on many keys and payments must not deadlock on the
// mock's sharded state.
func TestConcurrentUse(t *testing.T) {
	g := open(t, "mock://")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan struct{})
	for w := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 500 {
				key := strings.Repeat("k", w+1) + string(rune('a'+i%26)) + time.Now().String()
				tx, err := g.Authorize(ctx, auth(key, "pm_card_visa", gateway.CaptureManual))
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := g.Capture(ctx, &gateway.CaptureRequest{IdempotencyKey: key + ":c", Reference: tx.Reference, Amount: 1000, Currency: "EUR"}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for range 8 {
		select {
		case <-done:
		case <-ctx.Done():
			t.Fatal("deadlock: concurrent authorizations did not finish")
		}
	}
}

// A replayed authorization returns the first result, even after the payment
// moved on, and every call is counted by operation.
func TestReplayAfterCapture(t *testing.T) {
	g := open(t, "mock://")
	var m *mock.Mock
	g.As(&m)
	ctx := context.Background()
	a, err := g.Authorize(ctx, auth("ra", "pm_card_visa", gateway.CaptureManual))
	if err != nil || a.Status != gateway.StatusAuthorized {
		t.Fatal(a, err)
	}
	if _, err := g.Capture(ctx, &gateway.CaptureRequest{IdempotencyKey: "ra:c", Reference: a.Reference, Amount: 300, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	again, err := g.Authorize(ctx, auth("ra", "pm_card_visa", gateway.CaptureManual))
	if err != nil || *again != *a {
		t.Fatalf("replay after capture: %+v %v, want %+v", again, err, a)
	}
	again.Status = gateway.StatusVoided // results are copies
	lk, err := g.Lookup(ctx, "ra")
	if err != nil || *lk != *a {
		t.Fatalf("lookup: %+v %v, want %+v", lk, err, a)
	}
	lc, err := g.Lookup(ctx, "ra:c")
	if err != nil || lc.Status != gateway.StatusCaptured || lc.AmountCaptured != 300 || lc.Reference != a.Reference {
		t.Fatalf("lookup of the capture: %+v %v", lc, err)
	}
	if _, err := g.Authorize(ctx, auth("ra", "pm_card_visa", gateway.CaptureAutomatic)); !errors.Is(err, gateway.ErrInvalidRequest) {
		t.Fatalf("key reused with another capture method: %v", err)
	}
	if _, err := g.Lookup(ctx, "never"); !errors.Is(err, gateway.ErrNotFound) {
		t.Fatalf("lookup of an unknown key: %v", err)
	}
	for op, want := range map[string]int{"authorize": 3, "capture": 1, "void": 0, "refund": 0, "lookup": 3, "other": 0} {
		if got := m.Calls(op); got != want {
			t.Errorf("Calls(%q) = %d, want %d", op, got, want)
		}
	}
	if m.Processed("ra") != 2 || m.Processed("ra:") != 1 || m.Processed("") != 2 {
		t.Errorf("Processed: ra %d, ra: %d, all %d; want 2, 1, 2", m.Processed("ra"), m.Processed("ra:"), m.Processed(""))
	}
}

// A declined authorization is kept: its replay returns the same decline,
// and its payment cannot be captured.
func TestDeclineKept(t *testing.T) {
	g := open(t, "mock://")
	ctx := context.Background()
	_, err := g.Authorize(ctx, auth("dk", "pm_card_expiredCard", gateway.CaptureManual))
	var first *gateway.Error
	if !errors.As(err, &first) || first.Kind != gateway.KindDeclined || first.DeclineCode != "expired_card" {
		t.Fatalf("decline: %v", err)
	}
	_, err = g.Authorize(ctx, auth("dk", "pm_card_expiredCard", gateway.CaptureManual))
	var again *gateway.Error
	if !errors.As(err, &again) || *again != *first {
		t.Fatalf("replayed decline: %v, want %v", err, first)
	}
	tx, err := g.Lookup(ctx, "dk")
	if err != nil || tx.Status != gateway.StatusDeclined || !strings.HasPrefix(tx.Reference, "pi_mock_") {
		t.Fatalf("lookup: %+v %v", tx, err)
	}
	if _, err := g.Capture(ctx, &gateway.CaptureRequest{IdempotencyKey: "dk:c", Reference: tx.Reference, Amount: 1000, Currency: "EUR"}); !errors.Is(err, gateway.ErrInvalidRequest) {
		t.Fatalf("capture of a declined payment: %v", err)
	}
}

// Without an idempotency key every call is a new payment and nothing is
// remembered by key.
func TestAuthorizeWithoutKey(t *testing.T) {
	g := open(t, "mock://")
	var m *mock.Mock
	g.As(&m)
	ctx := context.Background()
	a, err := g.Authorize(ctx, auth("", "pm_card_visa", gateway.CaptureManual))
	if err != nil {
		t.Fatal(err)
	}
	b, err := g.Authorize(ctx, auth("", "pm_card_visa", gateway.CaptureManual))
	if err != nil || b.Reference == a.Reference {
		t.Fatalf("second authorization without a key: %+v %v (first %s)", b, err, a.Reference)
	}
	for _, tx := range []*gateway.Transaction{a, b} {
		c, err := g.Capture(ctx, &gateway.CaptureRequest{Reference: tx.Reference, Amount: 1000, Currency: "EUR"})
		if err != nil || c.Status != gateway.StatusCaptured {
			t.Fatalf("capture %s: %+v %v", tx.Reference, c, err)
		}
	}
	if _, err := g.Lookup(ctx, ""); !errors.Is(err, gateway.ErrNotFound) {
		t.Fatalf("lookup of the empty key: %v", err)
	}
	if n := m.Processed(""); n != 0 {
		t.Fatalf("Processed %d, want 0", n)
	}
}
