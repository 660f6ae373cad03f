package payments_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"time"

	"github.com/payrail/payrail/payments"
	"github.com/payrail/payrail/webhook"
)

// Merchants hear about payments by webhook: the processor records an
// event with every state change (WithEvents), a worker delivers it signed
// (WithWebhooks), and the merchant's endpoint verifies it with the webhook
// package.
func ExampleWithWebhooks() {
	// The merchant's endpoint (here a local server) verifies every
	// delivery.
	secret, err := webhook.NewSecret()
	if err != nil {
		log.Fatal(err)
	}
	verifier, err := webhook.NewVerifier([]string{secret.Reveal()})
	if err != nil {
		log.Fatal(err)
	}
	got := make(chan *webhook.Event, 1)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := verifier.Verify(r.Header, body); err != nil {
			http.Error(w, "bad signature", http.StatusBadRequest)
			return
		}
		ev, err := webhook.ParseEvent(body)
		if err != nil {
			http.Error(w, "bad event", http.StatusBadRequest)
			return
		}
		got <- ev
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()

	p, closeAll, err := newMockProcessor(payments.WithEvents())
	if err != nil {
		log.Fatal(err)
	}
	defer closeAll()
	// Production endpoints are https on public addresses; this one is
	// local, so the client is told to allow it.
	client, err := webhook.NewClient(webhook.AllowInsecureHTTP(), webhook.WithAllowedNetworks(netip.MustParsePrefix("127.0.0.0/8")))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	w, err := payments.NewWorker(p, payments.WithWebhooks(payments.Webhooks{
		Endpoints: payments.StaticEndpoints{{ID: "ep_1", Merchant: "acme", URL: receiver.URL,
			Secrets: []webhook.Secret{secret}, Enabled: true}},
		Client: client,
	}))
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	pay, err := p.Authorize(context.Background(), payments.AuthorizeRequest{
		Merchant: "acme", IdempotencyKey: "order-2001", Amount: 4200, Currency: "EUR", PaymentMethod: "pm_card_visa",
	})
	if err != nil {
		log.Fatal(err)
	}
	select {
	case ev := <-got:
		fmt.Println(ev.Type, ev.PaymentID == pay.ID, ev.PaymentVersion == pay.Version)
	case <-time.After(10 * time.Second):
		fmt.Println("no webhook")
	}
	stop()
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	// Output:
	// payment.captured true true
}
