package chaos

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/payments"
)

// commitThenFail is a payment store whose first Create commits and then
// reports a connection error, as PostgreSQL does when the session is
// terminated between COMMIT and its reply (the soak's connection-drop
// fault).
type commitThenFail struct {
	payments.Store
	failed atomic.Bool
}

func (s *commitThenFail) Create(ctx context.Context, p *payments.Payment) error {
	if err := s.Store.Create(ctx, p); err != nil {
		return err
	}
	if s.failed.CompareAndSwap(false, true) {
		return errors.New("unexpected EOF: connection terminated by administrator")
	}
	return nil
}

// TestAmbiguousCreateChargesOnce isolates the sequence the peers soak
// found: a sync payment whose store Create committed but reported an error
// must not let a retry with the same Idempotency-Key create (and charge) a
// second payment while the first one, left processing, is later charged by
// the Reconciler. Invariant (1): one charged payment per order.
func TestAmbiguousCreateChargesOnce(t *testing.T) {
	ctx := context.Background()
	dice := NewDice(1)
	ledger := NewLedger()
	g, err := gateway.New("mock", NewFaultGateway(mock.New(), ledger, dice, Faults{}, 0))
	if err != nil {
		t.Fatal(err)
	}
	mem := payments.NewMemoryStore()
	store := &commitThenFail{Store: mem}
	p, err := payments.New(payments.WithGateway(g), payments.WithStore(store))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	req := payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "order-1", Amount: 500, Currency: "EUR",
		PaymentMethod: "pm_card_visa", Metadata: map[string]string{MetaOrder: "order-1"}}
	var answers []Answer
	for range 2 { // the client retries the 503 with the same key and body
		pay, err := p.Authorize(ctx, req)
		a := Answer{Order: "order-1", Merchant: "m", HTTPStatus: 201}
		var perr *payments.Error
		if errors.As(err, &perr) {
			a.HTTPStatus, a.Code, a.PaymentID = perr.Code.HTTPStatus(), string(perr.Code), perr.PaymentID
		}
		if pay != nil {
			a.PaymentID = pay.ID
		}
		answers = append(answers, a)
		if err == nil {
			break
		}
	}
	// Later, the reconciler finds the first payment processing.
	rec, err := payments.NewReconciler(p, payments.WithReconcileStaleAfter(time.Nanosecond))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond)
	if _, err := rec.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := Check(ctx, mem, ledger.Charges(), answers, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("answers %+v; report %s", answers, r)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
}
