package payments_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/payments"
)

// Wait returns an async payment once the worker has settled it, and ctx's
// error (with the payment as last read) when it ends first.
func TestWaitForAnAsyncOutcome(t *testing.T) {
	g, err := gateway.New("mock", mock.New(mock.WithLatency(30*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := payments.New(payments.WithGateway(g), payments.WithMode(payments.ModeAsync))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	pay, err := p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "w", Amount: 100, Currency: "EUR", PaymentMethod: "pm_card_visa"})
	if err != nil || pay.Status != payments.StatusPending {
		t.Fatalf("%+v %v", pay, err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if got, err := p.Wait(short, payments.GetRequest{Merchant: "m", PaymentID: pay.ID}); !errors.Is(err, context.DeadlineExceeded) || got == nil || got.Status != payments.StatusPending {
		t.Fatalf("Wait without a worker: %+v, %v", got, err)
	}
	w, err := payments.NewWorker(p)
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = w.Run(wctx) }()
	got, err := p.Wait(ctx, payments.GetRequest{Merchant: "m", PaymentID: pay.ID})
	if err != nil || got.Status != payments.StatusCaptured {
		t.Fatalf("Wait: %+v, %v", got, err)
	}
	if _, err := p.Wait(ctx, payments.GetRequest{Merchant: "m", PaymentID: "pay_unknown"}); !errors.Is(err, payments.ErrNotFound) {
		t.Fatalf("Wait for an unknown payment: %v", err)
	}
}
