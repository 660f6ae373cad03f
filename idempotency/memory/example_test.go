package memory_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/idempotency/memory"
)

// The memory store is bounded: when it holds its maximum of unexpired
// records it refuses new keys with an error matching idempotency.ErrFull
// (the payments API answers a retryable 503), while the keys it holds
// are still answered. It never evicts a record before its TTL.
func Example() {
	ctx := context.Background()
	s := idempotency.New(memory.New(memory.WithMaxEntries(1))) // or idempotency.Open(ctx, "memory://?max_entries=1")
	defer func() {
		if err := s.Close(); err != nil {
			log.Print(err)
		}
	}()
	fp := idempotency.Fingerprint("POST", "/payments", []byte(`{"amount":100}`))

	first, err := s.Begin(ctx, &idempotency.BeginRequest{Merchant: "acme", Key: "order-1", Fingerprint: fp, ResourceID: "pay_1"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(first.Outcome)

	_, err = s.Begin(ctx, &idempotency.BeginRequest{Merchant: "acme", Key: "order-2", Fingerprint: fp})
	fmt.Println(errors.Is(err, idempotency.ErrFull))

	// A retry of the key it holds is still answered (here: in progress).
	again, err := s.Begin(ctx, &idempotency.BeginRequest{Merchant: "acme", Key: "order-1", Fingerprint: fp})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(again.Outcome, again.Record.ResourceID)
	// Output:
	// acquired
	// true
	// in_progress pay_1
}
