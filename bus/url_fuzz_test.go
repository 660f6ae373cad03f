package bus

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/payrail/payrail/bus/driver"
	"github.com/payrail/payrail/internal/urlcheck"
)

// refusingDriver refuses every URL as a driver's strict parser does. It
// stands for the network drivers (whose own parsers have their own fuzz
// targets) so that FuzzOpenURL exercises the portable layer: registry
// lookup, error wrapping and redaction. The inmemory driver, linked into
// this test binary by the external tests, is exercised as it is.
type refusingDriver struct{}

var errRefused = fmt.Errorf("fuzz driver: refused: %w", driver.ErrInvalidURL)

func (refusingDriver) OpenTopic(context.Context, *url.URL) (driver.Topic, error) {
	return nil, errRefused
}

func (refusingDriver) OpenSubscription(context.Context, *url.URL) (driver.Subscription, error) {
	return nil, errRefused
}

const refusingScheme = "fuzz-refuse"

var registerRefusing = sync.OnceFunc(func() { Register(refusingScheme, refusingDriver{}) })

// FuzzOpenURL: OpenTopic and OpenSubscription refuse a malformed URL or an
// unknown scheme with ErrInvalidURL or ErrUnknownDriver, wrap a driver's
// refusal, succeed only through a driver that accepts the URL, and never
// reveal a secret of the URL in their errors; the
// telemetry name a URL gives its topic or subscription reveals none either.
func FuzzOpenURL(f *testing.F) {
	registerRefusing()
	f.Fuzz(func(t *testing.T, raw string, sub bool) {
		open := func(s string) error {
			if sub {
				sb, err := OpenSubscription(context.Background(), s)
				if err == nil {
					return sb.Close()
				}
				return err
			}
			tp, err := OpenTopic(context.Background(), s)
			if err == nil {
				return tp.Close()
			}
			return err
		}
		err := urlcheck.NoLeak(t, raw, open)
		u, perr := url.Parse(raw)
		switch {
		case perr != nil || u.Scheme == "":
			if !errors.Is(err, ErrInvalidURL) {
				t.Fatalf("open(%q) = %v, want ErrInvalidURL", raw, err)
			}
		case err == nil:
			if u.Scheme == refusingScheme || !slices.Contains(Drivers(), u.Scheme) {
				t.Fatalf("open(%q) succeeded without a driver that accepts it", raw)
			}
		case u.Scheme == refusingScheme:
			if !errors.Is(err, errRefused) || !strings.HasPrefix(err.Error(), "bus: open ") {
				t.Fatalf("open(%q) = %v, want the driver's error, wrapped", raw, err)
			}
		case slices.Contains(Drivers(), u.Scheme): // a real driver linked into the test binary
			if !strings.HasPrefix(err.Error(), "bus: open ") {
				t.Fatalf("open(%q) = %v, want the driver's error, wrapped", raw, err)
			}
		default:
			if !errors.Is(err, ErrUnknownDriver) {
				t.Fatalf("open(%q) = %v, want ErrUnknownDriver", raw, err)
			}
		}
		if perr != nil {
			return
		}
		urlcheck.NoLeak(t, raw, urlcheck.Parsed(t, func(u *url.URL) error {
			return errors.New("telemetry name: " + nameFromURL(u, sub))
		}))
	})
}
