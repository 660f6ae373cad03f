package driver

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// Event is a provider's notification about a payment, verified by the
// driver: the provider's view of the payment after the change, and how to
// find payrail's payment.
type Event struct {
	// ID is the provider's event identifier; the same event may arrive
	// more than once.
	ID string
	// Type is the provider's event type, e.g. "payment_intent.succeeded".
	Type string
	// Created is when the provider created the event.
	Created time.Time
	// PaymentID is payrail's payment identifier, read from the provider's
	// metadata; empty for objects payrail did not create.
	PaymentID string
	// Merchant is payrail's merchant of the payment, from the metadata.
	Merchant string
	// IdempotencyKey is the key of the payrail operation that created the
	// object, when the provider's metadata carries it.
	IdempotencyKey string
	// Transaction is the provider's state of the payment after the event;
	// nil for events that carry none (see Disputed).
	Transaction *Transaction
	// Disputed marks a dispute (chargeback) opened on the payment.
	Disputed bool
}

// WebhookReceiver is implemented by gateways whose provider notifies
// payment changes over signed HTTP requests.
type WebhookReceiver interface {
	// ParseWebhook verifies the request's signature (a missing or wrong
	// signature, or a timestamp outside the tolerance, is an error
	// wrapping ErrWebhookSignature) and decodes the event. An event of a
	// type the driver does not map is returned with a nil Transaction and
	// Disputed false: acknowledged and ignored.
	ParseWebhook(ctx context.Context, header http.Header, body []byte) (*Event, error)
}

// ErrWebhookSignature is wrapped by ParseWebhook errors for requests whose
// signature does not verify.
var ErrWebhookSignature = errors.New("gateway: webhook signature does not verify")

// ErrWebhookUnsupported is returned for gateways without a
// WebhookReceiver, or configured without a webhook secret.
var ErrWebhookUnsupported = errors.New("gateway: webhooks not supported or not configured")
