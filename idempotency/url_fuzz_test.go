package idempotency_test

import (
	"context"
	"errors"
	"net/url"
	"testing"

	"github.com/payrail/payrail/idempotency"
	_ "github.com/payrail/payrail/idempotency/memory"
	"github.com/payrail/payrail/internal/urlcheck"
)

// FuzzOpen: idempotency.Open either opens a store through the driver the
// scheme names or fails with an error that reveals none of the URL's
// secrets; an unregistered scheme is ErrUnknownDriver. Only the memory
// driver is linked in, so nothing connects anywhere.
func FuzzOpen(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		var s *idempotency.Store
		err := urlcheck.NoLeak(t, raw, func(r string) (err error) {
			s, err = idempotency.Open(context.Background(), r)
			if err == nil {
				_ = s.Close()
			}
			return err
		})
		u, perr := url.Parse(raw)
		switch {
		case err == nil:
			if perr != nil || u.Scheme != "memory" {
				t.Fatalf("Open(%q) succeeded without the memory driver", raw)
			}
		case perr == nil && u.Scheme != "" && u.Scheme != "memory":
			if !errors.Is(err, idempotency.ErrUnknownDriver) {
				t.Fatalf("Open(%q) = %v, want ErrUnknownDriver", raw, err)
			}
		}
	})
}
