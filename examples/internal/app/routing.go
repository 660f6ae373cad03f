package app

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/payrail/payrail/examples/internal/config"
	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/routing"
	"github.com/payrail/payrail/payments"
)

// OpenRouter opens the gateway GATEWAY_URL names and those of
// GATEWAY_URLS, and returns a routing.Router over them with a circuit
// breaker per gateway and the policy of GATEWAY_ROUTES (by default every
// payment goes to GATEWAY_URL's gateway; the other gateways take payments
// only where the policy names them). It adds the "gateways" closer to cl
// and warns loudly about mock gateways. A policy naming a gateway that is
// not configured is a ConfigError.
func OpenRouter(ctx context.Context, cfg *config.Config, log *slog.Logger, cl *Closers) (*routing.Router, error) {
	urls := append([]string{cfg.GatewayURL}, cfg.GatewayURLs...)
	variables := []string{"GATEWAY_URL"}
	for range cfg.GatewayURLs {
		variables = append(variables, "GATEWAY_URLS")
	}
	var gws []*gateway.Gateway
	closeAll := func() {
		for _, g := range gws {
			_ = g.Close()
		}
	}
	var mocks []string
	for i, u := range urls {
		g, err := gateway.Open(ctx, u)
		if err != nil {
			closeAll()
			return nil, OpenError(variables[i], err, gateway.ErrUnknownDriver)
		}
		gws = append(gws, g)
		if MockGateway(u) {
			mocks = append(mocks, g.Name())
		} else {
			log.Info("gateway opened", "gateway", g.Name(), "url", config.Redact(u))
		}
	}
	policy := routing.DefaultPolicy(gws[0].Name())
	if cfg.GatewayRoutes != "" {
		p, err := routing.LoadPolicy(cfg.GatewayRoutes)
		if err != nil {
			closeAll()
			return nil, ConfigError{Err: fmt.Errorf("GATEWAY_ROUTES: %w", err)}
		}
		policy = p
	}
	r, err := routing.New(gws, policy, routing.WithLogger(log))
	if err != nil {
		closeAll()
		return nil, ConfigError{Err: fmt.Errorf("GATEWAY_ROUTES: %w", err)}
	}
	cl.Add("gateways", r.Close)
	routed := routedGateways(policy)
	for _, m := range mocks {
		if slices.Contains(routed, m) {
			log.Warn("the routing policy sends payments to the mock gateway: PAYMENTS ARE NOT REAL and no money moves there; never do this in production",
				"gateway", m)
		} else {
			log.Warn("the mock gateway is configured (not routed now); PUT /admin/routes can switch payments to it", "gateway", m)
		}
	}
	log.Info("gateway routing", "gateways", len(gws), "rules", len(policy.Rules), "default", policy.Default.Gateways)
	return r, nil
}

// MountRoutingAdmin serves the routing policy at /admin/routes and the
// gateways' circuit breaker states at /admin/gateways, behind the API's
// admin keys.
func MountRoutingAdmin(api *payments.Handler, r *routing.Router) error {
	if err := api.HandleAdmin("routes", routing.AdminHandler(r)); err != nil {
		return err
	}
	return api.HandleAdmin("gateways", routing.HealthHandler(r))
}

func routedGateways(p routing.Policy) []string {
	out := slices.Clone(p.Default.Gateways)
	for _, r := range p.Rules {
		out = append(out, r.Gateways...)
	}
	return out
}
