package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/webhook"
)

func testSecret(t *testing.T) string {
	t.Helper()
	s, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s.Reveal()
}

func TestParseWebhooks(t *testing.T) {
	cur, prev, other := testSecret(t), testSecret(t), testSecret(t)
	path := filepath.Join(t.TempDir(), "endpoints.json")
	file := fmt.Sprintf(`[
	  {"id": "ep_acme", "merchant": "acme", "url": "https://hooks.acme.example/payrail?token=t0k", "secrets": [%q, %q],
	   "event_types": ["payment.captured", "payment.refunded"]},
	  {"id": "ep_acme_paused", "merchant": "acme", "url": "https://paused.acme.example/", "secrets": [%q], "enabled": false}
	]`, cur, prev, other)
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse(lookupMap(map[string]string{
		"PAYRAIL_WEBHOOK_ENDPOINTS_FILE":   path,
		"PAYRAIL_WEBHOOK_ENDPOINTS":        fmt.Sprintf(`[{"id":"ep_dev","merchant":"globex","url":"http://127.0.0.1:9000/hook","secrets":[%q]}]`, other),
		"PAYRAIL_WEBHOOK_ALLOW_INSECURE":   "true",
		"PAYRAIL_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8, 10.20.0.0/16",
		"PAYRAIL_WEBHOOK_SWEEP_INTERVAL":   "250ms",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Webhooks() || !c.Events || !c.WebhookAllowInsecure || c.WebhookSweepInterval != 250*time.Millisecond || c.WebhookEndpointsFile != path {
		t.Fatalf("config %+v", c)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.20.0.0/16")}; !slices.Equal(c.WebhookAllowedNetworks, want) {
		t.Errorf("allowed networks %v, want %v", c.WebhookAllowedNetworks, want)
	}
	if len(c.WebhookEndpoints) != 3 {
		t.Fatalf("%d endpoints, want 3", len(c.WebhookEndpoints))
	}
	a, paused, dev := c.WebhookEndpoints[0], c.WebhookEndpoints[1], c.WebhookEndpoints[2]
	if a.ID != "ep_acme" || a.Merchant != "acme" || !a.Enabled || len(a.Secrets) != 2 ||
		a.Secrets[0].Reveal() != cur || a.Secrets[1].Reveal() != prev ||
		!slices.Equal(a.EventTypes, []webhook.EventType{webhook.PaymentCaptured, webhook.PaymentRefunded}) {
		t.Errorf("first endpoint %+v", a)
	}
	if paused.Enabled || len(paused.EventTypes) != 0 {
		t.Errorf("paused endpoint %+v: want disabled, every type", paused)
	}
	if dev.ID != "ep_dev" || dev.Merchant != "globex" || dev.URL != "http://127.0.0.1:9000/hook" || !dev.Enabled {
		t.Errorf("inline endpoint %+v", dev)
	}
	// The start-up log names endpoints, never their URLs or secrets.
	s := c.LogValue().String()
	for _, secret := range []string{cur, prev, other, "t0k", "hooks.acme.example"} {
		if strings.Contains(s, secret) {
			t.Errorf("log value holds %q: %s", secret, s)
		}
	}
	if !strings.Contains(s, "ep_acme@acme") {
		t.Errorf("log value does not name the endpoints: %s", s)
	}

	// Events without endpoints.
	c, err = Parse(lookupMap(map[string]string{"PAYRAIL_EVENTS": "true"}))
	if err != nil || !c.Events || c.Webhooks() {
		t.Fatalf("PAYRAIL_EVENTS=true: %+v, %v", c, err)
	}
	c, err = Parse(lookupMap(nil))
	if err != nil || c.Events || c.Webhooks() {
		t.Fatalf("defaults: events %v, webhooks %v, %v", c.Events, c.Webhooks(), err)
	}
}

func TestParseWebhooksErrors(t *testing.T) {
	sec, sec2 := testSecret(t), testSecret(t)
	ep := func(fields string) string {
		return `[{"id":"ep_1","merchant":"acme","url":"https://h.example/x","secrets":["` + sec + `"]` + fields + `}]`
	}
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"not json", map[string]string{"PAYRAIL_WEBHOOK_ENDPOINTS": `{"id":`}, []string{"PAYRAIL_WEBHOOK_ENDPOINTS", "not a JSON array"}},
		{"object not array", map[string]string{"PAYRAIL_WEBHOOK_ENDPOINTS": `{"id":"x"}`}, []string{"PAYRAIL_WEBHOOK_ENDPOINTS", "not a JSON array"}},
		{"unknown field", map[string]string{"PAYRAIL_WEBHOOK_ENDPOINTS": ep(`,"secret":"x"`)}, []string{`unknown field "secret"`}},
		{"secret of the wrong type", map[string]string{"PAYRAIL_WEBHOOK_ENDPOINTS": `[{"id":"ep_1","secrets":"` + sec + `"}]`}, []string{"secrets is a JSON string"}},
		{"empty array", map[string]string{"PAYRAIL_WEBHOOK_ENDPOINTS": `[]`}, []string{"holds no endpoint"}},
		{"trailing data", map[string]string{"PAYRAIL_WEBHOOK_ENDPOINTS": ep("") + `]`}, []string{"trailing data"}},
		{"missing id", map[string]string{"PAYRAIL_WEBHOOK_ENDPOINTS": `[{"merchant":"acme","url":"https://h.example","secrets":["` + sec + `"]}]`}, []string{"endpoint 1: id must be"}},
		{"bad merchant", map[string]string{"PAYRAIL_WEBHOOK_ENDPOINTS": `[{"id":"e","merchant":"a b","url":"https://h.example","secrets":["` + sec + `"]}]`}, []string{`endpoint 1 ("e"): merchant`}},
		{"duplicate id", map[string]string{"PAYRAIL_WEBHOOK_ENDPOINTS": strings.TrimSuffix(ep(""), "]") + "," + ep("")[1:]}, []string{`endpoint 2 ("ep_1"): id is used twice`}},
		{"duplicate id across file and inline", map[string]string{"PAYRAIL_WEBHOOK_ENDPOINTS": ep(""), "PAYRAIL_WEBHOOK_ENDPOINTS_FILE": "FILE"},
			[]string{"PAYRAIL_WEBHOOK_ENDPOINTS:", "id is used twice (also in PAYRAIL_WEBHOOK_ENDPOINTS_FILE)"}},
		{"http url", map[string]string{"PAYRAIL_WEBHOOK_ENDPOINTS": strings.Replace(ep(""), "https:", "http:", 1)}, []string{"url:", "https", "PAYRAIL_WEBHOOK_ALLOW_INSECURE=true"}},
		{"ftp url", map[string]string{"PAYRAIL_WEBHOOK_ENDPOINTS": strings.Replace(ep(""), "https:", "ftp:", 1)}, []string{"url:", "scheme"}},
		{"credentials in url", map[string]string{"PAYRAIL_WEBHOOK_ENDPOINTS": strings.Replace(ep(""), "https://", "https://u:p@", 1)}, []string{"url:", "credentials"}},
		{"loopback refused", map[string]string{"PAYRAIL_WEBHOOK_ENDPOINTS": strings.Replace(ep(""), "h.example", "127.0.0.1:8443", 1)}, []string{"url:", "PAYRAIL_WEBHOOK_ALLOWED_NETWORKS"}},
		{"no url", map[string]string{"PAYRAIL_WEBHOOK_ENDPOINTS": strings.Replace(ep(""), "https://h.example/x", "", 1)}, []string{"url is missing"}},
		{"no secret", map[string]string{"PAYRAIL_WEBHOOK_ENDPOINTS": strings.Replace(ep(""), `"`+sec+`"`, "", 1)}, []string{"secrets: none"}},
		{"three secrets", map[string]string{"PAYRAIL_WEBHOOK_ENDPOINTS": strings.Replace(ep(""), `"`+sec+`"`, `"`+sec+`","`+sec2+`","`+testSecret(t)+`"`, 1)}, []string{"secrets: 3 given"}},
		{"repeated secret", map[string]string{"PAYRAIL_WEBHOOK_ENDPOINTS": strings.Replace(ep(""), `"`+sec+`"`, `"`+sec+`","`+sec+`"`, 1)}, []string{"secret 2 repeats secret 1"}},
		{"secret without prefix", map[string]string{"PAYRAIL_WEBHOOK_ENDPOINTS": strings.Replace(ep(""), sec, strings.TrimPrefix(sec, "whsec_"), 1)}, []string{"secret 1:", "whsec_"}},
		{"secret too short", map[string]string{"PAYRAIL_WEBHOOK_ENDPOINTS": strings.Replace(ep(""), sec, "whsec_c2hvcnQ=", 1)}, []string{"secret 1:", "bytes"}},
		{"unknown event type", map[string]string{"PAYRAIL_WEBHOOK_ENDPOINTS": ep(`,"event_types":["payment.captured","payment.exploded"]`)}, []string{`event type "payment.exploded" is unknown`, "payment.refunded"}},
		{"missing file", map[string]string{"PAYRAIL_WEBHOOK_ENDPOINTS_FILE": "/nonexistent/endpoints.json"}, []string{"PAYRAIL_WEBHOOK_ENDPOINTS_FILE", "reading the endpoints"}},
		{"bad prefix", map[string]string{"PAYRAIL_WEBHOOK_ALLOWED_NETWORKS": "10.0.0.0/8,10.0.0.1"}, []string{"PAYRAIL_WEBHOOK_ALLOWED_NETWORKS", `"10.0.0.1" is not a CIDR prefix`}},
		{"insecure not a bool", map[string]string{"PAYRAIL_WEBHOOK_ALLOW_INSECURE": "yes please"}, []string{"PAYRAIL_WEBHOOK_ALLOW_INSECURE", "true or false"}},
		{"sweep interval", map[string]string{"PAYRAIL_WEBHOOK_SWEEP_INTERVAL": "5"}, []string{"PAYRAIL_WEBHOOK_SWEEP_INTERVAL"}},
		{"events off with endpoints", map[string]string{"PAYRAIL_EVENTS": "false", "PAYRAIL_WEBHOOK_ENDPOINTS": ep("")}, []string{"PAYRAIL_EVENTS", "contradicts"}},
		{"several at once", map[string]string{"PAYRAIL_WEBHOOK_ENDPOINTS": `[{"id":"a","merchant":"m","url":"http://h.example","secrets":["whsec_x"],"event_types":["nope"]}]`},
			[]string{"url:", "secret 1:", `event type "nope"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env["PAYRAIL_WEBHOOK_ENDPOINTS_FILE"] == "FILE" {
				path := filepath.Join(t.TempDir(), "endpoints.json")
				if err := os.WriteFile(path, []byte(ep("")), 0o600); err != nil {
					t.Fatal(err)
				}
				tt.env["PAYRAIL_WEBHOOK_ENDPOINTS_FILE"] = path
			}
			// Never a secret, whole or in part, nor a URL's path.
			wantParseError(t, tt.env, tt.want, sec, strings.TrimPrefix(sec, "whsec_"), sec2, "c2hvcnQ", "/x")
		})
	}
}
