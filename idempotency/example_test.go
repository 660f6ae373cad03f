package idempotency_test

import (
	"context"
	"fmt"
	"time"

	"github.com/payrail/payrail/idempotency"
	_ "github.com/payrail/payrail/idempotency/memory"
)

func ExampleOpen() {
	ctx := context.Background()
	s, err := idempotency.Open(ctx, "memory://?max_entries=1000")
	if err != nil {
		panic(err)
	}
	defer s.Close()
	fp := idempotency.Fingerprint("POST", "/payments", []byte(`{"amount":100}`))

	first, _ := s.Begin(ctx, &idempotency.BeginRequest{Merchant: "acme", Key: "k1", Fingerprint: fp, ResourceID: "pay_1"})
	fmt.Println(first.Outcome)
	_ = s.Complete(ctx, "acme", "k1", first.Record.Token, &idempotency.Response{StatusCode: 201, Body: []byte(`{"id":"pay_1"}`)}, time.Now(), time.Hour)

	again, _ := s.Begin(ctx, &idempotency.BeginRequest{Merchant: "acme", Key: "k1", Fingerprint: fp})
	fmt.Println(again.Outcome, again.Record.Response.StatusCode, string(again.Record.Response.Body))
	// Output:
	// acquired
	// replay 201 {"id":"pay_1"}
}
