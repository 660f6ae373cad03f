package payments

import (
	"context"
	"errors"
	"net/url"
	"testing"

	"github.com/payrail/payrail/internal/urlcheck"
)

// FuzzOpenStore: OpenStore either opens the memory store, for exactly
// memory:// (or memory:///), or fails with an error that reveals none of
// the URL's secrets; an unregistered scheme is ErrUnknownStoreDriver.
// Only the memory driver is registered in this package's tests, so nothing
// connects anywhere.
func FuzzOpenStore(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		err := urlcheck.NoLeak(t, raw, func(r string) error {
			s, err := OpenStore(context.Background(), r)
			if err == nil {
				_ = s.Close()
			}
			return err
		})
		u, perr := url.Parse(raw)
		switch {
		case err == nil:
			if perr != nil || u.Scheme != "memory" || u.Host != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
				t.Fatalf("OpenStore(%q) opened a memory store from a URL with parameters", raw)
			}
		case perr == nil && u.Scheme != "" && u.Scheme != "memory" && !isRegisteredStore(u.Scheme):
			if !errors.Is(err, ErrUnknownStoreDriver) {
				t.Fatalf("OpenStore(%q) = %v, want ErrUnknownStoreDriver", raw, err)
			}
		}
	})
}

func isRegisteredStore(name string) bool {
	for _, d := range StoreDrivers() {
		if d == name {
			return true
		}
	}
	return false
}
