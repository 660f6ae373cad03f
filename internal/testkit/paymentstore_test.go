package testkit_test

import (
	"context"
	"testing"

	"github.com/payrail/payrail/internal/testkit"
	"github.com/payrail/payrail/payments"
)

// TestPaymentStoreConformanceMemory runs the payment store suite against
// payments.MemoryStore, the reference implementation.
func TestPaymentStoreConformanceMemory(t *testing.T) {
	testkit.RunPaymentStoreConformance(t, testkit.PaymentStoreHarness{
		Open: func(context.Context, testing.TB) (payments.Store, error) { return payments.NewMemoryStore(), nil },
	})
}
