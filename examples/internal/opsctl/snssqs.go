package opsctl

import (
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/payrail/payrail/bus/snssqs"
	"github.com/payrail/payrail/examples/internal/config"
)

// snssqsOptions resolves bus provision's flags for sns-sqs: the defaults
// from the configuration, and the portable --max-attempts and
// --ack-deadline as --max-receive-count and --visibility.
func (c *cli) snssqsOptions(p *provisionFlags) (snssqs.ProvisionOptions, error) {
	cfg, flags := c.Config, p.cmd.Flags()
	o := snssqs.ProvisionOptions{Name: p.name, FIFO: p.fifo, RawDelivery: p.raw, NoTopic: p.noTopic,
		MaxReceiveCount: p.maxReceive, VisibilityTimeout: p.visibility, DLQName: p.deadLetter}
	if !flags.Changed("name") {
		o.Name = defaultQueueName(cfg.PaymentsQueueURL)
	}
	if !flags.Changed("fifo") {
		o.FIFO = cfg.QueueType == config.QueueFIFO
	}
	if flags.Changed("max-attempts") {
		if flags.Changed("max-receive-count") && p.maxAttempts != p.maxReceive {
			return o, usagef("--max-attempts %d and --max-receive-count %d disagree (on sns-sqs they are the same)", p.maxAttempts, p.maxReceive)
		}
		o.MaxReceiveCount = p.maxAttempts
	} else if !flags.Changed("max-receive-count") {
		o.MaxReceiveCount = max(5, cfg.MaxAttempts+2)
	}
	if flags.Changed("ack-deadline") {
		if flags.Changed("visibility") && p.ackDeadline != p.visibility {
			return o, usagef("--ack-deadline %v and --visibility %v disagree (on sns-sqs they are the same)", p.ackDeadline, p.visibility)
		}
		o.VisibilityTimeout = p.ackDeadline
	}
	if o.MaxReceiveCount < cfg.MaxAttempts {
		return o, usagef("--max-receive-count %d is below PAYMENTS_MAX_ATTEMPTS %d: SQS would move messages to the dead-letter queue before the worker's last attempt", o.MaxReceiveCount, cfg.MaxAttempts)
	}
	if o.VisibilityTimeout < time.Second {
		return o, usagef("--visibility %v: want at least 1s", o.VisibilityTimeout)
	}
	if o.FIFO && o.DLQName != "" && !strings.HasSuffix(o.DLQName, ".fifo") {
		o.DLQName += ".fifo"
	}
	return o, nil
}

// busProvisionSNSSQS creates the SNS topic, the SQS queue subscribed to it
// and its dead-letter queue (snssqs.Provision), so that a newcomer can run
// the server and the worker against an emulator or a sandbox account, and
// prints the variables to configure. A dry run prints the plan without
// contacting AWS.
func (c *cli) busProvisionSNSSQS(p *provisionFlags, doApply bool) error {
	o, err := c.snssqsOptions(p)
	if err != nil {
		return err
	}
	topicName, queueName, dlqName, err := o.Names()
	if err != nil {
		return usagef("%v", err)
	}
	rep := provisionReport{DryRun: !doApply, Bus: snssqs.Scheme, Steps: []provisionStep{}}
	step := func(kind, name, action, detail string) {
		rep.Steps = append(rep.Steps, provisionStep{Kind: kind, Name: name, Action: action, Detail: detail})
	}
	if !doApply {
		const would = "would create or update"
		if topicName != "" {
			step("sns topic", topicName, would, map[bool]string{true: "FIFO", false: "standard"}[o.FIFO])
		}
		step("sqs queue", dlqName, would, "dead-letter queue, retention 14 days")
		step("sqs queue", queueName, would, fmt.Sprintf("VisibilityTimeout %v, RedrivePolicy maxReceiveCount %d -> %s", o.VisibilityTimeout, o.MaxReceiveCount, dlqName))
		if topicName != "" {
			step("sns subscription", topicName+" -> "+queueName, "would create", fmt.Sprintf("RawMessageDelivery %t; queue policy lets the topic send", o.RawDelivery))
		}
		return c.printProvision(p.out, rep)
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(c.ctx)
	if err != nil {
		return fmt.Errorf("AWS configuration: %w", err)
	}
	pr, err := snssqs.Provision(c.ctx, awsCfg, o)
	if err != nil {
		return err
	}
	if pr.TopicARN != "" {
		step("sns topic", topicName, "ensured", pr.TopicARN)
	}
	step("sqs queue", dlqName, "ensured", pr.DLQURL)
	step("sqs queue", queueName, "ensured", fmt.Sprintf("%s (maxReceiveCount %d)", pr.QueueURL, o.MaxReceiveCount))
	if pr.SubscriptionARN != "" {
		step("sns subscription", topicName+" -> "+queueName, "ensured", pr.SubscriptionARN)
	}
	rep.Env = map[string]string{
		"MESSAGE_BUS_ADAPTER": config.AdapterSNSSQS,
		"QUEUE_TYPE":          map[bool]string{true: config.QueueFIFO, false: config.QueueStandard}[pr.FIFO],
		"PAYMENTS_QUEUE_URL":  pr.QueueURL,
	}
	if pr.TopicARN != "" {
		rep.Env["PAYMENTS_TOPIC_ARN"] = pr.TopicARN
	}
	return c.printProvision(p.out, rep)
}

// defaultQueueName is the queue name of PAYMENTS_QUEUE_URL, or "payments".
func defaultQueueName(queueURL string) string {
	if u, err := url.Parse(queueURL); err == nil && strings.Trim(u.Path, "/") != "" {
		return strings.TrimSuffix(path.Base(u.Path), ".fifo")
	}
	return "payments"
}
