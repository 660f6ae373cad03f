package opsctl

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/pubsub"
	"github.com/payrail/payrail/examples/internal/config"
)

// busProvision creates the Pub/Sub resources of the configured bus: the
// topic, the subscription with its dead-letter policy, and the dead-letter
// topic and subscription (pubsub.Provision). Dry run unless --apply.
func (c *cli) busProvision(args []string) error {
	fs := c.flags("bus provision")
	apply := fs.Bool("apply", false, "create or update (default: print what would be done)")
	maxAttempts := fs.Int("max-attempts", 0, "dead-letter policy MaxDeliveryAttempts, 5-100 (default 5)")
	ackDeadline := fs.Duration("ack-deadline", 0, "subscription ack deadline (default 30s)")
	dlqTopic := fs.String("dead-letter-topic", "", "dead-letter topic ID (default <subscription>.dlq)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	_, subURL, err := c.Config.BusURLs()
	if err != nil {
		return usagef("%v", err)
	}
	if scheme(subURL) != pubsub.Scheme {
		return usagef("bus provision supports the pubsub bus only (MESSAGE_BUS_ADAPTER=pubsub, or a pubsub:// BUS_SUBSCRIPTION_URL); got %q", config.Redact(subURL))
	}
	u, err := url.Parse(subURL)
	if err != nil {
		return usagef("bus subscription URL: %v", err)
	}
	q := u.Query()
	if *maxAttempts != 0 {
		if *maxAttempts < pubsub.MinMaxDeliveryAttempts || *maxAttempts > pubsub.MaxMaxDeliveryAttempts {
			return usagef("--max-attempts %d: Pub/Sub allows %d to %d", *maxAttempts, pubsub.MinMaxDeliveryAttempts, pubsub.MaxMaxDeliveryAttempts)
		}
		q.Set("max_attempts", strconv.Itoa(*maxAttempts))
	}
	if *ackDeadline != 0 {
		if *ackDeadline < 10*time.Second || *ackDeadline > 600*time.Second {
			return usagef("--ack-deadline %v: Pub/Sub allows 10s to 600s", *ackDeadline)
		}
		q.Set("ack_deadline", ackDeadline.String())
	}
	if *dlqTopic != "" {
		q.Set("dead_letter_topic", *dlqTopic)
	}
	u.RawQuery = q.Encode()

	var opts []pubsub.ProvisionOption
	if !*apply {
		opts = append(opts, pubsub.WithDryRun())
	}
	steps, err := pubsub.Provision(c.ctx, u.String(), opts...)
	w := tabwriter.NewWriter(c.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "KIND\tNAME\tACTION\tDETAIL")
	for _, s := range steps {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", s.Kind, s.Name, s.Action, orDash(s.Detail))
	}
	_ = w.Flush()
	if err != nil {
		if errors.Is(err, bus.ErrInvalidURL) {
			return usagef("%v", err)
		}
		return err
	}
	if !*apply {
		fmt.Fprintln(c.Stdout, "-- dry run: add --apply to create or update")
	}
	fmt.Fprintln(c.Stdout, "note: on Google Cloud, grant Pub/Sub's service agent roles/pubsub.publisher on the dead-letter topic and roles/pubsub.subscriber on the subscription (see pubsub.Provision)")
	return nil
}
