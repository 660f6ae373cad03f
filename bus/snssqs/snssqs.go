// Package snssqs is payrail's Amazon SNS + SQS bus driver, built on
// github.com/aws/aws-sdk-go-v2 (service/sns and service/sqs) and registered
// under the name "sns-sqs".
//
//	import _ "github.com/payrail/payrail/bus/snssqs"
//
//	topic, err := bus.OpenTopic(ctx, "sns-sqs://?topic_arn="+url.QueryEscape(topicARN))
//	sub, err := bus.OpenSubscription(ctx, "sns-sqs://?queue_url="+url.QueryEscape(queueURL))
//
// A topic is an SNS topic (every SQS queue subscribed to it receives every
// message: fan-out) or a single SQS queue published to directly. A
// subscription is an SQS queue, with its dead-letter queue. Provision
// creates the topic, the queue, its dead-letter queue with the redrive
// policy and the subscription, for development and tests.
//
// # Configuration and credentials
//
// Region, credentials and endpoint come only from the AWS SDK's standard
// chain (config.LoadDefaultConfig): AWS_REGION, AWS_ACCESS_KEY_ID /
// AWS_SECRET_ACCESS_KEY, AWS_PROFILE and the shared config files, web
// identity (IRSA), container and instance roles, and AWS_ENDPOINT_URL (or
// AWS_ENDPOINT_URL_SQS / AWS_ENDPOINT_URL_SNS) for emulators. URLs carry no
// credentials. To use an aws.Config built by your own code, call OpenTopic
// and OpenSubscription of this package instead of bus.OpenTopic and
// bus.OpenSubscription.
//
// # URLs
//
//	sns-sqs://?topic_arn=<url-escaped SNS topic ARN>[&fifo=true]     topic: publish through SNS
//	sns-sqs://?queue_url=<url-escaped SQS queue URL>[&fifo=true]     topic: publish to the queue
//	sns-sqs://?queue_url=<url-escaped SQS queue URL>[&params]        subscription
//
// fifo=true declares a FIFO topic or queue; it is also inferred from a name
// ending in .fifo, and checked against the entity's attributes when it is
// opened (a mismatch is an error wrapping bus.ErrInvalidURL). Subscription
// parameters:
//
//   - raw=true|false (default false): whether the SNS subscription uses raw
//     message delivery. With false, a body that is an SNS notification
//     envelope (a JSON object with Type "Notification", TopicArn and
//     Message) is unwrapped and its MessageAttributes become the message's;
//     messages sent to the queue directly (redriven ones, for instance) are
//     taken as they are. raw=true never unwraps, for queues whose payloads
//     may themselves look like envelopes. Both forms are handled either way
//     when the body carries this driver's metadata natively.
//   - wait (default 20s): the long-polling wait of each ReceiveMessage,
//     whole seconds from 1s to 20s, or 0 for the queue's
//     ReceiveMessageWaitTimeSeconds.
//   - visibility: the visibility timeout given to received messages (whole
//     seconds, rounded up), the subscription's ack deadline; default the
//     queue's VisibilityTimeout.
//   - max_attempts: the delivery attempt on which a failing message is
//     dead-lettered by package bus (Capabilities.MaxAttempts); default the
//     queue's RedrivePolicy maxReceiveCount, and never more than it (SQS
//     would move the message to the dead-letter queue first, without the
//     reason).
//   - dlq_url: the dead-letter queue for DeadLetter, inspection and
//     redrive; default the deadLetterTargetArn of the queue's RedrivePolicy.
//     A subscription needs one or the other: opening a queue with neither
//     fails, so that a failing payment is never dropped.
//
// A missing topic or queue (or dead-letter queue) fails the open with an
// error wrapping bus.ErrNotFound; denied credentials give bus.ErrPermission.
//
// # Message format
//
// SQS and SNS carry UTF-8 text bodies and at most 10 message attributes,
// while payrail messages have an ID, a key, arbitrary bytes and any number
// of attributes. Every published message carries the message attribute
// payrail.meta (AttrMeta), a JSON object with the message ID, the key, the
// body encoding and the attributes that do not fit natively. The other
// attributes are native String message attributes, as many as fit: up to
// nine, taken in name order, whose names are valid SQS attribute names
// (letters, digits, _ - . and not starting with AWS. or Amazon.) and whose
// values are non-empty and valid SQS text. The rest (the tenth and later,
// empty values, names or values SQS refuses) travel inside payrail.meta, so
// no attribute is ever lost, and receivers see them all as ordinary
// attributes; native ones remain usable in SNS filter policies. The body is
// sent as it is when it is valid SQS text; otherwise (binary data, control
// characters) it is sent in standard base64 and marked as such, and an
// empty body is sent as a placeholder and marked as empty. Sizes are checked
// before sending, counting what SQS and SNS count (body plus attribute
// names, types and values): at most MaxSNSMessageBytes through SNS and
// MaxSQSMessageBytes straight to SQS, so binary bodies through SNS are
// limited to about 190 KB. Larger messages fail with ErrTooLarge and
// nothing of their batch is sent.
//
// Messages not published by this driver are delivered as they are: the SQS
// (or SNS) message ID, MessageGroupId as the key, the body unchanged and
// every attribute (Binary ones in base64).
//
// On FIFO topics and queues the key is the MessageGroupId (a key that is
// not a valid group ID, or longer than 128 characters, is hashed, so one
// key always maps to one group) and the message ID the
// MessageDeduplicationId; a message without a key gets a group of its own,
// so keyless messages are not ordered. Standard queues ignore both.
//
// # Publishing and batching
//
// Publish and PublishBatch return once SNS or SQS accepted every message.
// They go through a batcher that sends PublishBatch / SendMessageBatch
// requests of up to 10 entries (and the request size limit): a batch is
// split into requests sent concurrently (up to 8 at a time), and single
// Publish calls made concurrently by different goroutines are coalesced
// into shared requests. Batching adds no delay: an idle topic sends a
// message at once, alone; requests fill up only with what queued while the
// previous ones were in flight. On FIFO topics the messages of one group
// always go through the same sender, one request after another, so their
// order is kept. Entries the service failed through no fault of the sender
// are retried twice; other failures are returned, naming how many messages
// of the batch were not published (the others were).
//
// # Receiving, acks and nacks
//
// ReceiveMessage long-polls for up to 10 messages. The delivery attempt is
// the message's ApproximateReceiveCount and its publish time its
// SentTimestamp (the envelope's Timestamp with SNS envelopes). Ack deletes
// the message, Nack(delay) changes its visibility timeout to the delay
// (rounded up to whole seconds, since SQS counts in seconds: nack delays are
// exact to the second, and a delay under a second waits one), and Extend
// changes it to the extension; these too go through batchers
// (DeleteMessageBatch, ChangeMessageVisibilityBatch), so the settlements of
// concurrent handlers share requests. When Receive stops while a long poll
// is in flight, the poll is left to finish and the messages it brings are
// made visible again at once (they count a delivery attempt); closing the
// subscription aborts it, and messages it had already taken reappear after
// their visibility timeout, as with any SQS consumer that stops.
//
// # Dead letters
//
// The queue's RedrivePolicy moves a message to the dead-letter queue after
// maxReceiveCount receives, for consumers that crash. Package bus
// dead-letters a message explicitly when its handler failed on the last
// attempt or permanently: DeadLetter sends it to the dead-letter queue with
// its ID, key, body and attributes, the reason in the native attribute
// payrail.dead_letter_reason (inside payrail.meta if not valid SQS text),
// the time, attempt and source queue in payrail.meta, and then deletes it
// from the queue. On FIFO queues the dead letter keeps its message group.
// DeadLetters (inspection) receives the dead-letter queue's messages with a
// short visibility timeout and makes them visible again; messages that SQS
// moved on its own report the reason "moved by SQS after maxReceiveCount
// receives". On FIFO dead-letter queues SQS hands out one message per group
// at a time, so inspection shows the oldest dead letter of each group.
// Redrive moves dead letters back to the subscription's own queue (never to
// the topic, which would deliver them to every subscriber again), keeping
// ID, key, body and attributes, then deletes them from the dead-letter
// queue; they start again at delivery attempt 1. Redrive is at least once:
// a failure between the send and the delete redrives a message twice.
//
// # Capabilities and Stats
//
// Subscriptions declare FanOut (through SNS topics), NackDelay, Extend,
// DeadLetterQueue and Stats; Ordering on FIFO queues, where SQS delivers
// one group's messages in order and package bus handles them one at a
// time. AckDeadline is the visibility timeout and MaxAttempts the
// max_attempts parameter or maxReceiveCount. Stats reads the queue
// attributes: Backlog is ApproximateNumberOfMessages plus
// ApproximateNumberOfMessagesDelayed, InFlight
// ApproximateNumberOfMessagesNotVisible (which includes nacked messages
// waiting for their delay) and DeadLetters the dead-letter queue's total.
// SQS documents these counts as approximate.
//
// # As
//
// Topics convert with As to *sns.Client and *sqs.Client, subscriptions to
// *sqs.Client:
//
//	var c *sqs.Client
//	if sub.As(&c) { ... }
package snssqs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/driver"
)

// Scheme is the URL scheme, and driver name, this package registers.
const Scheme = "sns-sqs"

// Errors of this package; test with errors.Is.
var (
	// ErrTooLarge is returned by Publish for a message larger than SNS or
	// SQS accepts once encoded (see the package documentation).
	ErrTooLarge = errors.New("snssqs: message too large")
	// ErrNoDeadLetterQueue is returned when opening a subscription whose
	// queue has no RedrivePolicy and whose URL gives no dlq_url.
	ErrNoDeadLetterQueue = errors.New("snssqs: the queue has no dead-letter queue (set a RedrivePolicy, e.g. with Provision, or dlq_url)")
)

func init() { bus.Register(Scheme, Driver{}) }

// Driver opens SNS topics and SQS queues from sns-sqs:// URLs, with the
// configuration of config.LoadDefaultConfig; see the package documentation.
// It is registered under Scheme.
type Driver struct{}

var _ driver.Driver = Driver{}

// OpenTopic opens the topic or queue the URL names, checking that it exists.
func (Driver) OpenTopic(ctx context.Context, u *url.URL) (driver.Topic, error) {
	p, err := parseURL(u, false)
	if err != nil {
		return nil, err
	}
	cfg, err := loadConfig(ctx)
	if err != nil {
		return nil, err
	}
	return openTopic(ctx, cfg, p)
}

// OpenSubscription opens the queue the URL names, checking that it and its
// dead-letter queue exist.
func (Driver) OpenSubscription(ctx context.Context, u *url.URL) (driver.Subscription, error) {
	p, err := parseURL(u, true)
	if err != nil {
		return nil, err
	}
	cfg, err := loadConfig(ctx)
	if err != nil {
		return nil, err
	}
	return openSubscription(ctx, cfg, p)
}

// OpenTopic opens the topic rawURL names (an sns-sqs:// URL) with the
// given AWS configuration instead of the default chain.
func OpenTopic(ctx context.Context, cfg aws.Config, rawURL string, opts ...bus.TopicOption) (*bus.Topic, error) {
	u, err := parseRawURL(rawURL)
	if err != nil {
		return nil, err
	}
	p, err := parseURL(u, false)
	if err != nil {
		return nil, err
	}
	t, err := openTopic(ctx, cfg, p)
	if err != nil {
		return nil, err
	}
	return bus.NewTopic(t, append([]bus.TopicOption{bus.WithName(p.name())}, opts...)...), nil
}

// OpenSubscription opens the subscription rawURL names (an sns-sqs:// URL)
// with the given AWS configuration instead of the default chain.
func OpenSubscription(ctx context.Context, cfg aws.Config, rawURL string, opts ...bus.SubscriptionOption) (*bus.Subscription, error) {
	u, err := parseRawURL(rawURL)
	if err != nil {
		return nil, err
	}
	p, err := parseURL(u, true)
	if err != nil {
		return nil, err
	}
	s, err := openSubscription(ctx, cfg, p)
	if err != nil {
		return nil, err
	}
	return bus.NewSubscription(s, append([]bus.SubscriptionOption{bus.WithName(p.name())}, opts...)...), nil
}

// parseRawURL parses rawURL for OpenTopic and OpenSubscription. Its error
// does not repeat the URL, which may hold credentials by mistake.
func parseRawURL(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return nil, invalidURL("malformed URL: %v", err)
	}
	return u, nil
}

// TopicURL returns the sns-sqs:// topic URL of an SNS topic ARN.
func TopicURL(topicARN string) string {
	return Scheme + "://?topic_arn=" + url.QueryEscape(topicARN)
}

// QueueURL returns the sns-sqs:// URL of an SQS queue URL, usable as a
// subscription or as a topic that publishes straight to the queue.
func QueueURL(queueURL string) string {
	return Scheme + "://?queue_url=" + url.QueryEscape(queueURL)
}

func loadConfig(ctx context.Context) (aws.Config, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return aws.Config{}, fmt.Errorf("snssqs: loading the AWS configuration: %w", err)
	}
	return cfg, nil
}

// params is a parsed URL.
type params struct {
	topicARN   string
	queueURL   string
	fifo       bool
	raw        bool
	wait       time.Duration
	visibility time.Duration // zero: the queue's
	maxAttempt int           // zero: maxReceiveCount
	dlqURL     string
}

func (p *params) name() string {
	s := p.topicARN
	if s == "" {
		s = strings.TrimRight(p.queueURL, "/")
	}
	return s[strings.LastIndexAny(s, "/:")+1:]
}

func invalidURL(format string, args ...any) error {
	return fmt.Errorf("snssqs: %s: %w", fmt.Sprintf(format, args...), driver.ErrInvalidURL)
}

func parseURL(u *url.URL, sub bool) (*params, error) {
	if u == nil {
		return nil, invalidURL("nil URL")
	}
	if u.Opaque != "" || u.Host != "" || (u.Path != "" && u.Path != "/") || u.User != nil || u.Fragment != "" {
		return nil, invalidURL("want sns-sqs://?topic_arn=<ARN> or sns-sqs://?queue_url=<URL>, with nothing between :// and ?")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, invalidURL("malformed query: %v", err)
	}
	p := &params{wait: 20 * time.Second}
	var fifo *bool
	for name, vals := range q {
		if len(vals) != 1 {
			return nil, invalidURL("parameter %q given %d times", name, len(vals))
		}
		v := vals[0]
		bad := func(want string) error { return invalidURL("%s=%q is not %s", name, v, want) }
		switch {
		case name == "topic_arn" && !sub:
			p.topicARN = v
		case name == "queue_url":
			p.queueURL = v
		case name == "fifo":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, bad("a boolean")
			}
			fifo = &b
		case name == "raw" && sub:
			if p.raw, err = strconv.ParseBool(v); err != nil {
				return nil, bad("a boolean")
			}
		case name == "wait" && sub:
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > 20*time.Second || d%time.Second != 0 {
				return nil, bad("whole seconds from 0s to 20s")
			}
			p.wait = d
		case name == "visibility" && sub:
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 || d > 12*time.Hour {
				return nil, bad("a positive duration up to 12h")
			}
			p.visibility = ceilSeconds(d)
		case name == "max_attempts" && sub:
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return nil, bad("a positive integer")
			}
			p.maxAttempt = n
		case name == "dlq_url" && sub:
			if err := checkQueueURL(v); err != nil {
				return nil, invalidURL("dlq_url: %v", err)
			}
			p.dlqURL = v
		default:
			kind := "topic"
			if sub {
				kind = "subscription"
			}
			return nil, invalidURL("unknown %s parameter %q", kind, name)
		}
	}
	switch {
	case p.topicARN != "" && p.queueURL != "":
		return nil, invalidURL("give topic_arn or queue_url, not both")
	case p.topicARN == "" && p.queueURL == "" && sub:
		return nil, invalidURL("missing queue_url")
	case p.topicARN == "" && p.queueURL == "":
		return nil, invalidURL("missing topic_arn or queue_url")
	}
	var name string
	if p.topicARN != "" {
		parts := strings.Split(p.topicARN, ":")
		if len(parts) != 6 || parts[0] != "arn" || parts[2] != "sns" || parts[5] == "" {
			return nil, invalidURL("topic_arn %q is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)", p.topicARN)
		}
		name = parts[5]
	} else {
		if err := checkQueueURL(p.queueURL); err != nil {
			return nil, invalidURL("queue_url: %v", err)
		}
		if name = p.name(); name == "" {
			return nil, invalidURL("queue_url does not end in a queue name")
		}
	}
	suffix := strings.HasSuffix(name, ".fifo")
	switch {
	case fifo == nil:
		p.fifo = suffix
	case *fifo != suffix:
		return nil, invalidURL("fifo=%t but the name %q %s end in .fifo", *fifo, name, map[bool]string{true: "does", false: "does not"}[suffix])
	default:
		p.fifo = *fifo
	}
	return p, nil
}

func checkQueueURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.Trim(u.Path, "/") == "" {
		return fmt.Errorf("%q is not an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>)", s)
	}
	return nil
}

// ceilSeconds rounds d up to whole seconds: SQS timeouts are in seconds.
func ceilSeconds(d time.Duration) time.Duration {
	if r := d % time.Second; r != 0 {
		d += time.Second - r
	}
	return d
}

// seconds returns d in whole seconds, rounded up and capped at SQS's 12h.
func seconds(d time.Duration) int32 {
	return int32(min(ceilSeconds(max(d, 0)), 12*time.Hour) / time.Second)
}

// classify wraps an SDK error, mapping missing entities to bus.ErrNotFound
// and denied credentials to bus.ErrPermission.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("snssqs: %s: %w", op, err)
	}
	var (
		qd  *sqstypes.QueueDoesNotExist
		rnf *sqstypes.ResourceNotFoundException
		nf  *snstypes.NotFoundException
		ae  smithy.APIError
	)
	switch {
	case errors.As(err, &qd), errors.As(err, &rnf), errors.As(err, &nf):
		return fmt.Errorf("snssqs: %s: %w: %w", op, driver.ErrNotFound, err)
	case errors.As(err, &ae):
		switch ae.ErrorCode() {
		case "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NotFound", "NotFoundException":
			return fmt.Errorf("snssqs: %s: %w: %w", op, driver.ErrNotFound, err)
		case "AccessDenied", "AccessDeniedException", "AuthorizationError", "AuthorizationErrorException",
			"InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch",
			"InvalidSecurity", "KmsAccessDenied", "MissingAuthenticationToken", "ExpiredToken":
			return fmt.Errorf("snssqs: %s: %w: %w", op, driver.ErrPermission, err)
		}
	}
	return fmt.Errorf("snssqs: %s: %w", op, err)
}

// queueAttrs reads attributes of a queue.
func queueAttrs(ctx context.Context, c *sqs.Client, queueURL string, names ...sqstypes.QueueAttributeName) (map[string]string, error) {
	out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(queueURL), AttributeNames: names})
	if err != nil {
		return nil, classify("queue "+queueURL, err)
	}
	return out.Attributes, nil
}

// redrivePolicy is a queue's RedrivePolicy attribute. maxReceiveCount is
// a number in AWS's answers and a string in some emulators'.
type redrivePolicy struct {
	DeadLetterTargetArn string          `json:"deadLetterTargetArn"`
	MaxReceiveCount     json.RawMessage `json:"maxReceiveCount"`
}

func parseRedrivePolicy(s string) (arn string, maxReceive int, err error) {
	var rp redrivePolicy
	if err := json.Unmarshal([]byte(s), &rp); err != nil {
		return "", 0, fmt.Errorf("snssqs: malformed RedrivePolicy %q: %w", s, err)
	}
	n, err := strconv.Atoi(strings.Trim(string(rp.MaxReceiveCount), `"`))
	if err != nil || n < 1 || rp.DeadLetterTargetArn == "" {
		return "", 0, fmt.Errorf("snssqs: RedrivePolicy %q lacks deadLetterTargetArn or a valid maxReceiveCount", s)
	}
	return rp.DeadLetterTargetArn, n, nil
}

// queueURLForARN finds the URL of the queue an ARN names.
func queueURLForARN(ctx context.Context, c *sqs.Client, arn string) (string, error) {
	parts := strings.Split(arn, ":")
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "sqs" {
		return "", fmt.Errorf("snssqs: %q is not an SQS queue ARN", arn)
	}
	in := &sqs.GetQueueUrlInput{QueueName: aws.String(parts[5])}
	if parts[4] != "" {
		in.QueueOwnerAWSAccountId = aws.String(parts[4])
	}
	out, err := c.GetQueueUrl(ctx, in)
	if err != nil {
		return "", classify("queue "+arn, err)
	}
	return aws.ToString(out.QueueUrl), nil
}
