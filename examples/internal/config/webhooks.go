package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/payrail/payrail/webhook"
)

// Webhook settings: outgoing merchant webhooks (docs/webhooks.md,
// "Deploying").
//
//   - PAYRAIL_WEBHOOK_ENDPOINTS_FILE: path of a JSON array of endpoints
//     (mounted from a Kubernetes Secret: it holds the signing secrets).
//   - PAYRAIL_WEBHOOK_ENDPOINTS: the same JSON array, inline. Both may be
//     set; their endpoints are combined and their ids must be distinct.
//   - PAYRAIL_WEBHOOK_ALLOW_INSECURE (default false): allow http:// URLs
//     (development only).
//   - PAYRAIL_WEBHOOK_ALLOWED_NETWORKS: comma-separated CIDR prefixes the
//     webhook client may reach although they are private, loopback or
//     link-local (default none).
//   - PAYRAIL_WEBHOOK_SWEEP_INTERVAL (default 5s): how often a worker looks
//     for deliveries due (retries, lost notifications).
//   - PAYRAIL_EVENTS: whether the processes record payment events. Unset:
//     when endpoints are configured. true: also without endpoints (an API
//     server that does not hold the endpoints' secrets, next to workers
//     that do). false with endpoints is an error.
//
// An endpoint of the JSON array:
//
//	{"id": "ep_acme_orders", "merchant": "acme", "url": "https://hooks.acme.example/payrail",
//	 "secrets": ["whsec_<current>", "whsec_<previous, during a rotation>"],
//	 "event_types": ["payment.captured", "payment.refunded"], "enabled": true}
//
// event_types empty or absent means every type; enabled absent means true.

// Limits of the webhook settings.
const (
	// maxEndpointSecrets: the current secret and, during a rotation, the
	// previous one.
	maxEndpointSecrets = 2
	// maxEndpointsBytes bounds the endpoints JSON.
	maxEndpointsBytes = 4 << 20
)

// slug is what an endpoint id and a merchant are made of (ids are metric
// label values and opsctl arguments; merchants as in PAYRAIL_API_KEYS).
var slug = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// endpointJSON is one endpoint as configured. Secrets are parsed one by one
// so that an error names which, without its value.
type endpointJSON struct {
	ID         string   `json:"id"`
	Merchant   string   `json:"merchant"`
	URL        string   `json:"url"`
	Secrets    []string `json:"secrets"`
	EventTypes []string `json:"event_types"`
	Enabled    *bool    `json:"enabled"`
}

// webhooks parses the webhook variables into c.
func (p *parser) webhooks(c *Config) {
	c.WebhookAllowInsecure = p.boolean("PAYRAIL_WEBHOOK_ALLOW_INSECURE", false)
	c.WebhookAllowedNetworks = p.prefixes("PAYRAIL_WEBHOOK_ALLOWED_NETWORKS")
	c.WebhookSweepInterval = p.durationUpTo("PAYRAIL_WEBHOOK_SWEEP_INTERVAL", 0, time.Hour)
	events := p.raw("PAYRAIL_EVENTS")
	c.Events = p.boolean("PAYRAIL_EVENTS", false)

	// The URL checks are the webhook client's own (CheckURL), with the
	// options the worker's client gets.
	client, err := webhook.NewClient(c.WebhookClientOptions()...)
	if err != nil {
		p.fail("PAYRAIL_WEBHOOK_ALLOWED_NETWORKS", "%v", err)
		return
	}
	defer client.Close()
	ids := map[string]string{} // id → the variable that defined it
	if path := p.raw("PAYRAIL_WEBHOOK_ENDPOINTS_FILE"); path != "" {
		c.WebhookEndpointsFile = path
		data, err := readLimited(path)
		if err != nil {
			p.fail("PAYRAIL_WEBHOOK_ENDPOINTS_FILE", "%v", err)
		} else {
			c.WebhookEndpoints = append(c.WebhookEndpoints, p.endpoints("PAYRAIL_WEBHOOK_ENDPOINTS_FILE", data, client, ids)...)
		}
	}
	if v := p.raw("PAYRAIL_WEBHOOK_ENDPOINTS"); v != "" {
		c.WebhookEndpoints = append(c.WebhookEndpoints, p.endpoints("PAYRAIL_WEBHOOK_ENDPOINTS", []byte(v), client, ids)...)
	}
	switch {
	case len(c.WebhookEndpoints) > 0 && events != "" && !c.Events:
		p.fail("PAYRAIL_EVENTS", "false contradicts the webhook endpoints configured (PAYRAIL_WEBHOOK_ENDPOINTS, PAYRAIL_WEBHOOK_ENDPOINTS_FILE): deliveries need events; unset one or the other")
	case len(c.WebhookEndpoints) > 0:
		c.Events = true
	}
}

// readLimited reads a file of at most maxEndpointsBytes.
func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the endpoints: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxEndpointsBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the endpoints: %w", err)
	}
	if len(b) > maxEndpointsBytes {
		return nil, fmt.Errorf("%s is over %d bytes", path, maxEndpointsBytes)
	}
	return b, nil
}

// endpoints parses and validates a JSON array of endpoints from variable
// name. Errors name the endpoint by position and id, never a secret or a
// URL (whose path or query may hold a token).
func (p *parser) endpoints(name string, data []byte, client *webhook.Client, ids map[string]string) []webhook.Endpoint {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var raw []endpointJSON
	if err := dec.Decode(&raw); err != nil {
		p.fail(name, "not a JSON array of endpoints (%s); want [{\"id\", \"merchant\", \"url\", \"secrets\": [\"whsec_...\"], \"event_types\", \"enabled\"}, ...]", jsonProblem(err))
		return nil
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		p.fail(name, "trailing data after the JSON array of endpoints")
		return nil
	}
	if len(raw) == 0 {
		p.fail(name, "set but holds no endpoint")
		return nil
	}
	var out []webhook.Endpoint
	for i, r := range raw {
		where := "endpoint " + strconv.Itoa(i+1)
		if r.ID != "" {
			where += " (" + strconv.Quote(r.ID) + ")"
		}
		bad := func(format string, args ...any) { p.fail(name, where+": "+format, args...) }
		ok := true
		switch {
		case !slug.MatchString(r.ID):
			bad("id must be 1-64 letters, digits, '.', '_' or '-'")
			ok = false
		case ids[r.ID] != "":
			bad("id is used twice (also in %s)", ids[r.ID])
			ok = false
		default:
			ids[r.ID] = name
		}
		if !slug.MatchString(r.Merchant) {
			bad("merchant must be 1-64 letters, digits, '.', '_' or '-'")
			ok = false
		}
		if r.URL == "" {
			bad("url is missing")
			ok = false
		} else if err := client.CheckURL(r.URL); err != nil {
			msg := strings.TrimPrefix(err.Error(), "webhook: ")
			if strings.Contains(msg, "http is allowed only") {
				msg += " (or set PAYRAIL_WEBHOOK_ALLOW_INSECURE=true in development)"
			}
			if errors.Is(err, webhook.ErrForbiddenAddress) {
				msg += " (PAYRAIL_WEBHOOK_ALLOWED_NETWORKS opens a private network)"
			}
			bad("url: %s", msg)
			ok = false
		}
		ep := webhook.Endpoint{ID: r.ID, Merchant: r.Merchant, URL: r.URL, Enabled: r.Enabled == nil || *r.Enabled}
		switch n := len(r.Secrets); {
		case n == 0:
			bad("secrets: none; want the current whsec_ secret (and the previous one during a rotation)")
			ok = false
		case n > maxEndpointSecrets:
			bad("secrets: %d given; want the current one and, during a rotation, the previous one", n)
			ok = false
		}
		seen := map[string]bool{}
		for j, s := range r.Secrets {
			sec, err := webhook.ParseSecret(s) // its errors never hold the secret
			if err != nil {
				bad("secret %d: %s", j+1, strings.TrimPrefix(err.Error(), "webhook: "))
				ok = false
				continue
			}
			if seen[sec.Reveal()] {
				bad("secret %d repeats secret %d", j+1, len(seen))
				ok = false
			}
			seen[sec.Reveal()] = true
			ep.Secrets = append(ep.Secrets, sec)
		}
		for _, t := range r.EventTypes {
			et := webhook.EventType(t)
			if !et.Known() {
				bad("event type %q is unknown; want some of %s", t, eventTypeList())
				ok = false
				continue
			}
			ep.EventTypes = append(ep.EventTypes, et)
		}
		if ok {
			out = append(out, ep)
		}
	}
	return out
}

// jsonProblem describes a JSON decoding error without quoting the input.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Sprintf("malformed JSON at byte %d", syn.Offset)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		if typ.Field == "" {
			return fmt.Sprintf("a JSON %s where an array was expected", typ.Value)
		}
		return fmt.Sprintf("%s is a JSON %s, want %s", typ.Field, typ.Value, typ.Type)
	}
	// Unknown fields ("json: unknown field \"x\""), end of input.
	return strings.TrimPrefix(err.Error(), "json: ")
}

func eventTypeList() string {
	var s []string
	for _, t := range webhook.EventTypes() {
		s = append(s, string(t))
	}
	return strings.Join(s, ", ")
}

func (p *parser) boolean(name string, def bool) bool {
	v := p.raw(name)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(name, "%q is invalid; want true or false", v)
		return def
	}
	return b
}

// prefixes parses comma-separated CIDR prefixes.
func (p *parser) prefixes(name string) []netip.Prefix {
	v := p.raw(name)
	if v == "" {
		return nil
	}
	var out []netip.Prefix
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		pr, err := netip.ParsePrefix(item)
		if err != nil {
			p.fail(name, "%q is not a CIDR prefix; want such as 10.20.0.0/16 or 127.0.0.0/8", item)
			continue
		}
		out = append(out, pr.Masked())
	}
	if len(out) == 0 {
		p.fail(name, "set but holds no prefix")
	}
	return out
}

// Webhooks reports whether webhook endpoints are configured: workers then
// deliver payment events to them.
func (c *Config) Webhooks() bool { return len(c.WebhookEndpoints) > 0 }

// WebhookClientOptions returns the options of the webhook client the
// configuration describes (http, allowed networks).
func (c *Config) WebhookClientOptions() []webhook.ClientOption {
	var opts []webhook.ClientOption
	if c.WebhookAllowInsecure {
		opts = append(opts, webhook.AllowInsecureHTTP())
	}
	if len(c.WebhookAllowedNetworks) > 0 {
		opts = append(opts, webhook.WithAllowedNetworks(c.WebhookAllowedNetworks...))
	}
	return opts
}

// webhooksForLog describes the webhook settings for the start-up log:
// endpoint ids and merchants, never URLs or secrets.
func (c *Config) webhooksForLog() []any {
	var eps []string
	for _, e := range c.WebhookEndpoints {
		eps = append(eps, e.ID+"@"+e.Merchant)
	}
	var nets []string
	for _, n := range c.WebhookAllowedNetworks {
		nets = append(nets, n.String())
	}
	return []any{
		"events", c.Events,
		"endpoints", eps,
		"endpoints_file", c.WebhookEndpointsFile,
		"allow_insecure", c.WebhookAllowInsecure,
		"allowed_networks", nets,
	}
}
