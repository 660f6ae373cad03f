package payments_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/payments"
)

// With the default in-memory bus, a queue that dies with the process, an
// async payment is accepted only while the queue can drain within the
// drain budget at the processing time the worker observes; the rest are
// refused (ErrQueueFull, with Retry-After) rather than answered 202 and
// lost. A graceful shutdown then completes every accepted payment.
func TestAsyncAdmissionIsBoundedByTheDrainBudget(t *testing.T) {
	m := mock.New(mock.WithLatency(40 * time.Millisecond))
	g, err := gateway.New("mock", m)
	if err != nil {
		t.Fatal(err)
	}
	p, err := payments.New(payments.WithGateway(g), payments.WithMode(payments.ModeAsync),
		payments.WithDrainBudget(200*time.Millisecond),
		payments.WithLocalSubscriptionOptions(bus.WithConcurrency(1)))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	w, err := payments.NewWorker(p)
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(context.Background()) }()

	ctx := context.Background()
	var (
		mu       sync.Mutex
		accepted []string
		refused  int
	)
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			pay, err := p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: fmt.Sprintf("k%d", i),
				Amount: 100, Currency: "EUR", PaymentMethod: "pm_card_visa"})
			mu.Lock()
			defer mu.Unlock()
			var pe *payments.Error
			switch {
			case err == nil && pay.Status == payments.StatusPending:
				accepted = append(accepted, pay.ID)
			case errors.Is(err, payments.ErrQueueFull) && errors.As(err, &pe) && pe.RetryAfter >= time.Second:
				refused++
			default:
				t.Errorf("request %d: %+v, %v", i, pay, err)
			}
		})
	}
	wg.Wait()
	if refused == 0 || len(accepted) == 0 {
		t.Fatalf("accepted %d, refused %d: want both", len(accepted), refused)
	}
	// 200ms of 40ms payments, one at a time, is about 5 (the estimate
	// starts at 50ms): far fewer than 40.
	if len(accepted) > 10 {
		t.Fatalf("accepted %d async payments with a 200ms budget at 40ms each", len(accepted))
	}

	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := p.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Shutdown(sctx); err != nil {
		t.Fatalf("worker shutdown: %v", err)
	}
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got, err := p.Unfinished(ctx, time.Now().Add(time.Hour), 0); err != nil || len(got) != 0 {
		t.Fatalf("unfinished after a drained shutdown: %d, %v", len(got), err)
	}
	for _, id := range accepted {
		if n := m.Processed(id + ":authorize"); n != 1 {
			t.Fatalf("payment %s charged %d times, want 1", id, n)
		}
	}
	if _, err := p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "late",
		Amount: 100, Currency: "EUR", PaymentMethod: "pm_card_visa"}); !errors.Is(err, payments.ErrUnavailable) {
		t.Fatalf("after Shutdown: %v, want ErrUnavailable", err)
	}
}

// Shutdown waits for a direct call in flight and its store write: the
// call returns its final result and the store agrees; a call after it is
// refused. (Close alone, before, could return while the call ran, leaving
// it to write into a closed store.)
func TestProcessorShutdownWaitsForCallsInFlight(t *testing.T) {
	m := mock.New(mock.WithLatency(300 * time.Millisecond))
	g, err := gateway.New("mock", m)
	if err != nil {
		t.Fatal(err)
	}
	p, err := payments.New(payments.WithGateway(g))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	type result struct {
		pay *payments.Payment
		err error
	}
	done := make(chan result, 1)
	go func() {
		pay, err := p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "in-flight",
			Amount: 100, Currency: "EUR", PaymentMethod: "pm_card_visa"})
		done <- result{pay, err}
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 150*time.Millisecond {
		t.Fatalf("Shutdown returned after %v, before the call in flight finished", waited)
	}
	// The call's work is over when Shutdown returns: nothing is left
	// unfinished in the store. (Its goroutine may deliver the result a
	// moment later: the call leaves the processor before it returns.)
	if left, err := p.Unfinished(ctx, time.Now().Add(time.Hour), 0); err != nil || len(left) != 0 {
		t.Fatalf("Shutdown returned while the call was still running: %d unfinished, %v", len(left), err)
	}
	select {
	case r := <-done:
		if r.err != nil || r.pay.Status != payments.StatusCaptured {
			t.Fatalf("call in flight: %+v, %v", r.pay, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the call in flight did not return")
	}
	if _, err := p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "after",
		Amount: 100, Currency: "EUR", PaymentMethod: "pm_card_visa"}); !errors.Is(err, payments.ErrUnavailable) {
		t.Fatalf("after Shutdown: %v, want ErrUnavailable", err)
	}
	// A deadline that passes while a call runs is reported.
	p2, _ := payments.New(payments.WithGateway(g))
	defer p2.Close()
	go func() {
		_, _ = p2.Authorize(ctx, payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "slow",
			Amount: 100, Currency: "EUR", PaymentMethod: "pm_card_visa"})
	}()
	time.Sleep(50 * time.Millisecond)
	sctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := p2.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown past its deadline: %v", err)
	}
}

// Between Shutdown and Close the processor takes no new operations but
// still answers reads, so that a caller waiting for an async payment the
// worker's drain completes gets its outcome; after Close reads fail too.
func TestReadsAnswerDuringTheDrain(t *testing.T) {
	p := newProcessor(t, mockGateway(t, mock.New()))
	ctx := context.Background()
	pay, err := p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "drain-read", Amount: 100, Currency: "EUR", PaymentMethod: "pm_card_visa"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "drain-new", Amount: 100, Currency: "EUR", PaymentMethod: "pm_card_visa"}); !errors.Is(err, payments.ErrUnavailable) {
		t.Fatalf("Authorize after Shutdown: %v; want ErrUnavailable", err)
	}
	got, err := p.Wait(ctx, payments.GetRequest{Merchant: "m", PaymentID: pay.ID})
	if err != nil || got.Status != payments.StatusCaptured {
		t.Fatalf("Wait after Shutdown: %+v, %v; want the captured payment", got, err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Get(ctx, payments.GetRequest{Merchant: "m", PaymentID: pay.ID}); !errors.Is(err, payments.ErrUnavailable) {
		t.Fatalf("Get after Close: %v; want ErrUnavailable", err)
	}
}

// closingStore is the memory store that refuses every Update once closed,
// as a real store closed under a call in flight does.
type closingStore struct {
	*payments.MemoryStore
	closed atomic.Bool
}

func (s *closingStore) Update(ctx context.Context, p *payments.Payment) error {
	if s.closed.Load() {
		return errors.New("payment store closed")
	}
	return s.MemoryStore.Update(ctx, p)
}

// The scenario without Shutdown: the store closes while a sync
// Authorize is at the gateway (which captures). The call must not return
// "captured" next to payment_outcome_unknown: it returns the payment as
// stored, processing, and a retry with the same key resumes it.
func TestUnstoredOutcomeIsNeverReportedAsFinal(t *testing.T) {
	m := mock.New(mock.WithLatency(200 * time.Millisecond))
	st := &closingStore{MemoryStore: payments.NewMemoryStore()}
	p := newProcessor(t, mockGateway(t, m), payments.WithStore(st))
	ctx := context.Background()
	done := make(chan struct{})
	var pay *payments.Payment
	var err error
	go func() {
		defer close(done)
		pay, err = p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "closing",
			Amount: 100, Currency: "EUR", PaymentMethod: "pm_card_visa"})
	}()
	time.Sleep(50 * time.Millisecond)
	st.closed.Store(true)
	<-done
	if !errors.Is(err, payments.ErrOutcomeUnknown) || pay == nil || pay.Status != payments.StatusProcessing {
		t.Fatalf("Authorize with the store closed under it: %v with status %v; want ErrOutcomeUnknown with the stored status processing",
			err, statusOf(pay))
	}
	stored, gerr := st.Get(ctx, "m", pay.ID)
	if gerr != nil || stored.Status != payments.StatusProcessing {
		t.Fatalf("stored: %+v, %v", stored, gerr)
	}
}

func statusOf(p *payments.Payment) payments.Status {
	if p == nil {
		return ""
	}
	return p.Status
}
