package payments_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/payments"
)

// Poisoned and forged commands on the bus are dead-lettered with their
// reason and never executed: no gateway call, the payment untouched; the
// genuine command for the same payment is processed once.
func TestWorkerDeadLettersForgedCommands(t *testing.T) {
	m := mock.New()
	p, w, topic, sub := asyncEnv(t, mockGateway(t, m), "")
	ctx := context.Background()
	pay, err := p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "m", IdempotencyKey: "genuine", Amount: 300, Currency: "EUR", PaymentMethod: "pm_card_visa"})
	if err != nil {
		t.Fatal(err)
	}
	forged := []*bus.Message{
		{ID: "f1", Body: []byte(`null`)},
		{ID: "f2", Body: []byte(`{"v":1,"op":"authorize","payment_id":"` + pay.ID + `","merchant":"m","amount":999999}`)},
		{ID: "f3", Body: []byte(`{"v":1,"op":"authorize","payment_id":"` + pay.ID + `","merchant":"m"}`),
			Attributes: map[string]string{payments.AttrMerchant: "other-merchant"}},
		{ID: "f4", Body: []byte(`{"v":1,"op":"authorize","payment_id":"` + pay.ID + `","merchant":"m","merchant":"m2"}`)},
		{ID: "f5", Body: []byte(`{"v":9,"op":"authorize","payment_id":"` + pay.ID + `","merchant":"m"}`)},
	}
	for _, msg := range forged {
		if err := topic.Publish(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	runWorker(t, w)
	waitStatus(t, p, "m", pay.ID, payments.StatusCaptured)
	var dls []*bus.DeadLetter
	eventually(t, 5*time.Second, func() bool {
		dls, err = sub.DeadLetters(ctx, 20)
		return err == nil && len(dls) == len(forged)
	})
	for _, dl := range dls {
		if !strings.Contains(dl.Reason, "malformed payment command") {
			t.Errorf("dead letter %s: reason %q", dl.Message.ID, dl.Reason)
		}
	}
	if n := m.Processed(pay.ID + ":authorize"); n != 1 {
		t.Fatalf("charged %d times, want 1", n)
	}
}
