package opsctl

import (
	"fmt"
	"net/url"
	"path"
	"strings"
	"text/tabwriter"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/payrail/payrail/bus/snssqs"
	"github.com/payrail/payrail/examples/internal/config"
)

// UsageSNSSQS is the help text of bus provision with
// MESSAGE_BUS_ADAPTER=sns-sqs.
const UsageSNSSQS = `  bus provision [--name N] [--fifo] [--raw=false] [--no-topic] [--max-receive-count N]
                [--visibility D] [--apply]
               (MESSAGE_BUS_ADAPTER=sns-sqs) create the SNS topic N, the SQS queue N subscribed
               to it and its dead-letter queue N-dlq with the redrive policy, and print the
               PAYMENTS_TOPIC_ARN / PAYMENTS_QUEUE_URL / QUEUE_TYPE to configure; AWS settings
               from the SDK's chain (AWS_REGION, AWS_PROFILE, AWS_ENDPOINT_URL for an emulator)
`

// busProvisionFor runs bus provision for the configured bus: sns-sqs here,
// every other bus in busProvision (bus.go).
func (c *cli) busProvisionFor(args []string) error {
	if c.Config.MessageBusAdapter == config.AdapterSNSSQS || scheme(c.Config.BusSubscriptionURL) == snssqs.Scheme {
		return c.busProvisionSNSSQS(args)
	}
	return c.busProvision(args)
}

// busProvisionSNSSQS creates the SNS topic, the SQS queue subscribed to it
// and its dead-letter queue (snssqs.Provision), so that a newcomer can run
// the server and the worker against an emulator or a sandbox account. Dry
// run unless --apply: it prints the plan without contacting AWS.
func (c *cli) busProvisionSNSSQS(args []string) error {
	cfg := c.Config
	fs := c.flags("bus provision")
	name := fs.String("name", defaultQueueName(cfg.PaymentsQueueURL), "base name: the topic and queue N, the dead-letter queue N-dlq (.fifo added on FIFO)")
	fifo := fs.Bool("fifo", cfg.QueueType == config.QueueFIFO, "FIFO topic and queues (default from QUEUE_TYPE)")
	raw := fs.Bool("raw", true, "raw message delivery on the subscription")
	noTopic := fs.Bool("no-topic", false, "no SNS topic: the server publishes straight to the queue")
	defMax := max(5, cfg.MaxAttempts+2)
	maxReceive := fs.Int("max-receive-count", defMax, "receives after which SQS moves a message to the dead-letter queue")
	visibility := fs.Duration("visibility", 30*time.Second, "the queue's visibility timeout (the worker's ack deadline)")
	apply := fs.Bool("apply", false, "create or update (default: print what would be done)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *maxReceive < cfg.MaxAttempts {
		return usagef("--max-receive-count %d is below PAYMENTS_MAX_ATTEMPTS %d: SQS would move messages to the dead-letter queue before the worker's last attempt", *maxReceive, cfg.MaxAttempts)
	}
	if *visibility < time.Second {
		return usagef("--visibility %v: want at least 1s", *visibility)
	}
	o := snssqs.ProvisionOptions{
		Name: *name, FIFO: *fifo, RawDelivery: *raw, NoTopic: *noTopic,
		MaxReceiveCount: *maxReceive, VisibilityTimeout: *visibility,
	}
	topicName, queueName, dlqName, err := o.Names()
	if err != nil {
		return usagef("%v", err)
	}
	w := tabwriter.NewWriter(c.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "KIND\tNAME\tACTION\tDETAIL")
	if !*apply {
		if topicName != "" {
			fmt.Fprintf(w, "sns topic\t%s\twould create or update\t%s\n", topicName, map[bool]string{true: "FIFO", false: "standard"}[*fifo])
		}
		fmt.Fprintf(w, "sqs queue\t%s\twould create or update\tdead-letter queue, retention 14 days\n", dlqName)
		fmt.Fprintf(w, "sqs queue\t%s\twould create or update\tVisibilityTimeout %v, RedrivePolicy maxReceiveCount %d -> %s\n", queueName, *visibility, *maxReceive, dlqName)
		if topicName != "" {
			fmt.Fprintf(w, "sns subscription\t%s -> %s\twould create\tRawMessageDelivery %t; queue policy lets the topic send\n", topicName, queueName, *raw)
		}
		_ = w.Flush()
		fmt.Fprintln(c.Stdout, "-- dry run: add --apply to create or update")
		return nil
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(c.ctx)
	if err != nil {
		return fmt.Errorf("AWS configuration: %w", err)
	}
	p, err := snssqs.Provision(c.ctx, awsCfg, o)
	if err != nil {
		return err
	}
	if p.TopicARN != "" {
		fmt.Fprintf(w, "sns topic\t%s\tensured\t%s\n", topicName, p.TopicARN)
	}
	fmt.Fprintf(w, "sqs queue\t%s\tensured\t%s\n", dlqName, p.DLQURL)
	fmt.Fprintf(w, "sqs queue\t%s\tensured\t%s (maxReceiveCount %d)\n", queueName, p.QueueURL, *maxReceive)
	if p.SubscriptionARN != "" {
		fmt.Fprintf(w, "sns subscription\t%s -> %s\tensured\t%s\n", topicName, queueName, p.SubscriptionARN)
	}
	_ = w.Flush()
	fmt.Fprintln(c.Stdout, "\n# configure the server and the worker with:")
	fmt.Fprintln(c.Stdout, "MESSAGE_BUS_ADAPTER=sns-sqs")
	fmt.Fprintln(c.Stdout, "QUEUE_TYPE="+map[bool]string{true: config.QueueFIFO, false: config.QueueStandard}[p.FIFO])
	if p.TopicARN != "" {
		fmt.Fprintln(c.Stdout, "PAYMENTS_TOPIC_ARN="+p.TopicARN)
	}
	fmt.Fprintln(c.Stdout, "PAYMENTS_QUEUE_URL="+p.QueueURL)
	return nil
}

// defaultQueueName is the queue name of PAYMENTS_QUEUE_URL, or "payments".
func defaultQueueName(queueURL string) string {
	if u, err := url.Parse(queueURL); err == nil && strings.Trim(u.Path, "/") != "" {
		return strings.TrimSuffix(path.Base(u.Path), ".fifo")
	}
	return "payments"
}
