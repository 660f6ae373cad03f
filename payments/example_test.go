package payments_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/payrail/payrail/gateway"
	_ "github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/payments"
)

// A processor needs a gateway; the bus and stores default to in-memory.
func ExampleNew() {
	ctx := context.Background()
	g, err := gateway.Open(ctx, "mock://")
	if err != nil {
		panic(err)
	}
	p, err := payments.New(payments.WithGateway(g))
	if err != nil {
		panic(err)
	}
	defer p.Close()

	pay, err := p.Authorize(ctx, payments.AuthorizeRequest{
		Merchant:       "acme",
		IdempotencyKey: "order-1001",
		Amount:         1999, // 19.99 EUR in minor units
		Currency:       "EUR",
		PaymentMethod:  "pm_card_visa",
		Origin:         "web",
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(pay.Status, pay.AmountCaptured, pay.Currency)
	// Output: captured 1999 EUR
}

// Declines are errors matching payments.ErrDeclined, with the declined
// payment returned alongside.
func ExampleProcessor_Authorize_declined() {
	ctx := context.Background()
	g, _ := gateway.Open(ctx, "mock://")
	p, _ := payments.New(payments.WithGateway(g))
	defer p.Close()

	pay, err := p.Authorize(ctx, payments.AuthorizeRequest{
		Merchant: "acme", IdempotencyKey: "order-1002",
		Amount: 500, Currency: "USD", PaymentMethod: "pm_card_insufficientFunds",
	})
	var perr *payments.Error
	if errors.Is(err, payments.ErrDeclined) && errors.As(err, &perr) {
		fmt.Println(pay.Status, perr.DeclineCode)
	}
	// Output: declined insufficient_funds
}

// Asynchronous payments are completed by a Worker consuming the bus.
func ExampleNewWorker() {
	ctx := context.Background()
	g, _ := gateway.Open(ctx, "mock://")
	p, _ := payments.New(payments.WithGateway(g))
	defer p.Close()
	w, err := payments.NewWorker(p) // consumes the processor's in-memory bus
	if err != nil {
		panic(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- w.Run(wctx) }()

	pay, _ := p.Authorize(ctx, payments.AuthorizeRequest{
		Merchant: "acme", IdempotencyKey: "order-1003", Mode: payments.ModeAsync,
		Amount: 1200, Currency: "GBP", PaymentMethod: "pm_card_visa",
	})
	fmt.Println(pay.Status)
	for pay.Status == payments.StatusPending || pay.Status == payments.StatusProcessing {
		time.Sleep(time.Millisecond)
		pay, _ = p.Get(ctx, payments.GetRequest{Merchant: "acme", PaymentID: pay.ID})
	}
	fmt.Println(pay.Status)
	stop()
	<-done
	// Output:
	// pending
	// captured
}

// The HTTP API is an http.Handler.
func ExampleNewHandler() {
	ctx := context.Background()
	g, _ := gateway.Open(ctx, "mock://")
	p, _ := payments.New(payments.WithGateway(g))
	defer p.Close()
	auth, _ := payments.APIKeys(map[string]string{"sk_test_123": "acme"}, nil)
	h, err := payments.NewHandler(p, auth)
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	req, _ := http.NewRequest("POST", srv.URL+"/payments",
		strings.NewReader(`{"amount":1999,"currency":"EUR","payment_method":"pm_card_visa","origin":"web"}`))
	req.Header.Set("Authorization", "Bearer sk_test_123")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "order-1004")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	res.Body.Close()
	fmt.Println(res.StatusCode, strings.HasPrefix(res.Header.Get("Location"), "/payments/pay_"))
	// Output: 201 true
}
