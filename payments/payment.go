package payments

import (
	"maps"
	"slices"
	"time"
)

// Status is a payment's lifecycle state.
type Status string

// Payment statuses. See NextStatuses and CanTransition for the allowed moves.
const (
	// StatusPending: accepted for asynchronous processing, not yet picked up.
	StatusPending Status = "pending"
	// StatusProcessing: the gateway is being (or was ambiguously) called.
	StatusProcessing Status = "processing"
	// StatusAuthorized: funds are held; capture or void next.
	StatusAuthorized Status = "authorized"
	// StatusCaptured: funds captured (possibly partially refunded since).
	StatusCaptured Status = "captured"
	// StatusVoided: the authorization was cancelled.
	StatusVoided Status = "voided"
	// StatusRefunded: the captured amount was refunded in full.
	StatusRefunded Status = "refunded"
	// StatusDeclined: the gateway declined; see DeclineCode.
	StatusDeclined Status = "declined"
	// StatusFailed: the payment could not be processed (gateway unavailable
	// after retries, dead-lettered command); nothing was charged. A payment
	// failed with FailureRetriesExhausted is reopened by a redriven command
	// (Worker.reopen, redrive.go); no other move leaves failed.
	StatusFailed Status = "failed"
	// StatusRequiresReview: the gateway's answer could not be established
	// while the provider still honoured the payment's idempotency key (see
	// Reconciler), so payrail stopped acting on it on its own. FailureCode
	// gives the reason (ReviewOutcomeUnknown). An operator settles it from
	// the provider's records; a later gateway answer (Lookup, a webhook) may
	// still settle it. It is never an endless retry loop.
	StatusRequiresReview Status = "requires_review"
)

// ReviewOutcomeUnknown is the FailureCode of a payment moved to
// StatusRequiresReview because its gateway outcome stayed unknown past the
// provider's idempotency window.
const ReviewOutcomeUnknown = "outcome_unknown"

// transitions is the payment state machine: for each status, the statuses
// it may move to. A refund that leaves part of the captured amount
// unrefunded keeps the payment captured (captured → captured). It is read
// only: Statuses, NextStatuses and CanTransition expose it.
var transitions = map[Status][]Status{
	StatusPending:    {StatusProcessing, StatusFailed},
	StatusProcessing: {StatusAuthorized, StatusCaptured, StatusDeclined, StatusFailed, StatusRequiresReview},
	// A payment in review is settled from the provider's records.
	StatusRequiresReview: {StatusAuthorized, StatusCaptured, StatusDeclined, StatusFailed},
	StatusAuthorized:     {StatusCaptured, StatusVoided},
	StatusCaptured:       {StatusCaptured, StatusRefunded},
	StatusVoided:         nil,
	StatusRefunded:       nil,
	StatusDeclined:       nil,
	StatusFailed:         nil,
}

// CanTransition reports whether a payment may move from one status to another.
func CanTransition(from, to Status) bool {
	return slices.Contains(transitions[from], to)
}

// NextStatuses returns the statuses a payment in status from may move to
// (a copy: the state machine cannot be changed), nil for a terminal or
// unknown status.
func NextStatuses(from Status) []Status { return slices.Clone(transitions[from]) }

// Statuses returns every defined status, in lifecycle order.
func Statuses() []Status {
	return []Status{StatusPending, StatusProcessing, StatusAuthorized, StatusCaptured, StatusVoided,
		StatusRefunded, StatusDeclined, StatusFailed, StatusRequiresReview}
}

// Terminal reports whether no transition leaves s.
func (s Status) Terminal() bool { return len(transitions[s]) == 0 }

// Valid reports whether s is one of the defined statuses.
func (s Status) Valid() bool {
	_, ok := transitions[s]
	return ok
}

// CaptureMethod says when an authorized payment is captured.
type CaptureMethod string

// Capture methods.
const (
	// CaptureAutomatic captures at authorization (a purchase).
	CaptureAutomatic CaptureMethod = "automatic"
	// CaptureManual leaves the payment authorized until Capture or Void.
	CaptureManual CaptureMethod = "manual"
)

// Payment is a payment and its lifecycle. Its JSON encoding is the HTTP
// API's representation. Amounts are integers in the currency's minor unit.
type Payment struct {
	ID            string        `json:"id"`
	Merchant      string        `json:"merchant"`
	Amount        int64         `json:"amount"`
	Currency      string        `json:"currency"`
	PaymentMethod string        `json:"payment_method"`
	Origin        string        `json:"origin"`
	CaptureMethod CaptureMethod `json:"capture_method"`
	Status        Status        `json:"status"`
	// Gateway is the name of the gateway that processed the payment and
	// GatewayReference its identifier there.
	Gateway          string `json:"gateway,omitempty"`
	GatewayReference string `json:"gateway_reference,omitempty"`
	// DeclineCode is the issuer's reason when Status is declined.
	DeclineCode string `json:"decline_code,omitempty"`
	// FailureCode says why the payment failed when Status is failed, or why
	// it needs review when Status is requires_review.
	FailureCode    string   `json:"failure_code,omitempty"`
	AmountCaptured int64    `json:"amount_captured"`
	AmountRefunded int64    `json:"amount_refunded"`
	Refunds        []Refund `json:"refunds"`
	// Metadata is nil when empty (encoded as {}); treat it as read-only.
	Metadata  map[string]string `json:"metadata"`
	CreatedAt time.Time         `json:"created_at"`
	UpdatedAt time.Time         `json:"updated_at"`

	// Version is the store's optimistic-concurrency counter; it is not part
	// of the API representation.
	Version int64 `json:"-"`
	// AttemptUntil fences gateway attempts on a processing payment: a writer
	// that is about to call the gateway sets it (in the same compare-and-set
	// update that moves the payment to processing, or in a claim before a
	// resumed attempt) to when its attempt is certainly over, and clears it
	// when it stores the outcome or gives up for now. While another writer's
	// attempt may be in flight, a payment is never marked "not charged"
	// (failed): see Processor's fencing rule. Stores persist it; it is not
	// part of the API representation.
	AttemptUntil time.Time `json:"-"`
	// ReconcileAttempts counts the Reconciler's attempts that left this
	// payment processing (outcome still unknown, or the provider refusing
	// it for now). It is stored with the payment, so that every process's
	// Reconciler, and one that restarted, share the count: a payment the
	// provider keeps refusing is failed after the retry policy's attempts
	// whichever processes made them. Stores persist it; it is not part of
	// the API representation.
	ReconcileAttempts int `json:"-"`
	// Events are the payment's webhook events, one per state change stored
	// by a Processor created WithEvents, with their delivery state: the
	// outbox, written in the same store write as the change. Stores
	// persist them; they are not part of the API representation. A
	// payment read from a store may share its Events with the store (the
	// memory store does): never change them in place — replace the slice
	// with a changed copy (Payment.Clone deep-copies them).
	Events []Event `json:"-"`
	// EventsDue is when the earliest delivery work of Events is due, zero
	// when there is none. Stores persist it and EventStore finds payments
	// by it; it is not part of the API representation.
	EventsDue time.Time `json:"-"`
	// EventsRevision counts the writes of Events' delivery state
	// (EventStore.UpdateEvents), which leave Version as it is: Update and
	// UpdateEvents both compare it too, so that no writer overwrites
	// delivery state it did not read. Stores persist it; it is not part of
	// the API representation.
	EventsRevision int64 `json:"-"`
}

// Refund is one refund of a captured payment.
type Refund struct {
	ID               string    `json:"id"`
	PaymentID        string    `json:"payment_id"`
	Amount           int64     `json:"amount"`
	Currency         string    `json:"currency"`
	Status           string    `json:"status"`
	GatewayReference string    `json:"gateway_reference,omitempty"`
	CreatedAt        time.Time `json:"created_at"`
}

// Clone returns a deep copy of p.
func (p *Payment) Clone() *Payment {
	if p == nil {
		return nil
	}
	c := *p
	c.Refunds = slices.Clone(p.Refunds)
	c.Metadata = maps.Clone(p.Metadata)
	c.Events = cloneEvents(p.Events)
	return &c
}

// transition moves p to status to at now, or returns a *Error with
// CodeInvalidTransition.
func (p *Payment) transition(to Status, now time.Time) error {
	if !CanTransition(p.Status, to) {
		return invalidTransition(p, to)
	}
	p.Status = to
	p.UpdatedAt = now
	return nil
}
