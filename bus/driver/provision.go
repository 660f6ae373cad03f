package driver

import (
	"context"
	"errors"
	"net/url"
	"time"
)

// ErrConflict means an entity Provision found already exists with a setting
// that differs from the ProvisionSpec and cannot be changed in place (such
// as a Pub/Sub subscription's message ordering or an SQS queue's FIFO
// type), or is attached to another topic.
var ErrConflict = errors.New("bus: existing entity conflicts with the provisioning spec")

// ProvisionSpec describes the broker entities a topic or subscription URL
// needs: what Provisioner.Provision creates, or checks and updates.
type ProvisionSpec struct {
	// MaxAttempts is the delivery attempt after which the broker moves a
	// message that was never settled to the dead-letter queue on its own.
	// Zero means never (unlimited redelivery) where the broker allows it,
	// and the broker's maximum where it does not; each driver documents
	// which. Package bus dead-letters failing messages itself after
	// bus.WithMaxAttempts attempts either way.
	MaxAttempts int
	// AckDeadline is the entity's ack deadline (visibility timeout, lock
	// duration); zero keeps the driver's default, or an existing entity's
	// value. Drivers round it to what the broker accepts.
	AckDeadline time.Duration
	// Ordered asks for per-key ordering where it is a property of the
	// entity: Pub/Sub message ordering, SQS FIFO queues, Service Bus
	// sessions. It must agree with the URL where the URL says it too.
	Ordered bool
	// Partitions is the partition count of created Kafka topics (zero: the
	// brokers' default). Other drivers ignore it.
	Partitions int
	// DryRun makes Provision only report what it would create or update.
	DryRun bool
}

// Actions a ProvisionStep reports.
const (
	ActionExists      = "exists"
	ActionCreated     = "created"
	ActionUpdated     = "updated"
	ActionWouldCreate = "would create"
	ActionWouldUpdate = "would update"
)

// ProvisionStep is what Provision found, did or would do for one entity.
type ProvisionStep struct {
	// Kind says what the entity is: "topic", "subscription", "queue",
	// "dead-letter topic", "dead-letter queue"...
	Kind string
	// Name is the entity's name as the broker knows it (an ARN, a URL, a
	// full resource name).
	Name string
	// Action is one of the Action constants.
	Action string
	// Detail describes the settings created or changed, if any.
	Detail string
}

// Provisioner is implemented by drivers that can create the entities a URL
// names. Provision must be idempotent: entities that exist are verified and,
// where the spec differs and the broker allows, updated; a second call with
// the same arguments reports every step as ActionExists.
type Provisioner interface {
	// Provision creates or verifies the topic the URL names and, for a
	// subscription URL, the subscription and its dead-letter queue.
	Provision(ctx context.Context, u *url.URL, spec ProvisionSpec) ([]ProvisionStep, error)
}
