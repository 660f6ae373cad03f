package redis_test

import (
	"context"
	"fmt"
	"log"

	"github.com/payrail/payrail/idempotency"
	_ "github.com/payrail/payrail/idempotency/redis"
)

// Open the store by URL; every service sharing the prefix shares the keys.
func Example() {
	ctx := context.Background()
	s, err := idempotency.Open(ctx, "redis://cache:6379/0?prefix=payrail:idem:")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	res, err := s.Begin(ctx, &idempotency.BeginRequest{Merchant: "acme", Key: "order-1001",
		Fingerprint: idempotency.Fingerprint("POST", "/payments", []byte(`{"amount":1999}`)), ResourceID: "pay_1"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Outcome) // acquired, then replay once completed
}
