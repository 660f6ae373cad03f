package memory_test

import (
	"context"
	"testing"

	"github.com/payrail/payrail/idempotency/driver"
	"github.com/payrail/payrail/idempotency/memory"
	"github.com/payrail/payrail/internal/testkit"
)

func memoryHarness() testkit.IdempotencyHarness {
	return testkit.IdempotencyHarness{
		Open: func(context.Context, testing.TB) (driver.Store, error) { return memory.New(), nil },
		// One process: the multi-client cases share one store.
		SharedClients: false,
	}
}

func TestConformance(t *testing.T) { testkit.RunIdempotencyConformance(t, memoryHarness()) }

func BenchmarkStore(b *testing.B) { testkit.BenchmarkIdempotencyStore(b, memoryHarness()) }
