package opsctl

import (
	"errors"
	"fmt"
	"net/url"
	"text/tabwriter"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/pubsub"
	"github.com/payrail/payrail/examples/internal/config"
)

// busProvision creates, or checks and updates, the entities of the
// configured bus with the portable bus.Provision: the topic and the
// worker's subscription with its dead-letter queue, maximum delivery
// attempts, ack deadline and ordering (Kafka: the topic and its dead-letter
// topic; Pub/Sub: also the dead-letter topic and subscription; Service
// Bus: the queue, or the topic and subscription). Dry run unless --apply.
// sns-sqs has its own flow (snssqs.go), which starts from names.
func (c *cli) busProvision(args []string) error {
	fs := c.flags("bus provision")
	apply := fs.Bool("apply", false, "create or update (default: print what would be done)")
	maxAttempts := fs.Int("max-attempts", 0, "deliveries after which the broker dead-letters a message (0: unlimited where the bus allows it, else its maximum)")
	ackDeadline := fs.Duration("ack-deadline", 0, "ack deadline / lock duration of the subscription (default: the bus's)")
	ordered := fs.Bool("ordered", false, "require per-key ordering on the entity (Pub/Sub ordering, Service Bus sessions)")
	partitions := fs.Int("partitions", 0, "partitions of created Kafka topics (default: the brokers')")
	dlqTopic := fs.String("dead-letter-topic", "", "Pub/Sub only: dead-letter topic ID (default <subscription>.dlq)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *maxAttempts < 0 || *ackDeadline < 0 || *partitions < 0 {
		return usagef("--max-attempts, --ack-deadline and --partitions cannot be negative")
	}
	_, subURL, err := c.Config.BusURLs()
	if err != nil {
		return usagef("%v", err)
	}
	if scheme(subURL) == config.AdapterInMemory {
		return usagef("the in-memory bus lives inside the server process and needs no provisioning; set MESSAGE_BUS_ADAPTER (or BUS_SUBSCRIPTION_URL) to the deployment's bus")
	}
	if *dlqTopic != "" {
		if scheme(subURL) != pubsub.Scheme {
			return usagef("--dead-letter-topic is for the pubsub bus; got %q", config.Redact(subURL))
		}
		u, err := url.Parse(subURL)
		if err != nil {
			return usagef("bus subscription URL: %v", err)
		}
		q := u.Query()
		q.Set("dead_letter_topic", *dlqTopic)
		u.RawQuery = q.Encode()
		subURL = u.String()
	}
	spec := bus.ProvisionSpec{MaxAttempts: *maxAttempts, AckDeadline: *ackDeadline, Ordered: *ordered, Partitions: *partitions, DryRun: !*apply}
	steps, err := bus.Provision(c.ctx, subURL, spec)
	w := tabwriter.NewWriter(c.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "KIND\tNAME\tACTION\tDETAIL")
	for _, s := range steps {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", s.Kind, s.Name, s.Action, orDash(s.Detail))
	}
	_ = w.Flush()
	if err != nil {
		if errors.Is(err, bus.ErrInvalidURL) || errors.Is(err, bus.ErrUnsupported) || errors.Is(err, bus.ErrUnknownDriver) {
			return usagef("%v", err)
		}
		return err
	}
	if !*apply {
		fmt.Fprintln(c.Stdout, "-- dry run: add --apply to create or update")
	}
	if scheme(subURL) == pubsub.Scheme {
		fmt.Fprintln(c.Stdout, "note: on Google Cloud, grant Pub/Sub's service agent roles/pubsub.publisher on the dead-letter topic and roles/pubsub.subscriber on the subscription (see pubsub.Provision)")
	}
	return nil
}
