package payments

import (
	"testing"
	"time"
)

// An event's state is kept in it only once the payment changes again: the
// latest event reads the payment's own. Every change that alters that
// state gives the latest event its state first, whether or not the
// change makes an event, and even in a processor without WithEvents; so
// every event's Snapshot stays what the payment was right after it.
func TestEventStateKeptAcrossLaterChanges(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	p := &Payment{ID: "pay_1", Merchant: "m", Amount: 1000, Currency: "EUR", Status: StatusProcessing, Gateway: "mock", Refunds: []Refund{}, Version: 2}
	step := 0
	change := func(record bool, f func(q *Payment)) {
		t.Helper()
		step++
		old := *p
		f(p)
		p.UpdatedAt = t0.Add(time.Duration(step) * time.Second)
		recordEvent(&old, p, old.Version+1, p.UpdatedAt, record)
		p.Version++
	}
	change(true, func(q *Payment) { q.Status, q.GatewayReference = StatusAuthorized, "pi_1" })
	if len(p.Events) != 1 || p.Events[0].State != nil {
		t.Fatalf("after authorization: %+v; want one event, its state the payment's", p.Events)
	}
	change(true, func(q *Payment) { q.Status, q.AmountCaptured = StatusCaptured, 1000 })
	change(true, func(q *Payment) {
		q.AmountRefunded = 300
		q.Refunds = append(q.Refunds, Refund{ID: "re_1", Amount: 300})
	})
	// A change that makes no event but alters the state (a processor
	// without WithEvents refunds the rest): the refund event keeps its state.
	change(false, func(q *Payment) {
		q.Status, q.AmountRefunded = StatusRefunded, 1000
		q.Refunds = append(q.Refunds, Refund{ID: "re_2", Amount: 700})
	})
	// A change of nothing the events show (a claim) keeps nothing new.
	before := p.Events
	change(true, func(q *Payment) { q.AttemptUntil = t0.Add(time.Hour) })
	if &before[0] != &p.Events[0] {
		t.Errorf("a change of no event state copied the events")
	}

	want := []struct {
		status             Status
		captured, refunded int64
		refunds            int
		version            int64
	}{{StatusAuthorized, 0, 0, 0, 3}, {StatusCaptured, 1000, 0, 0, 4}, {StatusCaptured, 1000, 300, 1, 5}}
	if len(p.Events) != len(want) {
		t.Fatalf("%d events, want %d", len(p.Events), len(want))
	}
	for i, w := range want {
		ev := &p.Events[i]
		if ev.State == nil {
			t.Errorf("event %d: state not kept after later changes", i)
		}
		s := ev.Snapshot(p)
		if s.Status != w.status || s.AmountCaptured != w.captured || s.AmountRefunded != w.refunded || len(s.Refunds) != w.refunds ||
			s.Version != w.version || ev.PaymentVersion != w.version || s.GatewayReference != "pi_1" || !s.UpdatedAt.Equal(ev.CreatedAt) {
			t.Errorf("event %d snapshot: %s captured %d refunded %d refunds %d version %d ref %q; want %+v",
				i, s.Status, s.AmountCaptured, s.AmountRefunded, len(s.Refunds), s.Version, s.GatewayReference, w)
		}
	}
}
