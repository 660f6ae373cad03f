package payments_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/payrail/payrail/payments"
)

// One not-found sentinel per concept: a store answers ErrNotFound, the
// processor's sentinel, and the deprecated ErrStoreNotFound is that same
// value.
func TestStoreNotFoundIsNotFound(t *testing.T) {
	if payments.ErrStoreNotFound != payments.ErrNotFound {
		t.Fatal("ErrStoreNotFound is not ErrNotFound")
	}
	s := payments.NewMemoryStore()
	defer s.Close()
	_, err := s.Get(t.Context(), "acme", "pay_missing")
	wrapped := fmt.Errorf("postgres: get: %w", err)
	if !errors.Is(wrapped, payments.ErrNotFound) {
		t.Fatalf("Get of a missing payment: %v, want an error matching ErrNotFound", err)
	}
	if errors.Is(payments.ErrStoreConflict, payments.ErrNotFound) {
		t.Fatal("a conflict matches ErrNotFound")
	}
}

// A nil or zero Processor returns ErrNotInitialized instead of panicking.
func TestZeroProcessorDoesNotPanic(t *testing.T) {
	ctx := t.Context()
	for name, p := range map[string]*payments.Processor{"nil": nil, "zero": {}} {
		if _, err := p.Authorize(ctx, payments.AuthorizeRequest{}); !errors.Is(err, payments.ErrNotInitialized) {
			t.Errorf("%s Authorize: %v", name, err)
		}
		if _, err := p.Get(ctx, payments.GetRequest{Merchant: "m", PaymentID: "pay_x"}); !errors.Is(err, payments.ErrNotInitialized) {
			t.Errorf("%s Get: %v", name, err)
		}
		if _, err := p.Refund(ctx, payments.RefundRequest{}); !errors.Is(err, payments.ErrNotInitialized) {
			t.Errorf("%s Refund: %v", name, err)
		}
		if err := p.Close(); !errors.Is(err, payments.ErrNotInitialized) {
			t.Errorf("%s Close: %v", name, err)
		}
		if _, err := payments.NewWorker(p); !errors.Is(err, payments.ErrNotInitialized) {
			t.Errorf("%s NewWorker: %v", name, err)
		}
	}
}
