package bus

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// TestProvisionDispatch: bus.Provision refuses unknown drivers, drivers
// without a Provisioner and negative specs, naming the URL without its
// secrets.
func TestProvisionDispatch(t *testing.T) {
	registerRefusing()
	ctx := context.Background()
	if _, err := Provision(ctx, "nosuchdriver://x", ProvisionSpec{}); !errors.Is(err, ErrUnknownDriver) {
		t.Errorf("unknown driver: %v, want ErrUnknownDriver", err)
	}
	_, err := Provision(ctx, refusingScheme+"://user:hunter2@host/t", ProvisionSpec{})
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("driver without Provisioner: %v, want ErrUnsupported", err)
	}
	if err != nil && strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error reveals the password: %v", err)
	}
	for _, spec := range []ProvisionSpec{{MaxAttempts: -1}, {AckDeadline: -1}, {Partitions: -1}} {
		if _, err := Provision(ctx, refusingScheme+"://host/t", spec); !errors.Is(err, ErrInvalidURL) {
			t.Errorf("Provision(%+v) = %v, want ErrInvalidURL", spec, err)
		}
	}
}
