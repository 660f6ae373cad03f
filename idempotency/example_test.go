package idempotency_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/payrail/payrail/idempotency"
	_ "github.com/payrail/payrail/idempotency/memory"
)

func ExampleOpen() {
	ctx := context.Background()
	s, err := idempotency.Open(ctx, "memory://?max_entries=1000")
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			log.Print(err)
		}
	}()
	fp := idempotency.Fingerprint("POST", "/payments", []byte(`{"amount":100}`))

	first, err := s.Begin(ctx, &idempotency.BeginRequest{Merchant: "acme", Key: "k1", Fingerprint: fp, ResourceID: "pay_1"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(first.Outcome)
	resp := &idempotency.Response{StatusCode: 201, Body: []byte(`{"id":"pay_1"}`)}
	if err := s.Complete(ctx, idempotency.CompleteRequest{Merchant: "acme", Key: "k1", Token: first.Record.Token, Response: resp, Now: time.Now(), TTL: time.Hour}); err != nil {
		log.Fatal(err)
	}

	again, err := s.Begin(ctx, &idempotency.BeginRequest{Merchant: "acme", Key: "k1", Fingerprint: fp})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(again.Outcome, again.Record.Response.StatusCode, string(again.Record.Response.Body))
	// Output:
	// acquired
	// replay 201 {"id":"pay_1"}
}
