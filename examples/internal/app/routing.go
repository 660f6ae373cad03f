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
	"github.com/payrail/payrail/payments/postgres"
)

// OpenRouter opens the gateway GATEWAY_URL names and those of
// GATEWAY_URLS, and returns a routing.Router over them with a circuit
// breaker per gateway and the policy of GATEWAY_ROUTES (by default every
// payment goes to GATEWAY_URL's gateway; the other gateways take payments
// only where the policy names them). It adds the "gateways" closer to cl
// and warns loudly about mock gateways. A policy naming a gateway that is
// not configured is a ConfigError.
//
// With a shared policy source (nil: none), the router follows the policy
// stored there (seeding it with its own when the source is empty) and
// watches it every ROUTING_POLL_INTERVAL until cl closes it: a PUT
// /admin/routes through any process reaches every server and worker.
func OpenRouter(ctx context.Context, cfg *config.Config, log *slog.Logger, cl *Closers, src routing.Source) (*routing.Router, error) {
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
	opts := []routing.Option{routing.WithLogger(log)}
	if src != nil {
		opts = append(opts, routing.WithSource(src, cfg.RoutingPollInterval))
	}
	r, err := routing.New(gws, policy, opts...)
	if err != nil {
		closeAll()
		return nil, ConfigError{Err: fmt.Errorf("GATEWAY_ROUTES: %w", err)}
	}
	cl.Add("gateways", r.Close)
	if src != nil {
		if err := r.Sync(ctx); err != nil {
			if st := r.SourceStatus(); st.Version == 0 {
				return nil, fmt.Errorf("shared routing policy: %w", err) // unreadable: the store is down
			}
			// Stored, but naming a gateway this process lacks: route by the
			// last good policy and say so (also on /admin/gateways).
			log.Error("the shared routing policy cannot be applied here; routing by GATEWAY_ROUTES", "error", err)
		}
		watchCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan error, 1)
		go func() { done <- r.Watch(watchCtx) }()
		cl.Add("routing policy watch", func() error { stop(); return <-done })
		policy = r.Policy()
		poll := cfg.RoutingPollInterval
		if poll <= 0 {
			poll = routing.DefaultPollInterval
		}
		log.Info("routing policy shared through the payment store", "version", r.Version(), "poll_interval", poll.String())
	}
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

// SharedPolicySource returns the routing policy source of a payment store
// that can share one (payments/postgres), or nil: a memory store is one
// process's, and so is its policy.
func SharedPolicySource(store payments.Store) routing.Source {
	if s, ok := store.(interface{ PolicySource() *postgres.PolicySource }); ok {
		return s.PolicySource()
	}
	return nil
}
