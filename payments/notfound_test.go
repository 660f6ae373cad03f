package payments_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/payrail/payrail/payments"
)

// One not-found sentinel per concept for callers: a store's not-found
// matches the processor's.
func TestStoreNotFoundMatchesNotFound(t *testing.T) {
	wrapped := fmt.Errorf("postgres: get: %w", payments.ErrStoreNotFound)
	if !errors.Is(wrapped, payments.ErrStoreNotFound) || !errors.Is(wrapped, payments.ErrNotFound) {
		t.Fatalf("errors.Is(%v, ErrStoreNotFound / ErrNotFound) = %v / %v", wrapped,
			errors.Is(wrapped, payments.ErrStoreNotFound), errors.Is(wrapped, payments.ErrNotFound))
	}
	if errors.Is(payments.ErrStoreConflict, payments.ErrNotFound) {
		t.Fatal("a conflict matches ErrNotFound")
	}
}
