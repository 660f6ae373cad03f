package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseGatewayRouting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "routes.json")
	if err := os.WriteFile(path, []byte(`{"rules":[{"name":"pos","match":{"origins":["pos"]},"gateways":["mock"]}],"default":{"gateways":["stripe"]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse(lookupMap(map[string]string{
		"GATEWAY_URL":    "stripe://?api_key_env=STRIPE_API_KEY",
		"GATEWAY_URLS":   " stripe-us=stripe://?api_key_env=STRIPE_US_KEY , mock://?name=mock&latency=5ms,",
		"GATEWAY_ROUTES": path,
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"stripe://?api_key_env=STRIPE_US_KEY&name=stripe-us", "mock://?name=mock&latency=5ms"}
	if !reflect.DeepEqual(c.GatewayURLs, want) || c.GatewayRoutes != path {
		t.Fatalf("%q %q", c.GatewayURLs, c.GatewayRoutes)
	}
	if c, err := Parse(lookupMap(nil)); err != nil || c.GatewayURLs != nil || c.GatewayRoutes != "" {
		t.Fatalf("defaults: %v %+v", err, c)
	}
}

func TestParseGatewayRoutingErrors(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"GATEWAY_URLS": "not a url"}, "GATEWAY_URLS: entry 1 is not a valid URL"},
		{map[string]string{"GATEWAY_URLS": ","}, "GATEWAY_URLS: set but holds no URL"},
		{map[string]string{"GATEWAY_URLS": "a=mock://?name=b"}, "names its gateway twice"},
		{map[string]string{"GATEWAY_URLS": "mock://"}, `two gateways are named "mock"`},
		{map[string]string{"GATEWAY_URLS": "x=mock://,x=mock://"}, `two gateways are named "x"`},
		{map[string]string{"GATEWAY_ROUTES": `{"default":{}}`}, "GATEWAY_ROUTES: invalid policy: default.gateways"},
		{map[string]string{"GATEWAY_ROUTES": `{"default":`}, "GATEWAY_ROUTES: malformed policy JSON"},
		{map[string]string{"GATEWAY_ROUTES": "/nonexistent/routes.json"}, "GATEWAY_ROUTES: reading policy file"},
	} {
		_, err := Parse(lookupMap(c.env))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%v) = %v, want %q", c.env, err, c.want)
		}
	}
}

func TestLogValueRedactsGatewayURLs(t *testing.T) {
	c, err := Parse(lookupMap(map[string]string{
		"GATEWAY_URLS":   "x=stripe://?api_key_env=K&token=supersecret",
		"GATEWAY_ROUTES": `{"default":{"gateways":["mock"]}}`,
	}))
	if err != nil {
		t.Fatal(err)
	}
	s := c.LogValue().String()
	if strings.Contains(s, "supersecret") || !strings.Contains(s, "inline JSON") {
		t.Fatalf("log value %s", s)
	}
}
