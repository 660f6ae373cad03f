package routing_test

import (
	"context"
	"fmt"
	"log"

	"github.com/payrail/payrail/gateway"
	_ "github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/gateway/routing"
	"github.com/payrail/payrail/payments"
)

// Route point-of-sale payments to one gateway and the rest to another,
// then switch the point of sale to the mock gateway at runtime — the
// operations guide's "switch an origin to mock or an alternate gateway
// temporarily".
func Example() {
	ctx := context.Background()
	var gws []*gateway.Gateway
	for _, u := range []string{"mock://?name=acquirer-a", "mock://?name=acquirer-b", "mock://?name=mock"} {
		g, err := gateway.Open(ctx, u)
		if err != nil {
			log.Fatal(err)
		}
		gws = append(gws, g)
	}
	policy, err := routing.ParsePolicy([]byte(`{
	  "rules": [{"name": "pos", "match": {"origins": ["pos"]}, "gateways": ["acquirer-a", "acquirer-b"]}],
	  "default": {"gateways": ["acquirer-b", "acquirer-a"]}
	}`))
	if err != nil {
		log.Fatal(err)
	}
	r, err := routing.New(gws, policy)
	if err != nil {
		log.Fatal(err)
	}
	defer closeLogged("router", r.Close)
	p, err := payments.New(payments.WithRouter(r))
	if err != nil {
		log.Fatal(err)
	}
	defer closeLogged("processor", p.Close)

	pay := func(key, origin string) string {
		res, err := p.Authorize(ctx, payments.AuthorizeRequest{Merchant: "acme", IdempotencyKey: key,
			Amount: 1999, Currency: "EUR", PaymentMethod: "pm_card_visa", Origin: origin})
		if err != nil {
			log.Fatal(err)
		}
		return res.Gateway
	}
	fmt.Println("pos:", pay("order-1", "pos"), "web:", pay("order-2", "web"))

	switched := r.Policy()
	switched.Rules[0].Gateways = []string{"mock"}
	if err := r.SetPolicy(switched); err != nil {
		log.Fatal(err)
	}
	fmt.Println("pos:", pay("order-3", "pos"), "web:", pay("order-4", "web"))

	switched.Rules[0].Gateways = []string{"acquirer-z"}
	fmt.Println(r.SetPolicy(switched))
	// Output:
	// pos: acquirer-a web: acquirer-b
	// pos: mock web: acquirer-b
	// routing: invalid policy: rules[0].gateways[0]: unknown gateway "acquirer-z"
}

// closeLogged closes a resource at the end of an example, logging a
// failure (to standard error: not part of the example's output).
func closeLogged(what string, close func() error) {
	if err := close(); err != nil {
		log.Printf("closing %s: %v", what, err)
	}
}
