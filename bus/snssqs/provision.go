package snssqs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/payrail/payrail/bus/driver"
)

// ProvisionOptions says what Provision creates. Only Name is required.
type ProvisionOptions struct {
	// Name names the queue; the dead-letter queue is Name-dlq and the
	// topic, unless TopicName, TopicARN or NoTopic is set, is Name too. On
	// FIFO the .fifo suffix is added to each. Letters, digits, - and _,
	// at most 71 characters.
	Name string
	// TopicName names the SNS topic to create, if not Name.
	TopicName string
	// TopicARN subscribes the queue to this existing topic instead of
	// creating one (a second subscriber of a topic, for fan-out).
	TopicARN string
	// NoTopic creates no topic and no subscription: publishers send
	// straight to the queue.
	NoTopic bool
	// FIFO creates a FIFO topic and FIFO queues.
	FIFO bool
	// RawDelivery turns on the subscription's raw message delivery: the
	// queue receives the message body and attributes as published instead
	// of an SNS JSON envelope. The driver reads both (see raw in the package
	// documentation); raw delivery keeps messages smaller.
	RawDelivery bool
	// MaxReceiveCount is the RedrivePolicy's maxReceiveCount: the receive
	// after which SQS moves a message to the dead-letter queue (default 5).
	MaxReceiveCount int
	// VisibilityTimeout is the queue's VisibilityTimeout, the default ack
	// deadline (default 30s; whole seconds).
	VisibilityTimeout time.Duration
	// Tags are set on the topic and the queues.
	Tags map[string]string
}

// Provisioned is what Provision created or found.
type Provisioned struct {
	// TopicARN is the SNS topic ("" with NoTopic).
	TopicARN string
	// TopicCreated reports that Provision created (or ensured) the topic,
	// rather than being given it: Deprovision deletes it.
	TopicCreated bool
	// SubscriptionARN is the SNS subscription of the queue to the topic.
	SubscriptionARN string
	// QueueURL and QueueARN are the subscription's queue.
	QueueURL, QueueARN string
	// DLQURL and DLQARN are its dead-letter queue.
	DLQURL, DLQARN string
	// FIFO reports FIFO entities.
	FIFO bool
	// RawDelivery reports raw message delivery on the subscription.
	RawDelivery bool
}

// TopicURL is the bus topic URL: the SNS topic, or the queue with NoTopic.
func (p *Provisioned) TopicURL() string {
	u := QueueURL(p.QueueURL)
	if p.TopicARN != "" {
		u = TopicURL(p.TopicARN)
	}
	return u + p.fifoParam()
}

// SubscriptionURL is the bus subscription URL of the queue.
func (p *Provisioned) SubscriptionURL() string {
	u := QueueURL(p.QueueURL) + p.fifoParam()
	if p.RawDelivery {
		u += "&raw=true"
	}
	return u
}

func (p *Provisioned) fifoParam() string {
	if p.FIFO {
		return "&fifo=true"
	}
	return ""
}

func validName(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Names validates o and returns the names of the entities Provision
// creates: the topic ("" with TopicARN or NoTopic), the queue and the
// dead-letter queue.
func (o ProvisionOptions) Names() (topic, queue, dlq string, err error) {
	name := strings.TrimSuffix(o.Name, ".fifo")
	if !validName(name, 71) {
		return "", "", "", fmt.Errorf("snssqs: provision: name %q: want 1-71 letters, digits, - or _", o.Name)
	}
	if o.TopicName != "" && !validName(strings.TrimSuffix(o.TopicName, ".fifo"), 251) {
		return "", "", "", fmt.Errorf("snssqs: provision: topic name %q: want 1-251 letters, digits, - or _", o.TopicName)
	}
	if o.NoTopic && (o.TopicARN != "" || o.TopicName != "") {
		return "", "", "", errors.New("snssqs: provision: NoTopic excludes TopicARN and TopicName")
	}
	if o.TopicARN != "" && o.TopicName != "" {
		return "", "", "", errors.New("snssqs: provision: give TopicARN or TopicName, not both")
	}
	if o.TopicARN != "" && o.FIFO != strings.HasSuffix(o.TopicARN, ".fifo") {
		return "", "", "", fmt.Errorf("snssqs: provision: topic %s and FIFO=%t disagree", o.TopicARN, o.FIFO)
	}
	if o.MaxReceiveCount < 0 || o.MaxReceiveCount > 1000 {
		return "", "", "", fmt.Errorf("snssqs: provision: MaxReceiveCount %d: want 1 to 1000", o.MaxReceiveCount)
	}
	if o.VisibilityTimeout < 0 || o.VisibilityTimeout > 12*time.Hour {
		return "", "", "", fmt.Errorf("snssqs: provision: VisibilityTimeout %v: want up to 12h", o.VisibilityTimeout)
	}
	suffix := ""
	if o.FIFO {
		suffix = ".fifo"
	}
	if !o.NoTopic && o.TopicARN == "" {
		topic = name + suffix
		if o.TopicName != "" {
			topic = strings.TrimSuffix(o.TopicName, ".fifo") + suffix
		}
	}
	return topic, name + suffix, name + "-dlq" + suffix, nil
}

// Provision creates, for development and tests, an SNS topic, an SQS queue
// subscribed to it, and the queue's dead-letter queue with the redrive
// policy; see ProvisionOptions. It is idempotent: existing entities are
// reused and the queue's attributes updated. The queue policy lets the topic
// send to the queue, as AWS requires. Production deployments usually manage
// these with their infrastructure tooling instead.
func Provision(ctx context.Context, cfg aws.Config, o ProvisionOptions) (*Provisioned, error) {
	topicName, queueName, dlqName, err := o.Names()
	if err != nil {
		return nil, err
	}
	if o.MaxReceiveCount == 0 {
		o.MaxReceiveCount = 5
	}
	if o.VisibilityTimeout == 0 {
		o.VisibilityTimeout = 30 * time.Second
	}
	sqsc, snsc := sqs.NewFromConfig(cfg), sns.NewFromConfig(cfg)
	p := &Provisioned{FIFO: o.FIFO, RawDelivery: o.RawDelivery && !o.NoTopic}

	switch {
	case o.TopicARN != "":
		if _, err := snsc.GetTopicAttributes(ctx, &sns.GetTopicAttributesInput{TopicArn: aws.String(o.TopicARN)}); err != nil {
			return nil, classify("provision: topic "+o.TopicARN, err)
		}
		p.TopicARN = o.TopicARN
	case topicName != "":
		in := &sns.CreateTopicInput{Name: aws.String(topicName), Attributes: map[string]string{}}
		if o.FIFO {
			in.Attributes["FifoTopic"] = "true"
		}
		for k, v := range o.Tags {
			in.Tags = append(in.Tags, snstypes.Tag{Key: aws.String(k), Value: aws.String(v)})
		}
		out, err := snsc.CreateTopic(ctx, in)
		if err != nil {
			return nil, classify("provision: create topic "+topicName, err)
		}
		p.TopicARN, p.TopicCreated = aws.ToString(out.TopicArn), true
	}

	dlqAttrs := map[string]string{"MessageRetentionPeriod": strconv.Itoa(14 * 24 * 3600)}
	if o.FIFO {
		dlqAttrs["FifoQueue"] = "true"
	}
	if p.DLQURL, p.DLQARN, err = ensureQueue(ctx, sqsc, dlqName, dlqAttrs, o.Tags); err != nil {
		return nil, err
	}
	rp, _ := json.Marshal(map[string]any{"deadLetterTargetArn": p.DLQARN, "maxReceiveCount": o.MaxReceiveCount})
	qAttrs := map[string]string{
		"VisibilityTimeout": strconv.Itoa(int(ceilSeconds(o.VisibilityTimeout) / time.Second)),
		"RedrivePolicy":     string(rp),
	}
	if o.FIFO {
		qAttrs["FifoQueue"] = "true"
	}
	if p.QueueURL, p.QueueARN, err = ensureQueue(ctx, sqsc, queueName, qAttrs, o.Tags); err != nil {
		return nil, err
	}
	if p.TopicARN == "" {
		return p, nil
	}
	policy, _ := json.Marshal(map[string]any{
		"Version": "2012-10-17",
		"Statement": []any{map[string]any{
			"Sid":       "payrail-sns",
			"Effect":    "Allow",
			"Principal": map[string]string{"Service": "sns.amazonaws.com"},
			"Action":    "sqs:SendMessage",
			"Resource":  p.QueueARN,
			"Condition": map[string]any{"ArnEquals": map[string]string{"aws:SourceArn": p.TopicARN}},
		}},
	})
	if _, err := sqsc.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{
		QueueUrl: aws.String(p.QueueURL), Attributes: map[string]string{"Policy": string(policy)},
	}); err != nil {
		return nil, classify("provision: set the policy of "+p.QueueURL, err)
	}
	sout, err := snsc.Subscribe(ctx, &sns.SubscribeInput{
		TopicArn:              aws.String(p.TopicARN),
		Protocol:              aws.String("sqs"),
		Endpoint:              aws.String(p.QueueARN),
		Attributes:            map[string]string{"RawMessageDelivery": strconv.FormatBool(o.RawDelivery)},
		ReturnSubscriptionArn: true,
	})
	if err != nil {
		return nil, classify("provision: subscribe "+p.QueueARN+" to "+p.TopicARN, err)
	}
	p.SubscriptionARN = aws.ToString(sout.SubscriptionArn)
	return p, nil
}

// ensureQueue creates a queue, or updates an existing one's attributes, and
// returns its URL and ARN.
func ensureQueue(ctx context.Context, c *sqs.Client, name string, attrs, tags map[string]string) (queueURL, arn string, err error) {
	out, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs, Tags: tags})
	var exists *sqstypes.QueueNameExists
	switch {
	case errors.As(err, &exists):
		u, uerr := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
		if uerr != nil {
			return "", "", classify("provision: queue "+name, uerr)
		}
		queueURL = aws.ToString(u.QueueUrl)
		mutable := maps.Clone(attrs)
		delete(mutable, "FifoQueue") // fixed at creation
		if _, err := c.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(queueURL), Attributes: mutable}); err != nil {
			return "", "", classify("provision: update queue "+name, err)
		}
	case err != nil:
		return "", "", classify("provision: create queue "+name, err)
	default:
		queueURL = aws.ToString(out.QueueUrl)
	}
	a, err := queueAttrs(ctx, c, queueURL, sqstypes.QueueAttributeNameQueueArn)
	if err != nil {
		return "", "", err
	}
	return queueURL, a[string(sqstypes.QueueAttributeNameQueueArn)], nil
}

// Deprovision deletes what Provision created: the subscription, the queue,
// the dead-letter queue and, if Provision created it, the topic. Entities
// already gone are not an error.
func Deprovision(ctx context.Context, cfg aws.Config, p *Provisioned) error {
	sqsc, snsc := sqs.NewFromConfig(cfg), sns.NewFromConfig(cfg)
	var errs []error
	gone := func(err error) bool { return err == nil || errors.Is(classify("", err), driver.ErrNotFound) }
	if p.SubscriptionARN != "" {
		if _, err := snsc.Unsubscribe(ctx, &sns.UnsubscribeInput{SubscriptionArn: aws.String(p.SubscriptionARN)}); !gone(err) {
			errs = append(errs, classify("deprovision: unsubscribe "+p.SubscriptionARN, err))
		}
	}
	for _, q := range []string{p.QueueURL, p.DLQURL} {
		if q == "" {
			continue
		}
		if _, err := sqsc.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(q)}); !gone(err) {
			errs = append(errs, classify("deprovision: delete queue "+q, err))
		}
	}
	if p.TopicCreated && p.TopicARN != "" {
		if _, err := snsc.DeleteTopic(ctx, &sns.DeleteTopicInput{TopicArn: aws.String(p.TopicARN)}); !gone(err) {
			errs = append(errs, classify("deprovision: delete topic "+p.TopicARN, err))
		}
	}
	return errors.Join(errs...)
}
