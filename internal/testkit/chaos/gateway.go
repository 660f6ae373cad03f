package chaos

import (
	"context"
	"errors"
	"time"

	"github.com/payrail/payrail/gateway/driver"
)

// MetaOrder is the payment metadata entry holding the client's order id;
// the gateway receives the payment's metadata, so the ledger records it.
const MetaOrder = "order_id"

// FaultGateway is a driver.Gateway that wraps a real one (the soak tests
// use gateway/mock) as the network between payrail and the provider: it
// injects faults with the Dice's seeded probabilities and keeps the Ledger
// of the charges the provider really made.
//
// Faults use the driver.Error kinds real drivers report:
//
//   - before the provider (GatewayPre): KindTransient, code
//     "chaos_503", NotProcessed — nothing happened;
//   - after the provider answered (GatewayPost, authorizations only):
//     the provider's effect stands (a charge is in the ledger) but the
//     caller gets KindTransient code "timeout" or KindUnknown code
//     "chaos_502", neither NotProcessed — the ambiguous case;
//   - slow calls (GatewaySlow): SlowLatency before the call, honouring ctx
//     (a cancelled wait is a not-processed timeout, as the mock reports);
//   - Lookup failures (Lookup): KindTransient code "chaos_lookup_503".
type FaultGateway struct {
	inner  driver.Gateway
	ledger *Ledger
	dice   *Dice
	faults Faults
	slow   time.Duration
}

// NewFaultGateway wraps inner. slow is the latency of a slow call.
func NewFaultGateway(inner driver.Gateway, ledger *Ledger, dice *Dice, f Faults, slow time.Duration) *FaultGateway {
	return &FaultGateway{inner: inner, ledger: ledger, dice: dice, faults: f, slow: slow}
}

// Ledger returns the gateway's ledger.
func (g *FaultGateway) Ledger() *Ledger { return g.ledger }

func (g *FaultGateway) before(ctx context.Context) error {
	if g.dice.Roll(g.faults.GatewaySlow, FaultGatewaySlow) {
		t := time.NewTimer(g.slow)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return &driver.Error{Kind: driver.KindTransient, Code: "timeout", NotProcessed: true,
				Message: "chaos: cancelled while the call was slow, before sending", Err: ctx.Err()}
		}
	}
	if g.dice.Roll(g.faults.GatewayPre, FaultGatewayPre) {
		return &driver.Error{Kind: driver.KindTransient, Code: "chaos_503", NotProcessed: true,
			RetryAfter: 10 * time.Millisecond, Message: "chaos: injected 503 before the provider processed the request"}
	}
	return nil
}

// ambiguous returns the error a caller gets when the provider's answer is
// lost after it acted, or nil when no such fault is rolled.
func (g *FaultGateway) ambiguous() error {
	if !g.dice.Roll(g.faults.GatewayPost, "") {
		return nil
	}
	if g.dice.IntN(2) == 0 {
		g.dice.Count(FaultGatewayPost)
		return &driver.Error{Kind: driver.KindTransient, Code: "timeout",
			Message: "chaos: timed out after the provider processed the request; outcome unknown",
			Err:     context.DeadlineExceeded}
	}
	g.dice.Count(FaultGatewayPost5xx)
	return &driver.Error{Kind: driver.KindUnknown, Code: "chaos_502",
		Message: "chaos: 502 after the provider processed the request; outcome unknown"}
}

// Authorize implements driver.Gateway.
func (g *FaultGateway) Authorize(ctx context.Context, r *driver.AuthorizeRequest) (*driver.Transaction, error) {
	if err := g.before(ctx); err != nil {
		return nil, err
	}
	tx, err := g.inner.Authorize(ctx, r)
	switch {
	case err == nil && tx != nil:
		g.ledger.Record(Charge{Reference: tx.Reference, Key: r.IdempotencyKey, PaymentID: r.PaymentID, Merchant: r.Merchant,
			Order: r.Metadata[MetaOrder], Status: tx.Status, Amount: tx.Amount})
	case errors.Is(err, driver.ErrDeclined):
		// Declines charge nothing; they are not in the ledger.
	case err != nil:
		return tx, err // the provider's own failure: passed through
	}
	if aerr := g.ambiguous(); aerr != nil {
		return nil, aerr
	}
	return tx, err
}

// Capture implements driver.Gateway.
func (g *FaultGateway) Capture(ctx context.Context, r *driver.CaptureRequest) (*driver.Transaction, error) {
	if err := g.before(ctx); err != nil {
		return nil, err
	}
	tx, err := g.inner.Capture(ctx, r)
	if err == nil && tx != nil {
		g.ledger.SetStatus(r.Reference, tx.Status)
	}
	return tx, err
}

// Void implements driver.Gateway.
func (g *FaultGateway) Void(ctx context.Context, r *driver.VoidRequest) (*driver.Transaction, error) {
	if err := g.before(ctx); err != nil {
		return nil, err
	}
	tx, err := g.inner.Void(ctx, r)
	if err == nil && tx != nil {
		g.ledger.SetStatus(r.Reference, tx.Status)
	}
	return tx, err
}

// Refund implements driver.Gateway.
func (g *FaultGateway) Refund(ctx context.Context, r *driver.RefundRequest) (*driver.Transaction, error) {
	if err := g.before(ctx); err != nil {
		return nil, err
	}
	tx, err := g.inner.Refund(ctx, r)
	if err == nil && tx != nil {
		g.ledger.SetStatus(r.Reference, tx.Status)
	}
	return tx, err
}

// Lookup implements driver.Gateway.
func (g *FaultGateway) Lookup(ctx context.Context, key string) (*driver.Transaction, error) {
	if g.dice.Roll(g.faults.Lookup, FaultLookup) {
		return nil, &driver.Error{Kind: driver.KindTransient, Code: "chaos_lookup_503", NotProcessed: true,
			Message: "chaos: injected Lookup failure"}
	}
	if err := g.before(ctx); err != nil {
		return nil, err
	}
	return g.inner.Lookup(ctx, key)
}

// Close implements driver.Gateway.
func (g *FaultGateway) Close() error { return g.inner.Close() }

// As implements driver.Gateway by delegating to the inner gateway.
func (g *FaultGateway) As(i any) bool { return g.inner.As(i) }
