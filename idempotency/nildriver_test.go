package idempotency_test

import (
	"context"
	"errors"
	"testing"

	"github.com/payrail/payrail/idempotency"
)

// A Store over a nil driver fails every call with ErrNoDriver instead of
// panicking.
func TestNewNilDriver(t *testing.T) {
	s := idempotency.New(nil)
	ctx := context.Background()
	if _, err := s.Begin(ctx, &idempotency.BeginRequest{Merchant: "m", Key: "k"}); !errors.Is(err, idempotency.ErrNoDriver) {
		t.Errorf("Begin: %v", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, idempotency.ErrNoDriver) {
		t.Errorf("Ping: %v", err)
	}
	if _, err := s.Get(ctx, "m", "k"); !errors.Is(err, idempotency.ErrNoDriver) {
		t.Errorf("Get: %v", err)
	}
	if err := s.Close(); !errors.Is(err, idempotency.ErrNoDriver) {
		t.Errorf("Close: %v", err)
	}
}
