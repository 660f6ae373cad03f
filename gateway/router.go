package gateway

import (
	"context"
	"errors"
)

// RouteRequest is what a Router sees of a payment to choose its gateways.
type RouteRequest struct {
	// PaymentID is payrail's payment identifier; routers that split traffic
	// by weight hash it, so that every attempt of a payment routes the same way.
	PaymentID string
	Merchant  string
	// Origin is the channel (web, pos, partner-x...); routing by origin is the
	// operations guide's gatewaySelector.
	Origin   string
	Currency string
	Amount   int64
}

// Router chooses the gateways that may process a new payment, in order of
// preference, and finds a gateway by name for follow-up operations
// (capture, void, refund, lookup go to the gateway that authorized).
type Router interface {
	// Route returns at least one gateway, most preferred first. Callers
	// must not modify the returned slice.
	Route(ctx context.Context, r *RouteRequest) ([]*Gateway, error)
	// Gateway returns the gateway with the given name.
	Gateway(name string) (*Gateway, bool)
	// Gateways returns every gateway the router knows, for readiness checks.
	Gateways() []*Gateway
}

// Single returns a Router that sends every payment to g.
func Single(g *Gateway) Router { return single{g: g, chain: []*Gateway{g}} }

type single struct {
	g     *Gateway
	chain []*Gateway // returned by every Route; callers must not modify it
}

func (s single) Route(context.Context, *RouteRequest) ([]*Gateway, error) {
	if s.g == nil {
		return nil, errors.New("gateway: no gateway configured")
	}
	return s.chain, nil
}

func (s single) Gateway(name string) (*Gateway, bool) {
	if s.g != nil && s.g.Name() == name {
		return s.g, true
	}
	return nil, false
}

func (s single) Gateways() []*Gateway { return []*Gateway{s.g} }
