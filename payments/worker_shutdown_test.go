package payments_test

import (
	"context"
	"testing"
	"time"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/payments"
)

// When Worker.Shutdown's grace ends with a command in flight, the command's
// context is cancelled: its gateway call stops, Run returns soon instead of
// after the call's full latency, and the payment is left resumable (not
// failed).
func TestWorkerShutdownCancelsCommandsInFlight(t *testing.T) {
	m := mock.New(mock.WithLatency(time.Minute))
	g, err := gateway.New("mock", m)
	if err != nil {
		t.Fatal(err)
	}
	p, err := payments.New(payments.WithGateway(g), payments.WithMode(payments.ModeAsync))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	w, err := payments.NewWorker(p, payments.WithDrainOnShutdown(false))
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(context.Background()) }()
	ctx := context.Background()
	pay, err := p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "k-slow",
		Amount: 100, Currency: "EUR", PaymentMethod: "pm_card_visa"})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the worker is in the gateway call

	sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := w.Shutdown(sctx); err == nil {
		t.Fatal("worker Shutdown with a command in flight past its grace returned nil")
	}
	select {
	case <-runErr:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of the grace ending: the command's gateway call was not cancelled")
	}
	got, err := p.Get(ctx, payments.GetRequest{Merchant: "m", PaymentID: pay.ID})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != payments.StatusPending && got.Status != payments.StatusProcessing {
		t.Errorf("payment after a cancelled command: %s, want pending or processing (resumable)", got.Status)
	}
}
