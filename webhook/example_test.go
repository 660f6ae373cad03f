package webhook_test

import (
	"errors"
	"fmt"
	"log"
	"net/http"
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
