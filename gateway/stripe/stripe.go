// Package stripe is the Stripe gateway driver, registered as "stripe",
// built on github.com/stripe/stripe-go/v82 and Stripe's PaymentIntents API.
//
//	import _ "github.com/payrail/payrail/gateway/stripe"
//
//	g, err := gateway.Open(ctx, "stripe://?api_key_env=STRIPE_API_KEY&name=stripe-eu")
//
// # URL
//
//	stripe://?api_key_env=STRIPE_API_KEY      the API key is read from this environment variable (the default)
//	stripe://?api_key_file=/run/secrets/stripe the API key is read from this file (e.g. a mounted secret)
//
// The API key is never accepted in the URL itself, and never appears in
// logs or errors. Other parameters:
//
//	base_url             API base URL (default https://api.stripe.com), e.g. a stripe-mock
//	max_network_retries  retries stripe-go makes itself (default 0: payrail's processor retries,
//	                     classifying each attempt)
//	lookup_window        how far back Lookup lists objects, strongly consistent (default 1h)
//	lookup_max_scan      how many objects that listing may scan before it gives up (default 1000)
//	webhook_secret_env   environment variable holding the webhook endpoint's signing secret
//	                     (whsec_...); several, comma-separated, while rolling a secret
//	webhook_secret_file  the same, read from a file
//	webhook_tolerance    how old a webhook's signed timestamp may be (default 5m)
//
// # Operations
//
// Authorize creates and confirms a PaymentIntent in one request with the
// payment method, capture_method manual or automatic, and
// error_on_requires_action (server-side payments cannot complete 3-D
// Secure: such payments are declined with authentication_required).
// Capture captures it (partially with amount_to_capture; Stripe releases
// the rest), Void cancels it, Refund creates a (partial) refund. payrail's
// idempotency key is sent as Stripe's Idempotency-Key on every call, and
// payrail's payment id, merchant, origin and keys are stored in metadata
// (payrail_payment_id, payrail_merchant, payrail_origin, payrail_key,
// payrail_capture_key, payrail_refund_id) next to the payment's own.
//
// Amounts are payrail's ISO 4217 minor units; the driver converts ISK,
// which Stripe represents with two decimals, and otherwise passes them
// through (three-decimal currencies must end in 0 for Stripe).
//
// # Errors
//
// Stripe's errors become *gateway.Error classes: card_error → declined
// with the decline code (soft for try_again_later, issuer_not_available,
// processing_error, reenter_transaction, approve_with_id); 401/403 →
// authentication; 429 (rate_limit, lock_timeout) → transient, not
// processed; api_error and other 5xx → transient with an unknown outcome;
// idempotency_error → invalid request (another request used the key);
// 409 idempotency_key_in_use → transient, unknown outcome; resource_missing
// → not found; other invalid_request_error → invalid request, not
// processed. A network failure is "not processed" only when the request
// was never completely written (connection refused, DNS, TLS): the driver
// traces each HTTP request to know. A timeout after sending is ambiguous.
//
// # Lookup
//
// Lookup understands payrail's idempotency keys: "<payment id>:authorize",
// ":capture" and ":void" find the payment's PaymentIntent by metadata
// (Stripe Search, then — because Search is eventually consistent — a
// strongly consistent listing of the PaymentIntents created within
// lookup_window); any other key is a refund id, found by listing the
// refunds created within lookup_window. Not finding an object is reported
// as not found only when that listing was complete; otherwise Lookup fails
// transiently and the payment stays processing for the reconciler. A
// PaymentIntent older than lookup_window is found only through Search,
// which lags by under a minute normally and up to an hour in outages: keep
// lookup_window above that lag.
//
// As converts to **stripe.Client of github.com/stripe/stripe-go/v82.
package stripe

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	stripego "github.com/stripe/stripe-go/v82"
	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/driver"
)

func init() { gateway.Register("stripe", opener{}) }

// DefaultAPIKeyEnv is the environment variable the API key is read from
// when the URL names neither api_key_env nor api_key_file.
const DefaultAPIKeyEnv = "STRIPE_API_KEY"

type opener struct{}

func (opener) Open(_ context.Context, u *url.URL) (driver.Gateway, error) {
	if u.User != nil {
		// Stripe keys are HTTP basic-auth user names: this is where one lands by mistake.
		return nil, errors.New("stripe: never put the API key in the URL (user information); use api_key_env or api_key_file")
	}
	if u.Opaque != "" || u.Host != "" || (u.Path != "" && u.Path != "/") {
		return nil, errors.New("stripe: the URL takes no host or path: use stripe://?api_key_env=STRIPE_API_KEY")
	}
	q := u.Query()
	var opts []Option
	keyEnv, keyFile := "", ""
	for k, vs := range q {
		v := vs[len(vs)-1]
		switch k {
		case "api_key", "key", "secret_key":
			return nil, errors.New("stripe: never put the API key in the URL; use api_key_env or api_key_file")
		case "api_key_env":
			keyEnv = v
		case "api_key_file":
			keyFile = v
		case "webhook_secret", "webhook_signing_secret":
			return nil, errors.New("stripe: never put the webhook signing secret in the URL; use webhook_secret_env or webhook_secret_file")
		case "webhook_secret_env", "webhook_secret_file":
			secrets, err := readWebhookSecrets(k, v)
			if err != nil {
				return nil, err
			}
			opts = append(opts, WithWebhookSecret(secrets...))
		case "webhook_tolerance":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 || d > time.Hour {
				return nil, fmt.Errorf("stripe: webhook_tolerance %q: want a positive duration up to 1h, such as 5m", v)
			}
			opts = append(opts, WithWebhookTolerance(d))
		case "base_url":
			opts = append(opts, WithBaseURL(v))
		case "max_network_retries":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 10 {
				return nil, fmt.Errorf("stripe: max_network_retries %q: want an integer from 0 to 10", v)
			}
			opts = append(opts, WithMaxNetworkRetries(n))
		case "lookup_window":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("stripe: lookup_window %q: want a positive duration such as 1h", v)
			}
			opts = append(opts, WithLookupWindow(d))
		case "lookup_max_scan":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("stripe: lookup_max_scan %q: want a positive integer", v)
			}
			opts = append(opts, WithLookupMaxScan(n))
		default:
			return nil, fmt.Errorf("stripe: unknown URL parameter %q (want api_key_env, api_key_file, base_url, max_network_retries, lookup_window, lookup_max_scan, webhook_secret_env, webhook_secret_file, webhook_tolerance)", k)
		}
	}
	key, err := readKey(keyEnv, keyFile)
	if err != nil {
		return nil, err
	}
	return New(key, opts...)
}

// readKey reads the API key from the environment variable or file named.
// Errors name where the key was looked for, never the key.
func readKey(env, file string) (string, error) {
	if env != "" && file != "" {
		return "", errors.New("stripe: give api_key_env or api_key_file, not both")
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("stripe: reading the API key file: %w", err)
		}
		k := strings.TrimSpace(string(b))
		if k == "" {
			return "", fmt.Errorf("stripe: the API key file %s is empty", file)
		}
		return k, nil
	}
	if env == "" {
		env = DefaultAPIKeyEnv
	}
	k := strings.TrimSpace(os.Getenv(env))
	if k == "" {
		return "", fmt.Errorf("stripe: the API key environment variable %s is not set", env)
	}
	return k, nil
}

// Option configures a Gateway.
type Option func(*config)

type config struct {
	baseURL    string
	httpClient *http.Client
	retries    int
	window     time.Duration
	maxScan    int
	// webhook verification (webhook.go)
	webhookSecrets   []string
	webhookTolerance time.Duration
}

// WithBaseURL sends requests to base instead of https://api.stripe.com
// (e.g. a stripe-mock server).
func WithBaseURL(base string) Option { return func(c *config) { c.baseURL = base } }

// WithHTTPClient uses hc for requests. Its transport is wrapped to trace
// whether each request was sent (which decides "not processed").
func WithHTTPClient(hc *http.Client) Option { return func(c *config) { c.httpClient = hc } }

// WithMaxNetworkRetries lets stripe-go retry network errors and 409/5xx
// itself, with the same idempotency key (default 0).
func WithMaxNetworkRetries(n int) Option { return func(c *config) { c.retries = n } }

// WithLookupWindow sets how far back Lookup lists PaymentIntents and
// refunds (default 1h).
func WithLookupWindow(d time.Duration) Option { return func(c *config) { c.window = d } }

// WithLookupMaxScan bounds how many objects one Lookup listing scans
// (default 1000).
func WithLookupMaxScan(n int) Option { return func(c *config) { c.maxScan = n } }

// Gateway is the Stripe driver. Wrap it with gateway.New to use it
// directly, or open it with gateway.Open("stripe://...").
type Gateway struct {
	client  *stripego.Client
	window  time.Duration
	maxScan int

	webhookSecrets   []string // endpoint signing secrets; none: webhooks off
	webhookTolerance time.Duration
}

// New returns a Stripe driver using apiKey (a secret or restricted key).
func New(apiKey string, opts ...Option) (*Gateway, error) {
	if strings.TrimSpace(apiKey) == "" {
		return nil, errors.New("stripe: empty API key")
	}
	c := config{window: time.Hour, maxScan: 1000}
	for _, o := range opts {
		o(&c)
	}
	if c.retries < 0 || c.window <= 0 || c.maxScan <= 0 {
		return nil, errors.New("stripe: retries must not be negative; lookup window and scan must be positive")
	}
	base := stripego.APIURL
	if c.baseURL != "" {
		u, err := url.Parse(c.baseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("stripe: base_url %q: want an http(s) URL", c.baseURL)
		}
		base = strings.TrimSuffix(c.baseURL, "/")
	}
	hc := &http.Client{Timeout: 80 * time.Second}
	if c.httpClient != nil {
		cp := *c.httpClient
		hc = &cp
	}
	rt := hc.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	hc.Transport = tracingTransport{rt}
	backend := stripego.GetBackendWithConfig(stripego.APIBackend, &stripego.BackendConfig{
		HTTPClient:        hc,
		URL:               stripego.String(base),
		MaxNetworkRetries: stripego.Int64(int64(c.retries)),
		LeveledLogger:     &stripego.LeveledLogger{Level: stripego.LevelNull},
		EnableTelemetry:   stripego.Bool(false),
	})
	client := stripego.NewClient(apiKey, stripego.WithBackends(&stripego.Backends{
		API: backend, Connect: backend, Uploads: backend, MeterEvents: backend,
	}))
	tol := c.webhookTolerance
	if tol == 0 {
		tol = webhook.DefaultTolerance
	}
	return &Gateway{client: client, window: c.window, maxScan: c.maxScan, webhookSecrets: c.webhookSecrets, webhookTolerance: tol}, nil
}

// Metadata keys the driver sets.
const (
	MetaPaymentID  = "payrail_payment_id"
	MetaMerchant   = "payrail_merchant"
	MetaOrigin     = "payrail_origin"
	MetaKey        = "payrail_key"
	MetaCaptureKey = "payrail_capture_key"
	MetaRefundID   = "payrail_refund_id"
)

// Authorize implements driver.Gateway: it creates and confirms a
// PaymentIntent.
func (g *Gateway) Authorize(ctx context.Context, r *driver.AuthorizeRequest) (*driver.Transaction, error) {
	amount, err := toStripeAmount(r.Amount, r.Currency)
	if err != nil {
		return nil, err
	}
	capture := "automatic"
	if r.CaptureMethod == driver.CaptureManual {
		capture = "manual"
	}
	md := make(map[string]string, len(r.Metadata)+4)
	for k, v := range r.Metadata {
		md[k] = v
	}
	md[MetaPaymentID] = r.PaymentID
	md[MetaKey] = r.IdempotencyKey
	if r.Merchant != "" {
		md[MetaMerchant] = r.Merchant
	}
	if r.Origin != "" {
		md[MetaOrigin] = r.Origin
	}
	params := &stripego.PaymentIntentCreateParams{
		Amount:        stripego.Int64(amount),
		Currency:      stripego.String(strings.ToLower(r.Currency)),
		PaymentMethod: stripego.String(r.PaymentMethod),
		CaptureMethod: stripego.String(capture),
		Confirm:       stripego.Bool(true),
		AutomaticPaymentMethods: &stripego.PaymentIntentCreateAutomaticPaymentMethodsParams{
			Enabled: stripego.Bool(true), AllowRedirects: stripego.String("never"),
		},
		ErrorOnRequiresAction: stripego.Bool(true),
		Metadata:              md,
	}
	params.SetIdempotencyKey(r.IdempotencyKey)
	ctx, ci := withCallInfo(ctx)
	pi, err := g.client.V1PaymentIntents.Create(ctx, params)
	if err != nil {
		return nil, classify(ctx, err, ci)
	}
	return authorizeResult(pi)
}

// authorizeResult maps the PaymentIntent a confirmation returned.
func authorizeResult(pi *stripego.PaymentIntent) (*driver.Transaction, error) {
	tx, err := txFromPI(pi)
	if err != nil {
		return nil, err
	}
	switch pi.Status {
	case stripego.PaymentIntentStatusRequiresCapture, stripego.PaymentIntentStatusSucceeded:
		return tx, nil
	case stripego.PaymentIntentStatusRequiresPaymentMethod:
		if pi.LastPaymentError != nil { // Stripe reports declines as 402 errors; this is a fallback
			code := declineCode(pi.LastPaymentError)
			return nil, &driver.Error{Kind: driver.KindDeclined, Code: "card_declined", DeclineCode: code,
				SoftDecline: softDeclines[code], NotProcessed: true, Message: "the payment was declined"}
		}
	case stripego.PaymentIntentStatusRequiresAction:
		return nil, &driver.Error{Kind: driver.KindDeclined, Code: "authentication_required", DeclineCode: "authentication_required",
			NotProcessed: true, Message: "the payment needs customer authentication, which a server-side payment cannot do"}
	case stripego.PaymentIntentStatusProcessing:
		return nil, &driver.Error{Kind: driver.KindTransient, Code: "processing",
			Message: "Stripe is still processing the payment; its outcome is not known yet"}
	}
	return nil, &driver.Error{Kind: driver.KindUnknown, Code: "unexpected_status",
		Message: fmt.Sprintf("PaymentIntent %s is %s after confirmation", pi.ID, pi.Status)}
}

// Capture implements driver.Gateway.
func (g *Gateway) Capture(ctx context.Context, r *driver.CaptureRequest) (*driver.Transaction, error) {
	amount, err := toStripeAmount(r.Amount, r.Currency)
	if err != nil {
		return nil, err
	}
	params := &stripego.PaymentIntentCaptureParams{
		AmountToCapture: stripego.Int64(amount),
		Metadata:        map[string]string{MetaCaptureKey: r.IdempotencyKey},
	}
	params.SetIdempotencyKey(r.IdempotencyKey)
	ctx, ci := withCallInfo(ctx)
	pi, err := g.client.V1PaymentIntents.Capture(ctx, r.Reference, params)
	if err != nil {
		return nil, classify(ctx, err, ci)
	}
	if pi.Status != stripego.PaymentIntentStatusSucceeded {
		return nil, &driver.Error{Kind: driver.KindUnknown, Code: "unexpected_status",
			Message: fmt.Sprintf("PaymentIntent %s is %s after capture", pi.ID, pi.Status)}
	}
	return txFromPI(pi)
}

// Void implements driver.Gateway: it cancels the PaymentIntent.
func (g *Gateway) Void(ctx context.Context, r *driver.VoidRequest) (*driver.Transaction, error) {
	params := &stripego.PaymentIntentCancelParams{}
	params.SetIdempotencyKey(r.IdempotencyKey)
	ctx, ci := withCallInfo(ctx)
	pi, err := g.client.V1PaymentIntents.Cancel(ctx, r.Reference, params)
	if err != nil {
		return nil, classify(ctx, err, ci)
	}
	if pi.Status != stripego.PaymentIntentStatusCanceled {
		return nil, &driver.Error{Kind: driver.KindUnknown, Code: "unexpected_status",
			Message: fmt.Sprintf("PaymentIntent %s is %s after cancellation", pi.ID, pi.Status)}
	}
	return txFromPI(pi)
}

// Refund implements driver.Gateway.
func (g *Gateway) Refund(ctx context.Context, r *driver.RefundRequest) (*driver.Transaction, error) {
	amount, err := toStripeAmount(r.Amount, r.Currency)
	if err != nil {
		return nil, err
	}
	params := &stripego.RefundCreateParams{
		PaymentIntent: stripego.String(r.Reference),
		Amount:        stripego.Int64(amount),
		Metadata:      map[string]string{MetaPaymentID: r.PaymentID, MetaRefundID: r.RefundID, MetaKey: r.IdempotencyKey},
	}
	params.AddExpand("charge")
	params.SetIdempotencyKey(r.IdempotencyKey)
	ctx, ci := withCallInfo(ctx)
	re, err := g.client.V1Refunds.Create(ctx, params)
	if err != nil {
		return nil, classify(ctx, err, ci)
	}
	return txFromRefund(re, r.Reference, r.Currency)
}

// Ping implements driver.Pinger: it lists one PaymentIntent, which checks
// connectivity and that the key may read payments.
func (g *Gateway) Ping(ctx context.Context) error {
	params := &stripego.PaymentIntentListParams{}
	params.Limit = stripego.Int64(1)
	ctx, ci := withCallInfo(ctx)
	for _, err := range g.client.V1PaymentIntents.List(ctx, params) {
		if err != nil {
			return classify(ctx, err, ci)
		}
		break
	}
	return nil
}

// Close implements driver.Gateway; the client holds no resources.
func (g *Gateway) Close() error { return nil }

// As implements driver.Gateway; it supports **stripe.Client of
// github.com/stripe/stripe-go/v82.
func (g *Gateway) As(i any) bool {
	p, ok := i.(**stripego.Client)
	if ok {
		*p = g.client
	}
	return ok
}

// txFromPI maps a PaymentIntent to a transaction.
func txFromPI(pi *stripego.PaymentIntent) (*driver.Transaction, error) {
	cur := strings.ToUpper(string(pi.Currency))
	tx := &driver.Transaction{Reference: pi.ID, Amount: fromStripeAmount(pi.Amount, cur), Currency: cur}
	switch pi.Status {
	case stripego.PaymentIntentStatusRequiresCapture:
		tx.Status = driver.StatusAuthorized
	case stripego.PaymentIntentStatusSucceeded:
		tx.Status = driver.StatusCaptured
		tx.AmountCaptured = fromStripeAmount(pi.AmountReceived, cur)
		if ch := pi.LatestCharge; ch != nil && ch.AmountRefunded > 0 {
			tx.AmountRefunded = fromStripeAmount(ch.AmountRefunded, cur)
			if ch.Refunded {
				tx.Status = driver.StatusRefunded
			}
		}
	case stripego.PaymentIntentStatusCanceled:
		tx.Status = driver.StatusVoided
	case stripego.PaymentIntentStatusRequiresPaymentMethod:
		if pi.LastPaymentError != nil {
			tx.Status = driver.StatusDeclined
			tx.DeclineCode = declineCode(pi.LastPaymentError)
		}
	}
	return tx, nil
}

func txFromRefund(re *stripego.Refund, reference, currency string) (*driver.Transaction, error) {
	if re.Status == stripego.RefundStatusFailed || re.Status == stripego.RefundStatusCanceled {
		return nil, &driver.Error{Kind: driver.KindDeclined, Code: "refund_" + string(re.Status),
			Message: fmt.Sprintf("refund %s %s", re.ID, re.Status)}
	}
	cur := strings.ToUpper(string(re.Currency))
	if cur == "" {
		cur = strings.ToUpper(currency)
	}
	tx := &driver.Transaction{Reference: reference, RefundReference: re.ID, Currency: cur, Status: driver.StatusCaptured}
	if re.PaymentIntent != nil && re.PaymentIntent.ID != "" {
		tx.Reference = re.PaymentIntent.ID
	}
	if ch := re.Charge; ch != nil && ch.Amount > 0 {
		tx.Amount = fromStripeAmount(ch.Amount, cur)
		tx.AmountCaptured = fromStripeAmount(ch.AmountCaptured, cur)
		tx.AmountRefunded = fromStripeAmount(ch.AmountRefunded, cur)
		if ch.Refunded {
			tx.Status = driver.StatusRefunded
		}
	}
	return tx, nil
}

// twoDecimalInStripe lists currencies whose ISO 4217 minor unit is 0 but
// that Stripe represents with two decimals.
var twoDecimalInStripe = map[string]bool{"ISK": true}

// toStripeAmount converts an amount in ISO 4217 minor units to Stripe's
// unit. A non-positive amount is refused before anything is sent, so the
// refusal is certain to have had no effect (Stripe validates amounts too,
// but stripe-mock does not, and a request not sent costs nothing).
func toStripeAmount(amount int64, currency string) (int64, error) {
	if amount <= 0 {
		return 0, &driver.Error{Kind: driver.KindInvalidRequest, Code: "amount_invalid", NotProcessed: true,
			Message: "amount must be a positive number of minor units"}
	}
	if !twoDecimalInStripe[strings.ToUpper(currency)] {
		return amount, nil
	}
	if amount > (1<<63-1)/100 {
		return 0, &driver.Error{Kind: driver.KindInvalidRequest, Code: "amount_invalid", NotProcessed: true,
			Message: "amount out of range for " + currency}
	}
	return amount * 100, nil
}

func fromStripeAmount(amount int64, currency string) int64 {
	if twoDecimalInStripe[currency] {
		return amount / 100
	}
	return amount
}
