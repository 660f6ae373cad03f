package stripe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	stripego "github.com/stripe/stripe-go/v82"
	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/payrail/payrail/gateway/driver"
)

// WithWebhookSecret sets the webhook endpoint's signing secrets (whsec_...).
// A request verifies when its signature matches any of them, so that a
// secret can be rolled: add the new one, switch the endpoint in Stripe,
// remove the old one. Without a secret, ParseWebhook refuses every request.
func WithWebhookSecret(secrets ...string) Option {
	return func(c *config) { c.webhookSecrets = append(c.webhookSecrets, secrets...) }
}

// WithWebhookTolerance sets how old a webhook's signed timestamp may be
// (default 5 minutes, stripe-go's): older requests are refused as replays.
func WithWebhookTolerance(d time.Duration) Option {
	return func(c *config) { c.webhookTolerance = d }
}

// readWebhookSecrets reads comma-separated signing secrets from the
// environment variable or file named by the URL parameter k. Errors name
// where the secret was looked for, never the secret.
func readWebhookSecrets(k, v string) ([]string, error) {
	var raw string
	if k == "webhook_secret_env" {
		raw = os.Getenv(v)
		if raw == "" {
			return nil, fmt.Errorf("stripe: webhook_secret_env: environment variable %s is empty or unset", v)
		}
	} else {
		b, err := os.ReadFile(v)
		if err != nil {
			return nil, fmt.Errorf("stripe: webhook_secret_file: %w", errors.Unwrap(err))
		}
		raw = string(b)
	}
	var out []string
	for _, s := range strings.Split(raw, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("stripe: %s: no signing secret in %s", k, v)
	}
	return out, nil
}

var _ driver.WebhookReceiver = (*Gateway)(nil)

// ParseWebhook implements driver.WebhookReceiver with stripe-go's webhook
// package: the Stripe-Signature header must verify with one of the
// endpoint's secrets, within the tolerance. Events mapped to payments:
// payment_intent.succeeded, .amount_capturable_updated, .payment_failed,
// .canceled, .processing (the PaymentIntent's state) and charge.refunded,
// charge.dispute.created (the charge's PaymentIntent and refunded amount;
// disputes are flagged). Other types are returned without a transaction.
// Events rendered with another API version than stripe-go's are accepted:
// only fields stable across versions are read.
func (g *Gateway) ParseWebhook(ctx context.Context, header http.Header, body []byte) (*driver.Event, error) {
	if len(g.webhookSecrets) == 0 {
		return nil, fmt.Errorf("stripe: no webhook signing secret configured (webhook_secret_env): %w", driver.ErrWebhookUnsupported)
	}
	sig := header.Get("Stripe-Signature")
	var ev stripego.Event
	var err error
	for _, secret := range g.webhookSecrets {
		ev, err = webhook.ConstructEventWithOptions(body, sig, secret, webhook.ConstructEventOptions{
			Tolerance:                g.webhookTolerance,
			IgnoreAPIVersionMismatch: true,
		})
		if err == nil || !errors.Is(err, webhook.ErrNoValidSignature) {
			break
		}
	}
	switch {
	case errors.Is(err, webhook.ErrNotSigned), errors.Is(err, webhook.ErrInvalidHeader),
		errors.Is(err, webhook.ErrNoValidSignature), errors.Is(err, webhook.ErrTooOld):
		return nil, fmt.Errorf("stripe: %w: %w", driver.ErrWebhookSignature, err)
	case err != nil:
		return nil, fmt.Errorf("stripe: webhook body: %w", err)
	}
	out := &driver.Event{ID: ev.ID, Type: string(ev.Type), Created: time.Unix(ev.Created, 0).UTC()}
	if ev.Data == nil {
		return out, nil
	}
	switch ev.Type {
	case "payment_intent.succeeded", "payment_intent.amount_capturable_updated", "payment_intent.payment_failed",
		"payment_intent.canceled", "payment_intent.processing":
		var pi stripego.PaymentIntent
		if err := json.Unmarshal(ev.Data.Raw, &pi); err != nil {
			return nil, fmt.Errorf("stripe: webhook %s: decoding the PaymentIntent: %w", ev.Type, err)
		}
		out.PaymentID, out.Merchant, out.IdempotencyKey = pi.Metadata[MetaPaymentID], pi.Metadata[MetaMerchant], pi.Metadata[MetaKey]
		if ev.Type == "payment_intent.processing" {
			return out, nil // not an outcome yet
		}
		tx, err := txFromPI(&pi)
		if err != nil {
			return nil, err
		}
		if tx.Status != "" {
			out.Transaction = tx
		}
	case "charge.refunded", "charge.dispute.created":
		var ch stripego.Charge
		if ev.Type == "charge.dispute.created" {
			var d stripego.Dispute
			if err := json.Unmarshal(ev.Data.Raw, &d); err != nil {
				return nil, fmt.Errorf("stripe: webhook %s: decoding the dispute: %w", ev.Type, err)
			}
			out.Disputed = true
			if d.Charge != nil {
				ch = *d.Charge
			}
			if d.PaymentIntent != nil {
				ch.PaymentIntent = d.PaymentIntent
			}
		} else if err := json.Unmarshal(ev.Data.Raw, &ch); err != nil {
			return nil, fmt.Errorf("stripe: webhook %s: decoding the charge: %w", ev.Type, err)
		}
		out.PaymentID, out.Merchant, out.IdempotencyKey = ch.Metadata[MetaPaymentID], ch.Metadata[MetaMerchant], ch.Metadata[MetaKey]
		if ch.PaymentIntent != nil && ch.PaymentIntent.ID != "" {
			// The event names the PaymentIntent without its metadata:
			// payrail's payment and the refunded total come from it.
			pi, err := g.retrieveIntent(ctx, ch.PaymentIntent.ID)
			if err != nil {
				return nil, err
			}
			out.PaymentID, out.Merchant, out.IdempotencyKey = pi.Metadata[MetaPaymentID], pi.Metadata[MetaMerchant], pi.Metadata[MetaKey]
			if ev.Type == "charge.refunded" {
				if tx, err := txFromPI(pi); err == nil && tx.Status != "" {
					out.Transaction = tx
				}
			}
			return out, nil
		}
		if ev.Type == "charge.refunded" {
			cur := strings.ToUpper(string(ch.Currency))
			ref := ch.ID
			if ch.PaymentIntent != nil && ch.PaymentIntent.ID != "" {
				ref = ch.PaymentIntent.ID
			}
			tx := &driver.Transaction{Reference: ref, Status: driver.StatusCaptured, Currency: cur,
				Amount: fromStripeAmount(ch.Amount, cur), AmountCaptured: fromStripeAmount(ch.AmountCaptured, cur),
				AmountRefunded: fromStripeAmount(ch.AmountRefunded, cur)}
			if ch.Refunded {
				tx.Status = driver.StatusRefunded
			}
			out.Transaction = tx
		}
	}
	return out, nil
}

// retrieveIntent reads a PaymentIntent with its latest charge.
func (g *Gateway) retrieveIntent(ctx context.Context, id string) (*stripego.PaymentIntent, error) {
	params := &stripego.PaymentIntentRetrieveParams{}
	params.AddExpand("latest_charge")
	rctx, ci := withCallInfo(ctx)
	pi, err := g.client.V1PaymentIntents.Retrieve(rctx, id, params)
	if err != nil {
		return nil, classify(rctx, err, ci)
	}
	return pi, nil
}
