package gateway_test

import (
	"context"
	"errors"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/payrail/payrail/gateway"
	_ "github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/internal/urlcheck"
)

var fuzzValidName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// FuzzOpen: gateway.Open either opens a gateway named by the name
// parameter (default: the scheme), which must be a valid name, or fails
// with an error that reveals none of the URL's secrets; an unregistered
// scheme is ErrUnknownDriver. Neither registered driver makes a request
// when opened.
func FuzzOpen(f *testing.F) {
	f.Setenv("STRIPE_API_KEY", // gateway/stripe.DefaultAPIKeyEnv (not imported: its own module)
		"sk_test_FuzzKeyNeverInErrors42")
	f.Fuzz(func(t *testing.T, raw string) {
		u, perr := url.Parse(raw)
		if perr == nil && u.Query().Has("api_key_file") {
			return // a file name: the fuzzer must not read the machine's files
		}
		var g *gateway.Gateway
		err := urlcheck.NoLeak(t, raw, func(s string) (err error) {
			g, err = gateway.Open(context.Background(), s)
			return err
		})
		if err != nil {
			if strings.Contains(err.Error(), "sk_test_FuzzKey") {
				t.Fatalf("Open(%q) reveals the API key: %v", raw, err)
			}
			if perr == nil && u.Scheme != "" && u.Scheme != "mock" && u.Scheme != "stripe" && !errors.Is(err, gateway.ErrUnknownDriver) {
				t.Fatalf("Open(%q) = %v, want ErrUnknownDriver", raw, err)
			}
			return
		}
		defer g.Close()
		want := u.Scheme
		if q := u.Query(); q.Has("name") {
			want = q.Get("name")
		}
		if g.Name() != want || !fuzzValidName.MatchString(g.Name()) {
			t.Fatalf("Open(%q) named the gateway %q, want %q", raw, g.Name(), want)
		}
	})
}
