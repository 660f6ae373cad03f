package webhook

import (
	"encoding/json"
	"fmt"
	"time"
)

// EventType is the type of a payment event: a full-stop delimited name.
type EventType string

// The event types payrail sends, one per payment state a change can reach.
const (
	PaymentAuthorized     EventType = "payment.authorized"
	PaymentCaptured       EventType = "payment.captured"
	PaymentDeclined       EventType = "payment.declined"
	PaymentFailed         EventType = "payment.failed"
	PaymentVoided         EventType = "payment.voided"
	PaymentRefunded       EventType = "payment.refunded"
	PaymentRequiresReview EventType = "payment.requires_review"
)

// EventTypes lists every event type payrail sends. Receivers must still
// accept (and may ignore) types not listed here: new ones can be added.
func EventTypes() []EventType {
	return []EventType{PaymentAuthorized, PaymentCaptured, PaymentDeclined, PaymentFailed,
		PaymentVoided, PaymentRefunded, PaymentRequiresReview}
}

// Known reports whether t is one of [EventTypes].
func (t EventType) Known() bool {
	for _, k := range EventTypes() {
		if t == k {
			return true
		}
	}
	return false
}

// Event is the envelope of every webhook: the JSON body of the POST.
type Event struct {
	// ID identifies the event. It is also the delivery's webhook-id and
	// stays the same across retries and redeliveries: use it to process an
	// event once.
	ID string `json:"id"`
	// Type is what happened.
	Type EventType `json:"type"`
	// CreatedAt is when the payment changed (not when this delivery was
	// attempted: that is webhook-timestamp).
	CreatedAt time.Time `json:"created_at"`
	// PaymentID is the payment that changed.
	PaymentID string `json:"payment_id"`
	// Merchant owns the payment and the endpoint.
	Merchant string `json:"merchant"`
	// PaymentVersion is the payment's version after the change. Versions
	// of one payment only grow; events are not ordered, so a receiver that
	// has seen a higher version of the payment discards a lower one.
	PaymentVersion int64 `json:"payment_version"`
	// Data is the payment as the HTTP API represents it after the change.
	Data json.RawMessage `json:"data"`
}

// ParseEvent decodes a body into an Event. Unknown members are ignored (new
// ones may be added); id and type are required.
func ParseEvent(body []byte) (*Event, error) {
	var e Event
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidEvent, err)
	}
	if e.ID == "" || e.Type == "" {
		return nil, fmt.Errorf("%w: id and type are required", ErrInvalidEvent)
	}
	return &e, nil
}
