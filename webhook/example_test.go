package webhook_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"time"

	"github.com/payrail/payrail/webhook"
)

// A merchant's receiver: verify every delivery, process each event once,
// and discard events older than the payment version already seen.
func ExampleVerifier_Middleware() {
	v, err := webhook.NewVerifier(
		[]string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},   // the endpoint's secret, from configuration
		webhook.WithSeenStore(webhook.NewMemorySeenStore(0)), // one replica; share a store across several
	)
	if err != nil {
		log.Fatal(err)
	}
	http.Handle("POST /webhooks/payrail", v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ev, _ := webhook.EventFromContext(r.Context())
		switch ev.Type {
		case webhook.PaymentCaptured:
			// Ship the order, unless a higher ev.PaymentVersion of
			// ev.PaymentID was processed already.
		default:
			// Ignore types you do not handle, including new ones.
		}
		w.WriteHeader(http.StatusNoContent) // a 2xx acknowledges; anything else is retried
	})))
}

// Verifying a delivery by hand, here the Standard Webhooks test vector
// (checked at the time it was signed).
func ExampleVerifier_Verify() {
	v, err := webhook.NewVerifier([]string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
		webhook.WithClock(func() time.Time { return time.Unix(1614265330, 0) }))
	if err != nil {
		log.Fatal(err)
	}
	h := http.Header{}
	h.Set("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
	h.Set("webhook-timestamp", "1614265330")
	h.Set("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")

	fmt.Println(v.Verify(h, []byte(`{"test": 2432232314}`)))
	err = v.Verify(h, []byte(`{"test": 1}`))
	fmt.Println(errors.Is(err, webhook.ErrInvalidSignature))
	// Output:
	// <nil>
	// true
}

// Signing with the current and the previous secret during a rotation:
// both signatures go into webhook-signature.
func ExampleSigner_Sign() {
	current, _ := webhook.ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	previous, _ := webhook.ParseSecret("whsec_" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	s, err := webhook.NewSigner(current, previous)
	if err != nil {
		log.Fatal(err)
	}
	sig, err := s.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if err != nil {
		log.Fatal(err)
	}
	sigs := strings.Fields(sig)
	fmt.Println(len(sigs), sigs[0])
	fmt.Println(current) // secrets never print
	// Output:
	// 2 v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
	// whsec_REDACTED
}

// The worker's side: deliver one event to one endpoint, then act on the
// outcome. Here the endpoint is a local test receiver, so the example
// allows loopback addresses, which a production client refuses.
func ExampleClient_Deliver() {
	secret, _ := webhook.NewSecret()
	v, _ := webhook.NewVerifier([]string{secret.Reveal()})
	receiver := httptest.NewTLSServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})))
	defer receiver.Close()

	pool := x509.NewCertPool()
	pool.AddCert(receiver.Certificate())
	c, err := webhook.NewClient(
		webhook.WithTLSConfig(&tls.Config{RootCAs: pool}),
		webhook.WithAllowedNetworks(netip.MustParsePrefix("127.0.0.0/8")), // never in production
	)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ep := &webhook.Endpoint{ID: "we_1", Merchant: "m_1", URL: receiver.URL + "/hooks", Secrets: []webhook.Secret{secret}, Enabled: true}
	ev := &webhook.Event{ID: "evt_1", Type: webhook.PaymentCaptured, CreatedAt: time.Now(), PaymentID: "pay_1",
		Merchant: "m_1", PaymentVersion: 4, Data: json.RawMessage(`{"id":"pay_1","status":"captured"}`)}

	var schedule webhook.Schedule // the default: about 3 days
	for attempt := 1; ; attempt++ {
		res := c.Deliver(context.Background(), ep, ev)
		fmt.Println(res.Outcome, res.StatusCode)
		if res.Outcome == webhook.Disable {
			ep.Enabled = false // 410 Gone: the merchant no longer wants them
		}
		delay, again := schedule.After(attempt, res)
		if !again {
			break // delivered, or dead-letter it
		}
		time.Sleep(delay) // a worker schedules this through the bus instead
	}
	// Output: delivered 204
}
