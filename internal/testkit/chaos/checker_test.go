package chaos

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/gateway/driver"
	"github.com/payrail/payrail/payments"
)

// storeWith returns a memory store holding the given payments of merchant m.
func storeWith(t *testing.T, ps ...*payments.Payment) payments.Store {
	t.Helper()
	s := payments.NewMemoryStore()
	for _, p := range ps {
		p.Merchant = "m"
		p.Amount, p.Currency = 100, "EUR"
		p.CreatedAt, p.UpdatedAt = time.Now(), time.Now()
		if err := s.Create(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func charge(ref, pay, order string, st driver.Status) Charge {
	return Charge{Reference: ref, Key: pay + ":authorize", PaymentID: pay, Merchant: "m", Order: order, Status: st, Amount: 100}
}

func accepted(order, pay string) Answer {
	return Answer{Order: order, Merchant: "m", HTTPStatus: 201, PaymentID: pay}
}

// TestCheckConsistent: a run where the store and the provider agree, with
// a replayed answer, a decline, a failure, a void and a payment in review,
// passes.
func TestCheckConsistent(t *testing.T) {
	store := storeWith(t,
		&payments.Payment{ID: "p1", Status: payments.StatusCaptured, GatewayReference: "r1"},
		&payments.Payment{ID: "p2", Status: payments.StatusAuthorized, GatewayReference: "r2"},
		&payments.Payment{ID: "p3", Status: payments.StatusDeclined},
		&payments.Payment{ID: "p4", Status: payments.StatusFailed, FailureCode: "gateway_unavailable"},
		&payments.Payment{ID: "p5", Status: payments.StatusVoided, GatewayReference: "r5"},
		&payments.Payment{ID: "p6", Status: StatusRequiresReview, FailureCode: "outcome_unknown"},
	)
	charges := []Charge{
		charge("r1", "p1", "o1", driver.StatusCaptured),
		charge("r2", "p2", "o2", driver.StatusAuthorized),
		charge("r5", "p5", "o5", driver.StatusVoided),
	}
	answers := []Answer{accepted("o1", "p1"), accepted("o1", "p1"), accepted("o2", "p2"),
		{Order: "o3", Merchant: "m", HTTPStatus: 402, PaymentID: "p3"}, accepted("o4", "p4"),
		{Order: "o5", Merchant: "m", HTTPStatus: 202, PaymentID: "p5", Async: true}, accepted("o6", "p6")}
	r, err := Check(context.Background(), store, charges, answers, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || r.Err() != nil {
		t.Fatalf("consistent run reported violations: %v", r.Err())
	}
	if r.Orders != 6 || r.Payments != 6 || r.Final != 5 || len(r.InReview) != 1 || r.Charges != 2 || r.Answers[201] != 5 {
		t.Fatalf("counts wrong: %s", r)
	}
}

// TestCheckCatchesViolations feeds a deliberately violating ledger and
// store, and expects every violation named.
func TestCheckCatchesViolations(t *testing.T) {
	store := storeWith(t,
		// Two live charges for one payment.
		&payments.Payment{ID: "dup", Status: payments.StatusCaptured, GatewayReference: "r1"},
		// Two payments of one order both charged (an evicted idempotency key).
		&payments.Payment{ID: "a1", Status: payments.StatusCaptured, GatewayReference: "ra1"},
		&payments.Payment{ID: "a2", Status: payments.StatusCaptured, GatewayReference: "ra2"},
		// Accepted, left processing: lost.
		&payments.Payment{ID: "stuck", Status: payments.StatusProcessing},
		// In review without a reason: lost.
		&payments.Payment{ID: "noreason", Status: StatusRequiresReview},
		// Failed in the store, charged at the provider.
		&payments.Payment{ID: "failedcharged", Status: payments.StatusFailed, FailureCode: "gateway_unavailable"},
		// Captured in the store, nothing at the provider.
		&payments.Payment{ID: "phantom", Status: payments.StatusCaptured, GatewayReference: "rx"},
		// Captured in the store, only authorized at the provider.
		&payments.Payment{ID: "half", Status: payments.StatusCaptured, GatewayReference: "rh"},
	)
	charges := []Charge{
		charge("r1", "dup", "o-dup", driver.StatusCaptured),
		charge("r1b", "dup", "o-dup", driver.StatusCaptured),
		charge("ra1", "a1", "o-a", driver.StatusCaptured),
		charge("ra2", "a2", "o-a", driver.StatusCaptured),
		charge("rf", "failedcharged", "o-f", driver.StatusCaptured),
		charge("rh", "half", "o-h", driver.StatusAuthorized),
		charge("rorphan", "orphan", "o-orphan", driver.StatusCaptured),
		charge("rdecl", "p-declined", "o-d", driver.StatusDeclined), // not live: ignored
	}
	answers := []Answer{accepted("o-dup", "dup"), accepted("o-a", "a1"), accepted("o-a", "a2"),
		{Order: "o-s", Merchant: "m", HTTPStatus: 202, PaymentID: "stuck", Async: true},
		accepted("o-n", "noreason"), accepted("o-gone", "gone"), accepted("o-f", "failedcharged"),
		accepted("o-p", "phantom"), accepted("o-h", "half")}
	r, err := Check(context.Background(), store, charges, answers, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = r.Err()
	if r.OK() || !errors.Is(err, ErrViolation) {
		t.Fatalf("violating run passed: %v", err)
	}
	want := map[string][]string{
		"double_charge": {"payment=dup", "order=o-a"},
		"lost":          {"payment=stuck", "payment=noreason", "payment=gone"},
		"mismatch":      {"payment=failedcharged", "payment=phantom", "payment=half", "payment=orphan"},
	}
	got := map[string][]Violation{"double_charge": r.DoubleCharges, "lost": r.Lost, "mismatch": r.Mismatches}
	for inv, subs := range want {
		if len(got[inv]) != len(subs) {
			t.Errorf("%s: %d violations, want %d: %v", inv, len(got[inv]), len(subs), got[inv])
		}
		for _, sub := range subs {
			found := false
			for _, v := range got[inv] {
				if strings.Contains(v.String(), sub) {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: no violation naming %s in %v", inv, sub, got[inv])
			}
		}
	}
	if !strings.Contains(err.Error(), "payment=stuck") {
		t.Errorf("error does not list the violations: %v", err)
	}
}

// TestCheckStoreError: an unreadable store is an error, not a finding.
func TestCheckStoreError(t *testing.T) {
	store := storeWith(t, &payments.Payment{ID: "p1", Status: payments.StatusCaptured, GatewayReference: "r1"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Check(ctx, store, nil, []Answer{accepted("o1", "p1")}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Check with a failing store: %v, want context.Canceled", err)
	}
}
