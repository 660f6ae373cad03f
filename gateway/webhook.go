package gateway

import (
	"context"
	"fmt"
	"net/http"

	"github.com/payrail/payrail/gateway/driver"
)

// Event is a verified provider notification about a payment.
type Event = driver.Event

// Webhook errors.
var (
	// ErrWebhookSignature: the request's signature does not verify.
	ErrWebhookSignature = driver.ErrWebhookSignature
	// ErrWebhookUnsupported: the gateway has no webhooks, or no secret.
	ErrWebhookUnsupported = driver.ErrWebhookUnsupported
)

// ParseWebhook verifies and decodes a webhook request's body sent by the
// gateway's provider. The body must be the request's exact bytes.
func (g *Gateway) ParseWebhook(ctx context.Context, header http.Header, body []byte) (*Event, error) {
	w, ok := g.d.(driver.WebhookReceiver)
	if !ok {
		return nil, fmt.Errorf("gateway %s: %w", g.name, ErrWebhookUnsupported)
	}
	ev, err := w.ParseWebhook(ctx, header, body)
	if err != nil {
		return nil, fmt.Errorf("gateway %s: %w", g.name, err)
	}
	return ev, nil
}
