package payments

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/payrail/payrail/gateway"
)

// GatewayEventResult says what HandleGatewayEvent did with an event.
type GatewayEventResult string

// Results of HandleGatewayEvent.
const (
	// GatewayEventSettled: a processing payment (or one in review) got
	// its outcome from the event.
	GatewayEventSettled GatewayEventResult = "settled"
	// GatewayEventUpdated: a change made at the provider (a capture, void
	// or refund in its dashboard) was recorded on the payment.
	GatewayEventUpdated GatewayEventResult = "updated"
	// GatewayEventUnchanged: the payment already reflects the event (a
	// duplicate, or an event older than the payment's state).
	GatewayEventUnchanged GatewayEventResult = "unchanged"
	// GatewayEventIgnored: not a payment of this processor and gateway, or
	// an event type that carries no payment state.
	GatewayEventIgnored GatewayEventResult = "ignored"
)

// HandleGatewayEvent applies a verified provider event (see
// gateway.Gateway.ParseWebhook) of the gateway named gatewayName to its
// payment. It is the primary way an ambiguous outcome resolves: a
// processing payment is settled from the provider's state exactly as the
// Reconciler settles it from Lookup, which stays the fallback. Changes made
// at the provider are recorded: a capture or void of an authorized payment,
// a refund of a captured one (as a refund with the provider's reference).
//
// Events are idempotent and order-insensitive: each is compared with the
// payment's stored state and only moves it forward (a final status is never
// left, amounts only grow), in the store's compare-and-set update, so a
// duplicate or stale event changes nothing. An event naming a payment of
// another gateway is ignored. Store failures are returned (the provider
// should deliver the event again).
func (p *Processor) HandleGatewayEvent(ctx context.Context, gatewayName string, ev *gateway.Event) (*Payment, GatewayEventResult, error) {
	if err := p.usable(); err != nil {
		return nil, "", err
	}
	if ev == nil || ev.PaymentID == "" || ev.Merchant == "" {
		return nil, GatewayEventIgnored, nil
	}
	if checkID("payment_id", ev.PaymentID) != nil || checkID("merchant", ev.Merchant) != nil {
		return nil, GatewayEventIgnored, nil
	}
	pay, err := p.store.Get(ctx, ev.Merchant, ev.PaymentID)
	if errors.Is(err, ErrNotFound) {
		return nil, GatewayEventIgnored, nil
	}
	if err != nil {
		return nil, "", p.storeError(err, ev.PaymentID)
	}
	tx := ev.Transaction
	switch {
	case pay.Gateway != gatewayName:
		p.log.WarnContext(ctx, "payments: gateway event for a payment of another gateway ignored",
			"payment_id", pay.ID, "event_gateway", gatewayName, "payment_gateway", pay.Gateway, "event_id", ev.ID)
		return pay, GatewayEventIgnored, nil
	case ev.Disputed:
		p.log.WarnContext(ctx, "payments: dispute opened at the provider", "payment_id", pay.ID,
			"gateway", gatewayName, "event_id", ev.ID)
		return pay, GatewayEventUnchanged, nil
	case tx == nil:
		return pay, GatewayEventIgnored, nil
	case pay.GatewayReference != "" && tx.Reference != "" && tx.Reference != pay.GatewayReference:
		p.log.WarnContext(ctx, "payments: gateway event for another provider object ignored", "payment_id", pay.ID,
			"event_id", ev.ID)
		return pay, GatewayEventIgnored, nil
	}
	if pay.Status == StatusProcessing || pay.Status == StatusRequiresReview {
		switch tx.Status {
		case gateway.StatusAuthorized, gateway.StatusCaptured, gateway.StatusDeclined:
			o := p.settleAuthorization(ctx, pay, tx)
			if o.payment == nil || o.err != nil && o.payment.Status == StatusProcessing {
				return o.payment, "", fmt.Errorf("payments: settling %s from a gateway event: %w", pay.ID, o.err)
			}
			if o.payment.Status == StatusProcessing || o.payment.Status == StatusRequiresReview {
				return o.payment, GatewayEventUnchanged, nil
			}
			p.log.InfoContext(ctx, "payments: payment settled by a gateway event", "payment_id", pay.ID,
				"gateway", gatewayName, "status", string(o.payment.Status), "event_id", ev.ID)
			return o.payment, GatewayEventSettled, nil
		}
		return pay, GatewayEventUnchanged, nil
	}
	changed := false
	saved, serr := p.save(ctx, pay, func(q *Payment) error {
		changed = false
		now := p.now()
		switch {
		case q.Status == StatusAuthorized && tx.Status == gateway.StatusVoided:
			changed = true
			return q.transition(StatusVoided, now)
		case q.Status == StatusAuthorized && (tx.Status == gateway.StatusCaptured || tx.Status == gateway.StatusRefunded) && tx.AmountCaptured > 0:
			changed = true
			q.AmountCaptured = tx.AmountCaptured
			if err := q.transition(StatusCaptured, now); err != nil {
				return err
			}
		}
		if (q.Status == StatusCaptured || q.Status == StatusRefunded) && tx.AmountRefunded > q.AmountRefunded {
			if tx.Currency != "" && tx.Currency != q.Currency {
				return errUnchanged
			}
			changed = true
			add := tx.AmountRefunded - q.AmountRefunded
			q.Refunds = append(q.Refunds, Refund{ID: externalRefundID(ev.ID), PaymentID: q.ID, Amount: add,
				Currency: q.Currency, Status: "succeeded", GatewayReference: tx.Reference, CreatedAt: now})
			q.AmountRefunded = tx.AmountRefunded
			q.UpdatedAt = now
			if q.AmountRefunded >= q.AmountCaptured && q.Status != StatusRefunded {
				return q.transition(StatusRefunded, now)
			}
		}
		if !changed {
			return errUnchanged
		}
		return nil
	})
	if serr != nil {
		return pay, "", serr
	}
	if !changed {
		return saved, GatewayEventUnchanged, nil
	}
	p.log.InfoContext(ctx, "payments: change made at the provider recorded", "payment_id", pay.ID,
		"gateway", gatewayName, "status", string(saved.Status), "event_id", ev.ID)
	return saved, GatewayEventUpdated, nil
}

// externalRefundID names a refund made at the provider after the event
// that reported it, so that the same event never records it twice.
func externalRefundID(eventID string) string {
	var b strings.Builder
	b.WriteString("ext_")
	for _, r := range eventID {
		if r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// webhookAnswer is the body of a provider webhook's 200 answer.
type webhookAnswer struct {
	Result    GatewayEventResult `json:"result"`
	PaymentID string             `json:"payment_id"`
}

// maxWebhookBody caps a provider webhook's body (Stripe's events are a few
// KB; 1 MiB leaves room for expanded objects).
const maxWebhookBody = 1 << 20

// NewGatewayWebhookHandler returns the handler for provider webhooks,
// mounted at a path ending in /{gateway} (e.g. POST /webhooks/stripe): it
// reads the body (capped at 1 MiB), verifies it with the named gateway's
// ParseWebhook (400 webhook_signature_invalid otherwise; 404
// webhook_not_configured for a gateway without webhooks), and applies it
// with HandleGatewayEvent: 200 with {"result", "payment_id"} once the
// event is applied or ignored, 503 when the store failed (the provider
// delivers it again). It needs no API key: the signature authenticates
// the provider.
func NewGatewayWebhookHandler(p *Processor) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeProblem(w, r, newError(CodeMethodNotAllowed, "webhooks are POSTed"))
			return
		}
		name := r.PathValue("gateway")
		if name == "" {
			name = r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
		}
		g, ok := p.router.Gateway(name)
		if !ok {
			writeProblem(w, r, newError(CodeWebhookNotConfigured, "no gateway named "+name+" is configured"))
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
		if err != nil {
			writeProblem(w, r, newError(CodeMalformedRequest, "the webhook body could not be read or is over 1 MiB"))
			return
		}
		ev, err := g.ParseWebhook(r.Context(), r.Header, body)
		switch {
		case errors.Is(err, gateway.ErrWebhookUnsupported):
			writeProblem(w, r, newError(CodeWebhookNotConfigured, "gateway "+name+" has no webhook signing secret or no webhook support"))
			return
		case errors.Is(err, gateway.ErrWebhookSignature):
			p.log.WarnContext(r.Context(), "payments: gateway webhook refused: signature does not verify", "gateway", name)
			writeProblem(w, r, newError(CodeWebhookSignature, "the webhook's signature does not verify"))
			return
		case err != nil:
			// A signed body the driver cannot read, or a provider call
			// it needed failed: let the provider deliver it again.
			p.log.WarnContext(r.Context(), "payments: gateway webhook not applied", "gateway", name, "error", err)
			writeProblem(w, r, &Error{Code: CodeGatewayUnavailable, Detail: "the webhook could not be applied now", Err: err})
			return
		}
		pay, res, err := p.HandleGatewayEvent(r.Context(), name, ev)
		if err != nil {
			writeProblem(w, r, asError(err))
			return
		}
		id := ""
		if pay != nil {
			id = pay.ID
		}
		p.log.Log(r.Context(), slog.LevelDebug, "payments: gateway webhook", "gateway", name, "event_id", ev.ID,
			"event_type", ev.Type, "result", string(res), "payment_id", id)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(marshal(webhookAnswer{Result: res, PaymentID: id}))
	})
}
