package config

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/payrail/payrail/gateway/routing"
)

// gatewayURLs parses GATEWAY_URLS: comma-separated gateway URLs, each either
// scheme://...?name=NAME or NAME=scheme://..., returned as URLs carrying
// their name parameter. URLs may carry credentials, so values are not
// repeated in errors.
func (p *parser) gatewayURLs(name string) []string {
	v := p.raw(name)
	if v == "" {
		return nil
	}
	var out []string
	for i, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		gwName := ""
		if eq, sep := strings.Index(item, "="), strings.Index(item, "://"); eq > 0 && (sep < 0 || eq < sep) {
			gwName, item = item[:eq], item[eq+1:]
		}
		u, err := url.Parse(item)
		if err != nil || u.Scheme == "" || !strings.Contains(item, "://") {
			p.fail(name, "entry %d is not a valid URL; want <scheme>://... or name=<scheme>://..., such as mock://?name=mock", i+1)
			continue
		}
		if gwName != "" {
			q := u.Query()
			if q.Has("name") && q.Get("name") != gwName {
				p.fail(name, "entry %d names its gateway twice (%s= and ?name=)", i+1, gwName)
				continue
			}
			q.Set("name", gwName)
			base, _, _ := strings.Cut(item, "?") // u.String() would drop the "//" of scheme://?...
			item = base + "?" + q.Encode()
		}
		out = append(out, item)
	}
	if len(out) == 0 {
		p.fail(name, "set but holds no URL")
	}
	return out
}

// checkRoutes validates GATEWAY_ROUTES (syntax and structure; gateway names
// are checked when the gateways are opened) and that gateway names are
// distinct.
func (p *parser) checkRoutes(c *Config) {
	if c.GatewayRoutes != "" {
		if _, err := routing.LoadPolicy(c.GatewayRoutes); err != nil {
			p.fail("GATEWAY_ROUTES", "%v", strings.TrimPrefix(err.Error(), "routing: "))
		}
	}
	seen := map[string]bool{}
	for _, raw := range append([]string{c.GatewayURL}, c.GatewayURLs...) {
		u, err := url.Parse(raw)
		if err != nil {
			continue // reported by url / gatewayURLs
		}
		n := u.Scheme
		if q := u.Query(); q.Has("name") {
			n = q.Get("name")
		}
		if seen[n] {
			p.fail("GATEWAY_URLS", "two gateways are named %q; name each with ?name= or name=URL", n)
		}
		seen[n] = true
	}
}

func redactAll(urls []string) []string {
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = Redact(u)
	}
	return out
}

// routesForLog describes GATEWAY_ROUTES for the startup log.
func routesForLog(v string) string {
	switch {
	case v == "":
		return ""
	case strings.HasPrefix(strings.TrimSpace(v), "{"):
		return fmt.Sprintf("inline JSON (%d bytes)", len(v))
	}
	return v
}
