package opsctl

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/snssqs"
	"github.com/payrail/payrail/examples/internal/config"
)

// provisionFlags are bus provision's flags. The portable ones apply to
// every bus; the sns-sqs ones name and shape what snssqs.Provision
// creates (snssqs.go).
type provisionFlags struct {
	maxAttempts, partitions int
	ackDeadline             time.Duration
	ordered                 bool
	deadLetter              string

	// sns-sqs
	name                     string
	fifo, raw, noTopic       bool
	maxReceive               int
	visibility               time.Duration
	out                      format
	apply                    *apply
	cmd                      *cobra.Command
	snssqsOnly, portableOnly []string
}

// provisionStep is one entity as bus provision reports it (-o json).
type provisionStep struct {
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Action string `json:"action"`
	Detail string `json:"detail,omitempty"`
}

// provisionReport is bus provision's -o json.
type provisionReport struct {
	DryRun bool            `json:"dry_run"`
	Bus    string          `json:"bus"`
	Steps  []provisionStep `json:"steps"`
	// Env is what to configure the server and the worker with (sns-sqs,
	// after --apply).
	Env map[string]string `json:"env,omitempty"`
	// Notes are what remains to do by hand.
	Notes []string `json:"notes,omitempty"`
}

const provisionLong = `Create, or check and update, the entities of the configured bus: the topic and the
worker's subscription with its dead-letter queue, the maximum delivery attempts, the ack
deadline and ordering (the portable bus.Provision, for every bus driver). Idempotent: what
exists is reported as such, what differs is updated or, if it cannot be, reported as a
conflict. A dry run unless --apply.

  kafka       the topic and its dead-letter topic (<topic>.dlq, or the subscription
              URL's dlq=), with --partitions
  pubsub      the topic, the dead-letter topic and its subscription, and the worker's
              subscription with its dead-letter policy, ack deadline and ordering
  servicebus  the queue, or the topic and subscription (MaxDeliveryCount,
              LockDuration, sessions)
  sns-sqs     the SNS topic N, the SQS queue N subscribed to it and its dead-letter queue
              N-dlq with the redrive policy (.fifo on FIFO); prints the
              PAYMENTS_TOPIC_ARN / PAYMENTS_QUEUE_URL / QUEUE_TYPE to configure. AWS
              settings from the SDK's chain (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL for
              an emulator). The dry run prints the plan without contacting AWS.

--max-attempts 0 means unlimited where the bus allows it, else its maximum (sns-sqs:
--max-receive-count, default max(5, PAYMENTS_MAX_ATTEMPTS+2)). --ack-deadline is the
subscription's ack deadline, lock duration or (sns-sqs) visibility timeout.

Exit status 3 when some entities were created or updated and a later one failed.`

func (c *cli) busProvisionCommand() *cobra.Command {
	p := &provisionFlags{}
	cmd := &cobra.Command{
		Use:   "provision",
		Short: "Create or update the topic, the worker's subscription and its dead-letter queue",
		Long:  provisionLong,
		Example: `  opsctl bus provision                                # dry run: what exists, what would be created
  opsctl bus provision --max-attempts 10 --ack-deadline 60s --apply
  opsctl bus provision --partitions 12 --apply        # kafka
  opsctl bus provision --name payments --fifo --apply # sns-sqs`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			doApply, err := p.apply.resolve()
			if err != nil {
				return err
			}
			if c.Config.MessageBusAdapter == config.AdapterSNSSQS || scheme(c.Config.BusSubscriptionURL) == snssqs.Scheme {
				if err := p.refuse(p.portableOnly, "sns-sqs"); err != nil {
					return err
				}
				return c.busProvisionSNSSQS(p, doApply)
			}
			if err := p.refuse(p.snssqsOnly, c.Config.MessageBusAdapter); err != nil {
				return err
			}
			return c.busProvision(p, doApply)
		},
	}
	p.cmd = cmd
	f := cmd.Flags()
	f.IntVar(&p.maxAttempts, "max-attempts", 0, "deliveries after which the broker dead-letters a message (0: unlimited where the bus allows it, else its maximum; sns-sqs: same as --max-receive-count)")
	f.DurationVar(&p.ackDeadline, "ack-deadline", 0, "ack deadline / lock duration / visibility timeout of the subscription (default: the bus's)")
	f.BoolVar(&p.ordered, "ordered", false, "require per-key ordering on the entity (Pub/Sub ordering, Service Bus sessions; sns-sqs: use --fifo)")
	f.IntVar(&p.partitions, "partitions", 0, "kafka: partitions of created topics (default: the brokers')")
	f.StringVar(&p.deadLetter, "dead-letter-topic", "", "name of the dead-letter topic or queue, where the subscription records it: pubsub topic ID (default <subscription>.dlq), sns-sqs queue name (default <name>-dlq); kafka takes it from the subscription URL's dlq=, servicebus has its own dead-letter subqueue")
	f.StringVar(&p.name, "name", "", "sns-sqs: base name: the topic and queue N, the dead-letter queue N-dlq (default: PAYMENTS_QUEUE_URL's queue, else payments)")
	f.BoolVar(&p.fifo, "fifo", false, "sns-sqs: FIFO topic and queues (default from QUEUE_TYPE)")
	f.BoolVar(&p.raw, "raw", true, "sns-sqs: raw message delivery on the subscription")
	f.BoolVar(&p.noTopic, "no-topic", false, "sns-sqs: no SNS topic: the server publishes straight to the queue")
	f.IntVar(&p.maxReceive, "max-receive-count", 0, "sns-sqs: receives after which SQS moves a message to the dead-letter queue (default max(5, PAYMENTS_MAX_ATTEMPTS+2))")
	f.DurationVar(&p.visibility, "visibility", 30*time.Second, "sns-sqs: the queue's visibility timeout, the worker's ack deadline (same as --ack-deadline)")
	p.snssqsOnly = []string{"name", "fifo", "raw", "no-topic", "max-receive-count", "visibility"}
	p.portableOnly = []string{"ordered", "partitions"}
	p.apply = addApply(cmd, "create or update")
	addOutput(cmd, &p.out, false)
	return needsConfig(cmd)
}

// refuse is a usage error if one of flags was given for a bus it does not
// apply to.
func (p *provisionFlags) refuse(flags []string, adapter string) error {
	for _, name := range flags {
		if p.cmd.Flags().Changed(name) {
			return usagef("--%s does not apply to the %s bus", name, adapter)
		}
	}
	return nil
}

// busProvision provisions the configured bus with the portable
// bus.Provision.
func (c *cli) busProvision(p *provisionFlags, doApply bool) error {
	if p.maxAttempts < 0 || p.ackDeadline < 0 || p.partitions < 0 {
		return usagef("--max-attempts, --ack-deadline and --partitions cannot be negative")
	}
	_, subURL, err := c.Config.BusURLs()
	if err != nil {
		return usagef("%v", err)
	}
	sch := scheme(subURL)
	if sch == config.AdapterInMemory {
		return usagef("the in-memory bus lives inside the server process and needs no provisioning; set MESSAGE_BUS_ADAPTER (or BUS_SUBSCRIPTION_URL) to the deployment's bus")
	}
	if p.deadLetter != "" {
		if subURL, err = withDeadLetter(subURL, sch, p.deadLetter); err != nil {
			return err
		}
	}
	spec := bus.ProvisionSpec{MaxAttempts: p.maxAttempts, AckDeadline: p.ackDeadline, Ordered: p.ordered, Partitions: p.partitions, DryRun: !doApply}
	steps, err := bus.Provision(c.ctx, subURL, spec)
	rep := provisionReport{DryRun: !doApply, Bus: sch, Steps: []provisionStep{}}
	changed := 0
	for _, s := range steps {
		rep.Steps = append(rep.Steps, provisionStep{Kind: s.Kind, Name: s.Name, Action: s.Action, Detail: s.Detail})
		if s.Action == bus.ActionCreated || s.Action == bus.ActionUpdated {
			changed++
		}
	}
	if sch == config.AdapterPubSub {
		rep.Notes = append(rep.Notes, "on Google Cloud, grant Pub/Sub's service agent roles/pubsub.publisher on the dead-letter topic and roles/pubsub.subscriber on the subscription (see pubsub.Provision)")
	}
	if werr := c.printProvision(p.out, rep); werr != nil {
		return werr
	}
	if err != nil {
		if errors.Is(err, bus.ErrInvalidURL) || errors.Is(err, bus.ErrUnsupported) || errors.Is(err, bus.ErrUnknownDriver) {
			return usagef("%v", err)
		}
		return partial(changed, err)
	}
	return nil
}

// withDeadLetter names the dead-letter topic in the subscription URL of
// the buses whose subscription records it (Pub/Sub's dead-letter policy).
// The schemes are the adapter names: opsctl does not import a driver for
// its constants, so that the payrail_no_<driver> build tags leave it out.
func withDeadLetter(subURL, sch, name string) (string, error) {
	switch sch {
	case config.AdapterPubSub:
	case config.AdapterKafka:
		return "", usagef("--dead-letter-topic: the kafka worker finds its dead-letter topic in its subscription URL, not on the broker: set dlq=%s in BUS_SUBSCRIPTION_URL, for opsctl and the worker alike", name)
	default:
		return "", usagef("--dead-letter-topic: the %s bus has a dead-letter queue of its own, which cannot be named", sch)
	}
	u, err := url.Parse(subURL)
	if err != nil {
		return "", usagef("bus subscription URL: %v", err)
	}
	q := u.Query()
	q.Set("dead_letter_topic", name)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// printProvision writes the steps as a table (and the env and notes), or
// the report as JSON.
func (c *cli) printProvision(out format, rep provisionReport) error {
	if out == formatJSON {
		return writeJSON(c.Stdout, rep)
	}
	w := table(c.Stdout)
	fmt.Fprintln(w, "KIND\tNAME\tACTION\tDETAIL")
	for _, s := range rep.Steps {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", s.Kind, s.Name, s.Action, orDash(s.Detail))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if rep.DryRun {
		fmt.Fprintln(c.Stdout, "-- dry run: add --apply to create or update")
	}
	for _, n := range rep.Notes {
		fmt.Fprintln(c.Stdout, "note: "+n)
	}
	if len(rep.Env) > 0 {
		fmt.Fprintln(c.Stdout, "\n# configure the server and the worker with:")
		for _, k := range envOrder {
			if v, ok := rep.Env[k]; ok {
				fmt.Fprintln(c.Stdout, k+"="+v)
			}
		}
	}
	return nil
}

// envOrder is the order in which bus provision prints the variables.
var envOrder = []string{"MESSAGE_BUS_ADAPTER", "QUEUE_TYPE", "PAYMENTS_TOPIC_ARN", "PAYMENTS_QUEUE_URL"}
