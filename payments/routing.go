package payments

import (
	"context"

	"github.com/payrail/payrail/gateway"
)

// cascadeSoftDecline decides whether a decline at gateway g may be retried
// on the next gateway of the payment's chain (hasNext): only a decline the
// driver classified as soft, and only when the router implements
// gateway.SoftDeclinePolicy and allows it. Nothing was charged at g, so
// trying the next gateway cannot charge twice.
//
// It returns (nil, nil) to settle the decline; (next, nil) to try the next
// gateway, with next the stored payment, still processing, whose
// DeclineCode records the soft decline (if no later gateway charges it, the
// payment ends declined with that code: see failPayment); or (nil, o) when
// another request or worker settled the payment meanwhile.
func (p *Processor) cascadeSoftDecline(ctx context.Context, pay *Payment, g *gateway.Gateway, ge *gateway.Error, hasNext bool) (*Payment, *outcome) {
	if !hasNext || ge == nil || !ge.SoftDecline {
		return nil, nil
	}
	sp, ok := p.router.(gateway.SoftDeclinePolicy)
	if !ok || !sp.AllowSoftDeclineRetry(new(routeRequest(pay)), g.Name(), ge.DeclineCode) {
		return nil, nil
	}
	code := ge.DeclineCode
	if code == "" {
		code = ge.Code
	}
	if code == "" {
		code = "soft_decline"
	}
	saved, e := p.save(ctx, pay, func(q *Payment) error {
		if q.Status != StatusProcessing {
			return errUnchanged
		}
		q.DeclineCode = code
		q.UpdatedAt = p.now()
		return nil
	})
	if e != nil {
		// The decline could not be recorded: settle it rather than risk
		// losing it; the customer was not charged.
		p.log.WarnContext(ctx, "payments: recording a soft decline failed; settling it", "payment_id", pay.ID, "error", e)
		return nil, nil
	}
	if saved.Status != StatusProcessing {
		return nil, fromPayment(saved)
	}
	p.log.InfoContext(ctx, "payments: soft decline; trying the next gateway as the routing policy allows",
		"payment_id", pay.ID, "gateway", g.Name(), "decline_code", code)
	return saved, nil
}
