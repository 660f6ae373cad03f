package bus

import (
	"context"
	"fmt"

	"github.com/payrail/payrail/bus/driver"
	"github.com/payrail/payrail/internal/registry"
)

// ErrConflict is returned (wrapped) by Provision when an existing entity
// differs from the spec in a way the broker cannot change in place.
var ErrConflict = driver.ErrConflict

// ProvisionSpec describes what Provision creates; see driver.ProvisionSpec.
type ProvisionSpec = driver.ProvisionSpec

// ProvisionStep is what Provision found, did or would do for one entity;
// see driver.ProvisionStep.
type ProvisionStep = driver.ProvisionStep

// The actions a ProvisionStep reports.
const (
	ActionExists      = driver.ActionExists
	ActionCreated     = driver.ActionCreated
	ActionUpdated     = driver.ActionUpdated
	ActionWouldCreate = driver.ActionWouldCreate
	ActionWouldUpdate = driver.ActionWouldUpdate
)

// Provision creates the broker entities urlstr needs, or verifies and
// updates the existing ones: the topic and, for a subscription URL, the
// subscription with its dead-letter queue, maximum delivery attempts, ack
// deadline and ordering as spec says. The URL is the one given to
// OpenTopic or OpenSubscription. Provision is idempotent; it reports each
// entity's step in order. A driver that cannot provision returns an error
// wrapping ErrUnsupported; an existing entity that conflicts with the spec,
// one wrapping ErrConflict.
//
//	steps, err := bus.Provision(ctx, "kafka://broker:9092/payments?group=worker",
//		bus.ProvisionSpec{MaxAttempts: 10, Partitions: 12})
func Provision(ctx context.Context, urlstr string, spec ProvisionSpec) ([]ProvisionStep, error) {
	d, u, err := drivers.Lookup(urlstr)
	if err != nil {
		return nil, err
	}
	if spec.MaxAttempts < 0 || spec.AckDeadline < 0 || spec.Partitions < 0 {
		return nil, fmt.Errorf("bus: provision %s: negative MaxAttempts, AckDeadline or Partitions: %w", registry.Redact(u), ErrInvalidURL)
	}
	p, ok := d.(driver.Provisioner)
	if !ok {
		return nil, fmt.Errorf("bus: provision %s: the %s driver cannot provision: %w", registry.Redact(u), u.Scheme, ErrUnsupported)
	}
	steps, err := p.Provision(ctx, u, spec)
	if err != nil {
		return steps, fmt.Errorf("bus: provision %s: %w", registry.Redact(u), err)
	}
	return steps, nil
}
