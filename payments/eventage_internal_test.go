package payments

import (
	"testing"
	"time"
)

// The pending age of an endpoint's deliveries runs from the event's
// creation, or from the delivery's redelivery: an event dead-lettered days
// ago and redelivered a minute ago is a minute old, not days (the
// PayrailWebhookDeliveriesDelayed alert would fire at once otherwise).
func TestPendingAgeFromRedelivery(t *testing.T) {
	ctx := t.Context()
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	store := NewMemoryStore()
	add := func(id string, created time.Time, dl Delivery) {
		t.Helper()
		p := &Payment{ID: id, Merchant: "m", Amount: 1, Currency: "EUR", Status: StatusCaptured, Refunds: []Refund{},
			Events: []Event{{Type: "payment.captured", PaymentVersion: 2, CreatedAt: created, Resolved: true, Deliveries: []Delivery{dl}}}}
		p.refreshDue()
		if err := store.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// ep_a: an event from three days ago, dead-lettered and redelivered a
	// minute ago; and one created ten minutes ago, pending since.
	add("pay_old", now.Add(-72*time.Hour), Delivery{Endpoint: "ep_a", Status: DeliveryPending, NextAttempt: now.Add(time.Minute), Redelivered: now.Add(-time.Minute)})
	add("pay_new", now.Add(-10*time.Minute), Delivery{Endpoint: "ep_a", Status: DeliveryPending, NextAttempt: now.Add(time.Minute)})
	// ep_b: an event from an hour ago never redelivered.
	add("pay_b", now.Add(-time.Hour), Delivery{Endpoint: "ep_b", Status: DeliveryPending, NextAttempt: now.Add(time.Minute)})

	d := &deliverer{store: store, oldest: map[string]time.Time{}}
	d.refreshAges(ctx)
	if got, want := d.oldest["ep_a"], now.Add(-10*time.Minute); !got.Equal(want) {
		t.Errorf("ep_a pending since %v, want %v (the redelivered event counts from its redelivery)", got, want)
	}
	if got, want := d.oldest["ep_b"], now.Add(-time.Hour); !got.Equal(want) {
		t.Errorf("ep_b pending since %v, want %v", got, want)
	}
	d.notePending("ep_b", now.Add(-2*time.Hour))
	if got := d.oldest["ep_b"]; !got.Equal(now.Add(-2 * time.Hour)) {
		t.Errorf("notePending of an older delivery left %v", got)
	}
}
