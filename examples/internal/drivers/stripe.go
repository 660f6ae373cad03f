//go:build (payrail_full || payrail_stripe) && !payrail_no_stripe

package drivers

// The Stripe gateway (GATEWAY_URL or GATEWAY_URLS entry
// stripe://?api_key_env=STRIPE_API_KEY).
import _ "github.com/payrail/payrail/gateway/stripe"
