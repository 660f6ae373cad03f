package payments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/payrail/payrail/webhook"
)

// Event is one change of a payment's state that merchants hear about by
// webhook: a payment authorized, captured, declined, failed, voided,
// refunded (in full or in part) or moved to review. A Processor created
// WithEvents records it in the payment itself, in the same store write as
// the change (a transactional outbox: no event without its change, and no
// change without its event, whatever process dies when), and Workers
// configured WithWebhooks deliver it to the merchant's endpoints: at
// least once, each delivery with the event's ID as its webhook-id.
type Event struct {
	// Type is what happened.
	Type webhook.EventType `json:"type"`
	// PaymentVersion is the payment's version after the change: receivers
	// discard an event older than one they have seen.
	PaymentVersion int64 `json:"payment_version"`
	// CreatedAt is when the change was stored: the payment's UpdatedAt
	// right after it.
	CreatedAt time.Time `json:"created_at"`
	// State is what of the payment the change could change, as it was
	// after it (the rest of the payment never changes); nil while the
	// payment is still in that state, as it is after its latest event
	// until its next change: the payment holds it then, and the outbox
	// costs a payment less. Read it with StateOf.
	State *EventState `json:"state,omitempty"`
	// Resolved is true once the merchant's endpoints subscribed to the
	// event were looked up and Deliveries filled in (at the first
	// delivery attempt).
	Resolved bool `json:"resolved"`
	// Deliveries are the event's deliveries, one per endpoint.
	Deliveries []Delivery `json:"deliveries,omitempty"`
}

// EventState is the mutable part of a payment after a change.
type EventState struct {
	Status           Status `json:"status"`
	Gateway          string `json:"gateway,omitempty"`
	GatewayReference string `json:"gateway_reference,omitempty"`
	DeclineCode      string `json:"decline_code,omitempty"`
	FailureCode      string `json:"failure_code,omitempty"`
	AmountCaptured   int64  `json:"amount_captured"`
	AmountRefunded   int64  `json:"amount_refunded"`
	// Refunds is how many refunds the payment had (refunds are only
	// appended).
	Refunds int `json:"refunds"`
}

// ID returns the ID of the event of payment p: the webhook-id of every
// delivery, the same across retries and redeliveries. It is derived from
// the payment's ID and the event's PaymentVersion (a payment makes at
// most one event per version), so that it costs the outbox nothing to
// keep.
func (e *Event) ID(p *Payment) string { return EventID(p.ID, e.PaymentVersion) }

// EventID returns the ID of the event that version paymentVersion of
// payment paymentID made (see Event.ID).
func EventID(paymentID string, paymentVersion int64) string {
	return "evt_" + paymentID + "_" + strconv.FormatInt(paymentVersion, 10)
}

// DeliveryStatus is where one delivery of an event to one endpoint stands.
type DeliveryStatus string

// Delivery statuses.
const (
	// DeliveryPending: not delivered yet; NextAttempt says when it is tried.
	DeliveryPending DeliveryStatus = "pending"
	// DeliveryDelivered: the endpoint answered 2xx.
	DeliveryDelivered DeliveryStatus = "delivered"
	// DeliveryDead: dead-lettered: the retry period ended, the endpoint
	// answered that it will never take it (410, a disabled or invalid
	// endpoint), or the endpoint was removed. RedeliverEvent retries it.
	DeliveryDead DeliveryStatus = "dead"
)

// Delivery is the delivery of an event to one endpoint.
type Delivery struct {
	// Endpoint is the endpoint's ID.
	Endpoint string         `json:"endpoint"`
	Status   DeliveryStatus `json:"status"`
	// Attempts counts the attempts made since the delivery started (or was
	// redelivered).
	Attempts int `json:"attempts"`
	// NextAttempt is when a pending delivery is tried next.
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// FirstAttempt and LastAttempt are when attempts were made.
	FirstAttempt time.Time `json:"first_attempt,omitzero"`
	LastAttempt  time.Time `json:"last_attempt,omitzero"`
	// Redelivered is when an operator last started the delivery over
	// (RedeliverEvent); zero if never. A pending delivery's age, what
	// MetricWebhookPendingAge reports, runs from it, not from the event.
	Redelivered time.Time `json:"redelivered,omitzero"`
	// LastResult describes the last attempt ("HTTP 500", "timeout", …);
	// it never holds the response body or a secret.
	LastResult string `json:"last_result,omitempty"`
}

// pendingSince returns when the delivery's pending work started: when the
// event was created, or when the delivery was last redelivered.
func (d *Delivery) pendingSince(ev *Event) time.Time {
	if d.Redelivered.After(ev.CreatedAt) {
		return d.Redelivered
	}
	return ev.CreatedAt
}

// pending reports whether the event still has delivery work.
func (e *Event) pending() bool {
	if !e.Resolved {
		return true
	}
	for i := range e.Deliveries {
		if e.Deliveries[i].Status == DeliveryPending {
			return true
		}
	}
	return false
}

// due returns when the event's next work is due, and whether it has any.
func (e *Event) due() (time.Time, bool) {
	if !e.Resolved {
		return e.CreatedAt, true
	}
	var t time.Time
	ok := false
	for i := range e.Deliveries {
		d := &e.Deliveries[i]
		if d.Status == DeliveryPending && (!ok || d.NextAttempt.Before(t)) {
			t, ok = d.NextAttempt, true
		}
	}
	return t, ok
}

// refreshDue sets p.EventsDue from its events.
func (p *Payment) refreshDue() {
	p.EventsDue = time.Time{}
	for i := range p.Events {
		if t, ok := p.Events[i].due(); ok && (p.EventsDue.IsZero() || t.Before(p.EventsDue)) {
			p.EventsDue = t
			if t.IsZero() {
				p.EventsDue = p.Events[i].CreatedAt
			}
		}
	}
}

// cloneEvents deep-copies events.
func cloneEvents(evs []Event) []Event {
	if evs == nil {
		return nil
	}
	out := slices.Clone(evs)
	for i := range out {
		out[i].Deliveries = slices.Clone(out[i].Deliveries)
	}
	return out
}

// eventType returns the event a change from old to p makes, if any.
func eventType(old, p *Payment) (webhook.EventType, bool) {
	if old.Status == p.Status {
		if p.Status == StatusCaptured && p.AmountRefunded > old.AmountRefunded {
			return webhook.PaymentRefunded, true
		}
		return "", false
	}
	switch p.Status {
	case StatusAuthorized:
		return webhook.PaymentAuthorized, true
	case StatusCaptured:
		return webhook.PaymentCaptured, true
	case StatusDeclined:
		return webhook.PaymentDeclined, true
	case StatusFailed:
		return webhook.PaymentFailed, true
	case StatusVoided:
		return webhook.PaymentVoided, true
	case StatusRefunded:
		return webhook.PaymentRefunded, true
	case StatusRequiresReview:
		return webhook.PaymentRequiresReview, true
	}
	return "", false
}

// StateOf returns the state the event's change left payment p in: State,
// or, while that is nil, p's own.
func (e *Event) StateOf(p *Payment) EventState {
	if e.State != nil {
		return *e.State
	}
	return stateOf(p)
}

// stateOf returns what of p a change can change.
func stateOf(p *Payment) EventState {
	return EventState{
		Status: p.Status, Gateway: p.Gateway, GatewayReference: p.GatewayReference,
		DeclineCode: p.DeclineCode, FailureCode: p.FailureCode,
		AmountCaptured: p.AmountCaptured, AmountRefunded: p.AmountRefunded,
		Refunds: len(p.Refunds),
	}
}

// recordEvent keeps p's events right across its change from old (every
// stored change goes through it: Processor.save): it appends the event the
// change makes, if any, and, if the change alters the state its latest
// event left implicit (State nil), gives that event the state as it was.
// version is the version the store write gives p. With record false (a
// processor without WithEvents) it makes no event but still keeps the
// earlier ones right. It reports whether it recorded an event.
func recordEvent(old, p *Payment, version int64, now time.Time, record bool) bool {
	t, ok := eventType(old, p)
	ok = ok && record
	n := len(p.Events)
	materialize := n > 0 && p.Events[n-1].State == nil && stateOf(old) != stateOf(p)
	if !ok && !materialize {
		return false
	}
	// A fresh backing array: the store may still hold the old one, and the
	// caller's rollback copy shares it.
	evs := make([]Event, n, n+1)
	copy(evs, p.Events)
	if materialize {
		st := stateOf(old)
		evs[n-1].State = &st
	}
	p.Events = evs
	if !ok {
		return false
	}
	if !p.UpdatedAt.After(old.UpdatedAt) {
		p.UpdatedAt = now // the change did not say when: now (the event's time is the payment's)
	}
	// The new event's state is p's until its next change (State nil).
	p.Events = append(p.Events, Event{Type: t, PaymentVersion: version, CreatedAt: p.UpdatedAt})
	if p.EventsDue.IsZero() || now.Before(p.EventsDue) {
		p.EventsDue = now
	}
	return true
}

// Snapshot returns the payment as it was right after the event's change:
// p's unchanging fields with the event's state.
func (e *Event) Snapshot(p *Payment) *Payment {
	s := *p
	st := e.StateOf(p)
	s.Status, s.Gateway, s.GatewayReference = st.Status, st.Gateway, st.GatewayReference
	s.DeclineCode, s.FailureCode = st.DeclineCode, st.FailureCode
	s.AmountCaptured, s.AmountRefunded, s.UpdatedAt = st.AmountCaptured, st.AmountRefunded, e.CreatedAt
	s.Refunds = slices.Clone(p.Refunds[:min(st.Refunds, len(p.Refunds))])
	s.Events, s.EventsDue = nil, time.Time{}
	s.Version = e.PaymentVersion
	return &s
}

// Webhook returns the event as delivered: the envelope and, as its data,
// the payment as the HTTP API represented it right after the change.
func (e *Event) Webhook(p *Payment) (*webhook.Event, error) {
	data, err := json.Marshal(e.Snapshot(p))
	if err != nil {
		return nil, fmt.Errorf("payments: encoding event %s: %w", e.ID(p), err)
	}
	return &webhook.Event{ID: e.ID(p), Type: e.Type, CreatedAt: e.CreatedAt, PaymentID: p.ID,
		Merchant: p.Merchant, PaymentVersion: e.PaymentVersion, Data: data}, nil
}

// WithEvents makes the processor record an Event with every payment state
// change it stores (see Event), for a Worker configured WithWebhooks to
// deliver. Every process that changes payments — API servers and workers
// alike — must be given it, or the changes they store make no event.
func WithEvents() Option { return func(o *options) { o.events = true } }

// EventsEnabled reports whether the processor records events (WithEvents).
func (p *Processor) EventsEnabled() bool { return p.events }

// EventStore is implemented by payment stores that keep webhook delivery
// state (the built-in memory and PostgreSQL stores do). A Worker
// delivering webhooks needs it.
type EventStore interface {
	// ListEventsDue returns up to limit payments whose EventsDue is set
	// and not after before, earliest first, across merchants: the
	// workers' sweep that finds new events, retries and lapsed claims.
	ListEventsDue(ctx context.Context, before time.Time, limit int) ([]*Payment, error)
	// UpdateEvents replaces the stored payment's Events and EventsDue with
	// p's if its stored Version and EventsRevision equal p's, increments
	// EventsRevision (on p too), and returns ErrStoreConflict otherwise. It
	// leaves the Version as it is: delivery bookkeeping is not a change of
	// the payment, so ETags, If-Match preconditions and gateway-attempt
	// claims stay valid. Update compares EventsRevision too.
	UpdateEvents(ctx context.Context, p *Payment) error
	// ListDeadEvents returns up to limit payments with at least one
	// dead-lettered delivery (see Event.Dead), in id order after the id
	// after (empty: from the start), across merchants: what an operator
	// redelivers once an endpoint is fixed.
	ListDeadEvents(ctx context.Context, after string, limit int) ([]*Payment, error)
}

// Dead reports whether a delivery of the event was dead-lettered.
func (e *Event) Dead() bool {
	for i := range e.Deliveries {
		if e.Deliveries[i].Status == DeliveryDead {
			return true
		}
	}
	return false
}

// HasDeadEvents reports whether a delivery of one of p's events was
// dead-lettered: the payments EventStore.ListDeadEvents lists.
func (p *Payment) HasDeadEvents() bool {
	for i := range p.Events {
		if p.Events[i].Dead() {
			return true
		}
	}
	return false
}

// ListDeadEvents returns the store's payments with dead-lettered
// deliveries, as EventStore.ListDeadEvents does.
func ListDeadEvents(ctx context.Context, s Store, after string, limit int) ([]*Payment, error) {
	l, ok := s.(EventStore)
	if !ok {
		return nil, ErrEventsUnsupported
	}
	return l.ListDeadEvents(ctx, after, limit)
}

// ErrEventNotFound is returned when a payment has no event with the ID.
var ErrEventNotFound = errors.New("payments: no such event")

// ErrEventsUnsupported is returned for a payment store that
// does not implement EventStore.
var ErrEventsUnsupported = errors.New("payments: the payment store cannot list payments with events due")

// ListPendingEvents returns the payments of the store whose events have
// delivery work left (due now or later), earliest first: opsctl's view of
// the outbox.
func ListPendingEvents(ctx context.Context, s Store, limit int) ([]*Payment, error) {
	l, ok := s.(EventStore)
	if !ok {
		return nil, ErrEventsUnsupported
	}
	return l.ListEventsDue(ctx, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), limit)
}

// RedeliverEvent schedules event eventID of a payment for delivery again,
// now: to the one endpoint given, or to every endpoint whose delivery was
// dead-lettered (every endpoint, delivered ones included, with all=true).
// The delivery starts over (a fresh retry period). It returns the event as
// stored. A Worker delivering webhooks sends it at its next sweep.
func RedeliverEvent(ctx context.Context, s Store, merchant, paymentID, eventID, endpoint string, all bool, now time.Time) (*Event, error) {
	es, ok := s.(EventStore)
	if !ok {
		return nil, ErrEventsUnsupported
	}
	for range 8 {
		pay, err := s.Get(ctx, merchant, paymentID)
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(pay.Events, func(e Event) bool { return e.ID(pay) == eventID })
		if i < 0 {
			return nil, fmt.Errorf("%w: %s on payment %s", ErrEventNotFound, eventID, paymentID)
		}
		pay.Events = cloneEvents(pay.Events) // the store's may be shared: change a copy
		ev := &pay.Events[i]
		n := 0
		for j := range ev.Deliveries {
			d := &ev.Deliveries[j]
			if (endpoint != "" && d.Endpoint != endpoint) || (endpoint == "" && !all && d.Status != DeliveryDead) {
				continue
			}
			*d = Delivery{Endpoint: d.Endpoint, Status: DeliveryPending, NextAttempt: now, Redelivered: now}
			n++
		}
		if endpoint != "" && n == 0 {
			return nil, fmt.Errorf("%w: event %s was never sent to endpoint %s", ErrEventNotFound, eventID, endpoint)
		}
		if n == 0 {
			return ev, nil // nothing dead-lettered: nothing to do
		}
		pay.refreshDue()
		err = es.UpdateEvents(ctx, pay)
		if errors.Is(err, ErrStoreConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return &pay.Events[i], nil
	}
	return nil, fmt.Errorf("payments: redeliver event %s: %w", eventID, ErrStoreConflict)
}

// opEvents is the command that asks a worker to deliver a payment's due
// events.
const opEvents = "events"

// notifyEvents publishes the events command for a payment whose due
// events a worker's sweep claimed.
func (p *Processor) notifyEvents(ctx context.Context, pay *Payment) error {
	// One message per claim: a broker that drops duplicate ids keeps it.
	id := pay.ID + ":" + opEvents + ":" + strconv.FormatInt(pay.Version, 10) + "." + strconv.FormatInt(pay.EventsRevision, 10)
	if err := p.publishCommand(ctx, pay, opEvents, id); err != nil {
		return fmt.Errorf("payments: publishing the events notification of payment %s: %w", pay.ID, err)
	}
	return nil
}
