package routing_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/gateway/routing"
	"github.com/payrail/payrail/payments"
)

const benchPolicy = `{"rules":[
  {"name":"pos-big","match":{"origins":["pos"],"currencies":["EUR","GBP"],"min_amount":100000},"gateways":["b","a"]},
  {"name":"pos","match":{"origins":["pos","kiosk"]},"gateways":["a","b"]},
  {"name":"partner","match":{"origins":["partner-x"],"merchants":["acme","globex"]},"gateways":["a","b","c"],"weights":{"a":90,"b":10}},
  {"name":"usd","match":{"currencies":["USD"]},"gateways":["c","a"]},
  {"name":"web-small","match":{"origins":["web"],"max_amount":500},"gateways":["b"]}
],"default":{"gateways":["c","a","b"]}}`

func benchGateways(b *testing.B) []*gateway.Gateway {
	var gs []*gateway.Gateway
	for _, n := range []string{"a", "b", "c"} {
		g, err := gateway.New(n, mock.New())
		if err != nil {
			b.Fatal(err)
		}
		gs = append(gs, g)
	}
	return gs
}

// BenchmarkRoute compares choosing a payment's chain with the routing
// Router against the baseline gateway.Single.
func BenchmarkRoute(b *testing.B) {
	ctx := context.Background()
	req := &gateway.RouteRequest{PaymentID: "pay_0123456789ABCDEFGHJKMNPQRS", Merchant: "acme", Origin: "partner-x", Currency: "EUR", Amount: 1999}
	run := func(b *testing.B, r gateway.Router) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := r.Route(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("baseline=single", func(b *testing.B) { run(b, gateway.Single(benchGateways(b)[0])) })
	b.Run("routing=default-only", func(b *testing.B) {
		r, err := routing.New(benchGateways(b), routing.DefaultPolicy("a", "b"))
		if err != nil {
			b.Fatal(err)
		}
		run(b, r)
	})
	b.Run("routing=5-rules-weighted", func(b *testing.B) {
		r, err := routing.New(benchGateways(b), mustPolicy(b, benchPolicy))
		if err != nil {
			b.Fatal(err)
		}
		run(b, r)
	})
	b.Run("routing=5-rules-one-open", func(b *testing.B) {
		gs := benchGateways(b)
		var m *mock.Mock
		gs[1].As(&m)
		r, err := routing.New(gs, mustPolicy(b, benchPolicy), routing.WithBreaker(routing.BreakerSettings{ConsecutiveFailures: 1, OpenTimeout: time.Hour}))
		if err != nil {
			b.Fatal(err)
		}
		gb, _ := r.Gateway("b")
		_, _ = gb.Authorize(ctx, &gateway.AuthorizeRequest{IdempotencyKey: "x", Amount: 1, Currency: "EUR", PaymentMethod: "pm_card_processingError"})
		if r.Health()[1].Breaker != routing.BreakerOpen {
			b.Fatal("breaker not open")
		}
		run(b, r)
	})
}

// BenchmarkAuthorizeRouted compares a synchronous authorization through the
// routing Router (policy match + circuit breaker) with the baseline
// gateway.Single, both on the mock gateway.
func BenchmarkAuthorizeRouted(b *testing.B) {
	run := func(b *testing.B, r gateway.Router) {
		p, err := payments.New(payments.WithRouter(r))
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			if _, err := p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "acme", IdempotencyKey: "k-" + strconv.Itoa(i),
				Amount: 1999, Currency: "EUR", PaymentMethod: "pm_card_visa", Origin: "partner-x"}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("baseline=single", func(b *testing.B) { run(b, gateway.Single(benchGateways(b)[0])) })
	b.Run("routing=5-rules-weighted", func(b *testing.B) {
		r, err := routing.New(benchGateways(b), mustPolicy(b, benchPolicy))
		if err != nil {
			b.Fatal(err)
		}
		run(b, r)
	})
}
