package payments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/idempotency/driver"
	"github.com/payrail/payrail/idempotency/memory"
)

// TestStoreErrorClassification: a value the store refuses is the client's
// error (422 validation_failed, not retried); a store that cannot be
// reached is an outage (503 store_unavailable).
func TestStoreErrorClassification(t *testing.T) {
	p := &Processor{}
	// A real unavailability: nothing listens on port 1.
	_, dialErr := net.DialTimeout("tcp", "127.0.0.1:1", time.Second)
	if dialErr == nil {
		t.Fatal("something listens on 127.0.0.1:1")
	}
	cases := []struct {
		name   string
		err    error
		code   Code
		status int
		retry  bool
	}{
		{"refused value", fmt.Errorf("postgres: payment %w: metadata value contains a NUL byte", ErrStoreInvalid),
			CodeValidation, http.StatusUnprocessableEntity, false},
		{"server data exception", fmt.Errorf("postgres: create: %w: SQLSTATE 22021", ErrStoreInvalid),
			CodeValidation, http.StatusUnprocessableEntity, false},
		{"connection refused", fmt.Errorf("postgres: create: %w", dialErr),
			CodeStoreUnavailable, http.StatusServiceUnavailable, true},
		{"not found", ErrNotFound, CodeNotFound, http.StatusNotFound, false},
	}
	for _, c := range cases {
		e := p.storeError(c.err, "pay_1")
		if e.Code != c.code || e.HTTPStatus() != c.status {
			t.Errorf("%s: %s (%d), want %s (%d)", c.name, e.Code, e.HTTPStatus(), c.code, c.status)
		}
		if (e.RetryAfter > 0) != c.retry {
			t.Errorf("%s: RetryAfter %s", c.name, e.RetryAfter)
		}
		if c.code != CodeNotFound && !errors.Is(e, c.err) {
			t.Errorf("%s: the cause is not kept (for logs): %v", c.name, e)
		}
	}
	if e := p.storeError(fmt.Errorf("x: %w", ErrStoreInvalid), "pay_1"); !errors.Is(e, ErrValidation) {
		t.Errorf("a refused value does not match ErrValidation: %v", e)
	}
}

// refusingIdem is the real memory idempotency store, except that Begin
// refuses merchant "bad" as a driver does a value it cannot keep.
type refusingIdem struct{ driver.Store }

func (r refusingIdem) Begin(ctx context.Context, req *driver.BeginRequest) (*driver.BeginResult, error) {
	if req.Merchant == "bad" {
		return nil, fmt.Errorf("redis: begin: %w: merchant is not valid UTF-8", idempotency.ErrInvalidInput)
	}
	return r.Store.Begin(ctx, req)
}

// TestBeginInvalidInput: an idempotency store refusing the request's
// values is answered 422, not 503.
func TestBeginInvalidInput(t *testing.T) {
	idem := idempotency.New(refusingIdem{memory.New()})
	defer idem.Close()
	p := &Processor{idem: idem, now: time.Now, lease: time.Minute, idemTTL: time.Hour, log: slog.New(slog.DiscardHandler)}
	c, o := p.begin(context.Background(), "bad", "key-1", "fp", "pay_1", "")
	if c != nil || o == nil || o.err == nil {
		t.Fatalf("begin with a refused value: claim %v, outcome %+v", c, o)
	}
	if o.err.Code != CodeValidation || o.err.HTTPStatus() != http.StatusUnprocessableEntity || o.err.RetryAfter != 0 {
		t.Errorf("begin with a refused value: %v (HTTP %d), want validation_failed (422)", o.err, o.err.HTTPStatus())
	}
	if !errors.Is(o.err, idempotency.ErrInvalidInput) {
		t.Errorf("the cause is not kept: %v", o.err)
	}
}
