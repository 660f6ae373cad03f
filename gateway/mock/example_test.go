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
