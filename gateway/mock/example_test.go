package mock_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/mock"
)

// The mock answers by payment method token, like a provider's test cards,
// and honours idempotency keys: the same key and request replay the first
// result. Calls and Processed let tests check what reached the "provider".
func Example() {
	ctx := context.Background()
	m := mock.New() // or gateway.Open(ctx, "mock://?latency=20ms")
	g, err := gateway.New("mock", m)
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		if err := g.Close(); err != nil {
			log.Print(err)
		}
	}()

	req := &gateway.AuthorizeRequest{
		IdempotencyKey: "pay_1:authorize", PaymentID: "pay_1", Amount: 1000, Currency: "EUR",
		PaymentMethod: "pm_card_visa", CaptureMethod: gateway.CaptureManual,
	}
	tx, err := g.Authorize(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	again, err := g.Authorize(ctx, req) // a retry: replayed, not authorized twice
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tx.Status, tx.Amount, again.Reference == tx.Reference)

	_, err = g.Authorize(ctx, &gateway.AuthorizeRequest{
		IdempotencyKey: "pay_2:authorize", PaymentID: "pay_2", Amount: 1000, Currency: "EUR",
		PaymentMethod: "pm_card_expiredCard", CaptureMethod: gateway.CaptureAutomatic,
	})
	var ge *gateway.Error
	if !errors.Is(err, gateway.ErrDeclined) || !errors.As(err, &ge) {
		log.Fatalf("want a decline: %v", err)
	}
	fmt.Println(ge.Kind, ge.DeclineCode)

	fmt.Println(m.Calls("authorize"), m.Processed("pay_"))
	// Output:
	// authorized 1000 true
	// declined expired_card
	// 3 2
}

// FailNext makes the next call lose its answer after the mock processed
// it: the caller sees an ambiguous error (transient, not NotProcessed), and
// Lookup or a retry with the same key finds the one payment made.
func ExampleMock_FailNext() {
	ctx := context.Background()
	m := mock.New()
	g, err := gateway.New("mock", m)
	if err != nil {
		log.Fatal(err)
	}
	req := &gateway.AuthorizeRequest{
		IdempotencyKey: "pay_2:authorize", PaymentID: "pay_2", Amount: 500, Currency: "JPY",
		PaymentMethod: "pm_card_visa", CaptureMethod: gateway.CaptureAutomatic,
	}
	m.FailNext(mock.FaultAnswerLost)
	_, err = g.Authorize(ctx, req)
	var ge *gateway.Error
	if errors.As(err, &ge) {
		fmt.Println(ge.Kind, "not processed:", ge.NotProcessed, "retryable:", gateway.Retryable(err))
	}
	found, err := g.Lookup(ctx, req.IdempotencyKey)
	if err != nil {
		log.Fatal(err)
	}
	retry, err := g.Authorize(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(found.Status, found.Amount, found.Currency, "same payment:", retry.Reference == found.Reference)
	// Output:
	// transient not processed: false retryable: true
	// captured 500 JPY same payment: true
}
