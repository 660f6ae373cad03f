package payments_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/payments"
	"github.com/payrail/payrail/webhook"
)

// benchProcessor returns a processor over the default stores and, with
// events, recording them: its worker consumes the notifications (without
// delivering them: delivery is BenchmarkWebhookDelivery's, in worker
// processes), as an API server's in-process worker does.
func benchProcessor(b *testing.B, events bool) *payments.Processor {
	b.Helper()
	opts := []payments.Option{payments.WithGateway(mockGateway(&testing.T{}, mock.New())), benchIdempotency()}
	if events {
		opts = append(opts, payments.WithEvents())
	}
	p, err := payments.New(opts...)
	if err != nil {
		b.Fatal(err)
	}
	w, err := payments.NewWorker(p)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		<-done
		_ = p.Close()
	})
	return p
}

// BenchmarkWebhooksSyncPath compares the synchronous path with event
// recording off and on, in the same run: Authorize in-process and POST
// /payments through the real handler. With events, every authorization
// records payment.captured in the payment's store write (the outbox; no
// bus message: a worker's sweep finds it). Issue 20's goal: on ≥ 0.9× off.
//
//	go test -run '^$' -bench 'WebhooksSyncPath' -benchmem ./payments
func BenchmarkWebhooksSyncPath(b *testing.B) {
	for _, mode := range []string{"off", "on"} {
		b.Run("Authorize/events="+mode, func(b *testing.B) { benchAuthorize(b, benchProcessor(b, mode == "on")) })
		b.Run("HTTPCreatePayment/events="+mode, func(b *testing.B) { benchHTTPCreate(b, benchProcessor(b, mode == "on")) })
	}
}

// BenchmarkWebhookDelivery measures deliveries to a local receiver: each
// op is one event delivered by Worker.DeliverEvents (read the payment,
// sign, POST over loopback HTTP to a receiver that verifies the signature,
// store the result), several payments at once as a worker's concurrent
// handlers do. The events are recorded before the timer starts.
//
//	go test -run '^$' -bench 'WebhookDelivery' -benchmem ./payments
func BenchmarkWebhookDelivery(b *testing.B) {
	sec, err := webhook.NewSecret()
	if err != nil {
		b.Fatal(err)
	}
	v, err := webhook.NewVerifier([]string{sec.Reveal()})
	if err != nil {
		b.Fatal(err)
	}
	var received atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := make([]byte, 0, 2048)
		buf := make([]byte, 2048)
		for {
			n, err := r.Body.Read(buf)
			body = append(body, buf[:n]...)
			if err != nil {
				break
			}
		}
		if err := v.Verify(r.Header, body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		received.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	client := loopbackClient(&testing.T{}, webhook.WithConcurrency(64))
	defer client.Close()

	store := payments.NewMemoryStore()
	p, err := payments.New(payments.WithGateway(mockGateway(&testing.T{}, mock.New())), payments.WithStore(store),
		payments.WithEvents(), payments.WithRecoveryPolicy(payments.RecoveryPolicy{SweepInterval: -1}))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	w, err := payments.NewWorker(p, payments.WithWebhooks(payments.Webhooks{
		Endpoints:     payments.StaticEndpoints{{ID: "ep", Merchant: "m", URL: srv.URL, Secrets: []webhook.Secret{sec}, Enabled: true}},
		Client:        client,
		SweepInterval: time.Hour, // the benchmark delivers, not the sweep
	}))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ids := make([]string, b.N)
	for i := range ids {
		pay, err := p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "d" + strconv.Itoa(i),
			Amount: 1999, Currency: "EUR", PaymentMethod: "pm_card_visa"})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = pay.ID
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.SetParallelism(8) // a worker's concurrent handlers, waiting on the network
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := ids[next.Add(1)-1]
			if n, err := w.DeliverEvents(ctx, "m", id); err != nil || n != 1 {
				b.Fatalf("DeliverEvents = %d, %v", n, err)
			}
		}
	})
	b.StopTimer()
	if got := received.Load(); got != int64(b.N) {
		b.Fatalf("the receiver verified %d deliveries, want %d", got, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
}
