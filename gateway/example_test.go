package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/payrail/payrail/gateway"
	_ "github.com/payrail/payrail/gateway/mock"
)

func ExampleOpen() {
	ctx := context.Background()
	g, err := gateway.Open(ctx, "mock://?latency=1ms&name=psp-test")
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		if err := g.Close(); err != nil {
			log.Print(err)
		}
	}()
	_, err = g.Authorize(ctx, &gateway.AuthorizeRequest{
		IdempotencyKey: "pay_1:authorize", PaymentID: "pay_1", Amount: 1000, Currency: "EUR",
		PaymentMethod: "pm_card_chargeDeclined", CaptureMethod: gateway.CaptureAutomatic,
	})
	var ge *gateway.Error
	if !errors.As(err, &ge) || !errors.Is(err, gateway.ErrDeclined) {
		log.Fatalf("want a decline: %v", err)
	}
	fmt.Println(g.Name(), ge.Kind, ge.DeclineCode, gateway.Retryable(err))
	// Output: psp-test declined card_declined false
}
