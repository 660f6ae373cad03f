package stripe_test

import (
	"context"
	"fmt"
	"log"
	"os"

	stripego "github.com/stripe/stripe-go/v82"

	"github.com/payrail/payrail/gateway"
	_ "github.com/payrail/payrail/gateway/stripe"
)

// Open the Stripe gateway with the API key from the environment, and reach
// the stripe-go client for what payrail does not wrap.
func Example() {
	ctx := context.Background()
	os.Setenv("STRIPE_API_KEY", "sk_test_example") // normally set by the deployment, never in code
	g, err := gateway.Open(ctx, "stripe://?api_key_env=STRIPE_API_KEY&name=stripe-eu")
	if err != nil {
		log.Fatal(err)
	}
	defer g.Close()
	var client *stripego.Client
	fmt.Println(g.Name(), g.As(&client))
	// Output: stripe-eu true
}
