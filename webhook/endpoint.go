package webhook

import "slices"

// Endpoint is where a merchant receives webhooks.
type Endpoint struct {
	// ID identifies the endpoint; the client keeps its concurrency limit
	// and circuit breaker per ID.
	ID string `json:"id"`
	// Merchant owns the endpoint; it only receives that merchant's events.
	Merchant string `json:"merchant"`
	// URL is the https URL deliveries are POSTed to.
	URL string `json:"url"`
	// Secrets sign deliveries: the current secret first and, during a
	// rotation, the previous one, whose signature is sent as well until
	// the merchant has switched. They never print (see Secret).
	Secrets []Secret `json:"secrets"`
	// EventTypes filters the events the endpoint receives; empty means
	// every type.
	EventTypes []EventType `json:"event_types,omitempty"`
	// Enabled is false for an endpoint the merchant paused, or that
	// answered 410 Gone.
	Enabled bool `json:"enabled"`
}

// Accepts reports whether the endpoint subscribes to events of type t.
func (e *Endpoint) Accepts(t EventType) bool {
	return len(e.EventTypes) == 0 || slices.Contains(e.EventTypes, t)
}
