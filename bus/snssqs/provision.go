package snssqs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"reflect"
	"slices"
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
	// DLQName names the dead-letter queue, if not Name-dlq (with .fifo on
	// FIFO).
	DLQName string
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
	dlq = name + "-dlq" + suffix
	if o.DLQName != "" {
		d := strings.TrimSuffix(o.DLQName, ".fifo")
		if !validName(d, 75) {
			return "", "", "", fmt.Errorf("snssqs: provision: dead-letter queue name %q: want 1-75 letters, digits, - or _", o.DLQName)
		}
		if o.FIFO != strings.HasSuffix(o.DLQName, ".fifo") {
			return "", "", "", fmt.Errorf("snssqs: provision: dead-letter queue %s and FIFO=%t disagree", o.DLQName, o.FIFO)
		}
		dlq = d + suffix
	}
	return topic, name + suffix, dlq, nil
}

// Provision creates, for development and tests, an SNS topic, an SQS queue
// subscribed to it, and the queue's dead-letter queue with the redrive
// policy; see ProvisionOptions. It is idempotent: existing entities are
// reused and the queue's attributes updated. The queue policy lets the topic
// send to the queue, as AWS requires. Production deployments usually manage
// these with their infrastructure tooling instead. The portable
// bus.Provision does the same from a subscription URL (see
// Driver.Provision).
func Provision(ctx context.Context, cfg aws.Config, o ProvisionOptions) (*Provisioned, error) {
	pl, err := newPlan(o)
	if err != nil {
		return nil, err
	}
	_, p, err := pl.apply(ctx, cfg, false)
	return p, err
}

// plan is what Provision ensures.
type plan struct {
	o                             ProvisionOptions // MaxReceiveCount and VisibilityTimeout defaulted
	topicName, queueName, dlqName string
	// wantTopicARN is the ARN the topic must have, when the caller named
	// it by ARN (bus.Provision): its existence is checked first, and the
	// created topic must get it.
	wantTopicARN string
}

func newPlan(o ProvisionOptions) (*plan, error) {
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
	return &plan{o: o, topicName: topicName, queueName: queueName, dlqName: dlqName}, nil
}

// apply ensures the plan's entities and reports a step for each; dry only
// looks.
func (pl *plan) apply(ctx context.Context, cfg aws.Config, dry bool) ([]driver.ProvisionStep, *Provisioned, error) {
	o := pl.o
	sqsc, snsc := sqs.NewFromConfig(cfg), sns.NewFromConfig(cfg)
	p := &Provisioned{FIFO: o.FIFO, RawDelivery: o.RawDelivery && !o.NoTopic}
	var steps []driver.ProvisionStep

	switch {
	case o.TopicARN != "":
		if _, err := snsc.GetTopicAttributes(ctx, &sns.GetTopicAttributesInput{TopicArn: aws.String(o.TopicARN)}); err != nil {
			return nil, nil, classify("provision: topic "+o.TopicARN, err)
		}
		p.TopicARN = o.TopicARN
		steps = append(steps, driver.ProvisionStep{Kind: "topic", Name: o.TopicARN, Action: driver.ActionExists})
	case pl.topicName != "":
		st, arn, err := pl.ensureTopic(ctx, snsc, dry)
		if err != nil {
			return nil, nil, err
		}
		p.TopicARN, p.TopicCreated = arn, true
		steps = append(steps, st)
	}

	dlqAttrs := map[string]string{"MessageRetentionPeriod": strconv.Itoa(14 * 24 * 3600)}
	if o.FIFO {
		dlqAttrs["FifoQueue"] = "true"
	}
	st, err := ensureQueue(ctx, sqsc, "dead-letter queue", pl.dlqName, dlqAttrs, o.Tags, dry)
	if err != nil {
		return nil, nil, err
	}
	steps = append(steps, st.ProvisionStep)
	p.DLQURL, p.DLQARN = st.url, st.arn
	dlqARN := p.DLQARN
	if dlqARN == "" { // dry run, not created: stands for the ARN it would get
		dlqARN = "(new) " + pl.dlqName
	}
	rp, _ := json.Marshal(map[string]any{"deadLetterTargetArn": dlqARN, "maxReceiveCount": o.MaxReceiveCount})
	qAttrs := map[string]string{
		"VisibilityTimeout": strconv.Itoa(int(ceilSeconds(o.VisibilityTimeout) / time.Second)),
		"RedrivePolicy":     string(rp),
	}
	if o.FIFO {
		qAttrs["FifoQueue"] = "true"
	}
	if st, err = ensureQueue(ctx, sqsc, "queue", pl.queueName, qAttrs, o.Tags, dry); err != nil {
		return nil, nil, err
	}
	steps = append(steps, st.ProvisionStep)
	p.QueueURL, p.QueueARN = st.url, st.arn
	if p.TopicARN == "" {
		return steps, p, nil
	}
	sub, err := pl.ensureSubscription(ctx, sqsc, snsc, p, dry)
	if err != nil {
		return nil, nil, err
	}
	return append(steps, sub), p, nil
}

// ensureTopic creates the plan's topic, or finds it, and returns its ARN.
func (pl *plan) ensureTopic(ctx context.Context, snsc *sns.Client, dry bool) (driver.ProvisionStep, string, error) {
	o := pl.o
	st := driver.ProvisionStep{Kind: "topic", Name: pl.topicName, Action: driver.ActionCreated}
	if pl.wantTopicARN != "" {
		st.Name = pl.wantTopicARN
		out, err := snsc.GetTopicAttributes(ctx, &sns.GetTopicAttributesInput{TopicArn: aws.String(pl.wantTopicARN)})
		switch {
		case err == nil:
			if fifo := out.Attributes["FifoTopic"] == "true"; fifo != o.FIFO {
				return st, "", fmt.Errorf("snssqs: provision: topic %s exists with FIFO %t: %w", pl.wantTopicARN, fifo, driver.ErrConflict)
			}
			st.Action = driver.ActionExists
			return st, pl.wantTopicARN, nil
		case !errors.Is(classify("", err), driver.ErrNotFound):
			return st, "", classify("provision: topic "+pl.wantTopicARN, err)
		case dry:
			st.Action = driver.ActionWouldCreate
			return st, "", nil
		}
	}
	in := &sns.CreateTopicInput{Name: aws.String(pl.topicName), Attributes: map[string]string{}}
	if o.FIFO {
		in.Attributes["FifoTopic"] = "true"
	}
	for k, v := range o.Tags {
		in.Tags = append(in.Tags, snstypes.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	out, err := snsc.CreateTopic(ctx, in)
	if err != nil {
		return st, "", classify("provision: create topic "+pl.topicName, err)
	}
	arn := aws.ToString(out.TopicArn)
	if pl.wantTopicARN != "" && arn != pl.wantTopicARN {
		return st, "", invalidURL("topic_arn %s: the credentials' account and region create %s", pl.wantTopicARN, arn)
	}
	st.Name = arn
	return st, arn, nil
}

// ensureSubscription subscribes the queue to the topic, with the queue
// policy that lets the topic send to it, or checks both.
func (pl *plan) ensureSubscription(ctx context.Context, sqsc *sqs.Client, snsc *sns.Client, p *Provisioned, dry bool) (driver.ProvisionStep, error) {
	st := driver.ProvisionStep{Kind: "subscription", Name: p.TopicARN + " -> " + pl.queueName, Action: driver.ActionCreated}
	if p.QueueARN == "" || (dry && p.TopicARN == "") {
		st.Action = driver.ActionWouldCreate
		return st, nil
	}
	raw := strconv.FormatBool(pl.o.RawDelivery)
	var existing string
	if p.TopicARN != "" {
		pages := sns.NewListSubscriptionsByTopicPaginator(snsc, &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(p.TopicARN)})
		for pages.HasMorePages() && existing == "" {
			page, err := pages.NextPage(ctx)
			if err != nil && !(dry && errors.Is(classify("", err), driver.ErrNotFound)) {
				return st, classify("provision: subscriptions of "+p.TopicARN, err)
			}
			if page == nil {
				break
			}
			for _, s := range page.Subscriptions {
				if aws.ToString(s.Protocol) == "sqs" && aws.ToString(s.Endpoint) == p.QueueARN {
					existing = aws.ToString(s.SubscriptionArn)
				}
			}
		}
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
	var changes []string
	rawChanged := false
	if existing != "" {
		st.Name, st.Action = existing, driver.ActionExists
		p.SubscriptionARN = existing
		out, err := snsc.GetSubscriptionAttributes(ctx, &sns.GetSubscriptionAttributesInput{SubscriptionArn: aws.String(existing)})
		if err != nil {
			return st, classify("provision: subscription "+existing, err)
		}
		if got := out.Attributes["RawMessageDelivery"]; got != raw && !(got == "" && raw == "false") {
			rawChanged = true
			changes = append(changes, "raw delivery "+raw)
		}
	}
	attrs, err := queueAttrs(ctx, sqsc, p.QueueURL, sqstypes.QueueAttributeNamePolicy)
	if err != nil {
		return st, err
	}
	samePolicy := jsonEqual(attrs[string(sqstypes.QueueAttributeNamePolicy)], string(policy))
	if !samePolicy {
		changes = append(changes, "queue policy")
	}
	if existing != "" && len(changes) == 0 {
		return st, nil
	}
	st.Detail = strings.Join(changes, ", ")
	if dry {
		st.Action = map[bool]string{true: driver.ActionWouldUpdate, false: driver.ActionWouldCreate}[existing != ""]
		return st, nil
	}
	if !samePolicy {
		if _, err := sqsc.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{
			QueueUrl: aws.String(p.QueueURL), Attributes: map[string]string{"Policy": string(policy)},
		}); err != nil {
			return st, classify("provision: set the policy of "+p.QueueURL, err)
		}
	}
	if existing != "" {
		if rawChanged {
			if _, err := snsc.SetSubscriptionAttributes(ctx, &sns.SetSubscriptionAttributesInput{
				SubscriptionArn: aws.String(existing), AttributeName: aws.String("RawMessageDelivery"), AttributeValue: aws.String(raw),
			}); err != nil {
				return st, classify("provision: update subscription "+existing, err)
			}
		}
		st.Action = driver.ActionUpdated
		return st, nil
	}
	sout, err := snsc.Subscribe(ctx, &sns.SubscribeInput{
		TopicArn:              aws.String(p.TopicARN),
		Protocol:              aws.String("sqs"),
		Endpoint:              aws.String(p.QueueARN),
		Attributes:            map[string]string{"RawMessageDelivery": raw},
		ReturnSubscriptionArn: true,
	})
	if err != nil {
		return st, classify("provision: subscribe "+p.QueueARN+" to "+p.TopicARN, err)
	}
	p.SubscriptionARN = aws.ToString(sout.SubscriptionArn)
	st.Name, st.Detail = p.SubscriptionARN, "raw delivery "+raw
	return st, nil
}

// jsonEqual reports whether two JSON texts hold the same value.
func jsonEqual(a, b string) bool {
	var va, vb any
	if json.Unmarshal([]byte(a), &va) != nil || json.Unmarshal([]byte(b), &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// queueStep is ensureQueue's step, with the queue's URL and ARN ("" in a
// dry run for a queue that does not exist).
type queueStep struct {
	driver.ProvisionStep
	url, arn string
}

// ensureQueue creates a queue, or checks an existing one's attributes and
// updates those that differ (FifoQueue cannot change: a difference is a
// conflict), and returns its URL and ARN.
func ensureQueue(ctx context.Context, c *sqs.Client, kind, name string, attrs, tags map[string]string, dry bool) (queueStep, error) {
	st := queueStep{ProvisionStep: driver.ProvisionStep{Kind: kind, Name: name, Action: driver.ActionExists}}
	u, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	switch {
	case err == nil:
		st.url, st.Name = aws.ToString(u.QueueUrl), aws.ToString(u.QueueUrl)
		got, err := queueAttrs(ctx, c, st.url, sqstypes.QueueAttributeNameAll)
		if err != nil {
			return st, err
		}
		st.arn = got[string(sqstypes.QueueAttributeNameQueueArn)]
		if fifo := got["FifoQueue"] == "true"; fifo != (attrs["FifoQueue"] == "true") {
			return st, fmt.Errorf("snssqs: provision: %s %s exists with FIFO %t: %w", kind, name, fifo, driver.ErrConflict)
		}
		changed := map[string]string{}
		for k, v := range attrs {
			if k == "FifoQueue" {
				continue
			}
			if g := got[k]; g != v && !(k == "RedrivePolicy" && sameRedrive(g, v)) {
				changed[k] = v
			}
		}
		if len(changed) == 0 {
			return st, nil
		}
		st.Detail = strings.Join(slices.Sorted(maps.Keys(changed)), ", ")
		if dry {
			st.Action = driver.ActionWouldUpdate
			return st, nil
		}
		if _, err := c.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(st.url), Attributes: changed}); err != nil {
			return st, classify("provision: update queue "+name, err)
		}
		st.Action = driver.ActionUpdated
		return st, nil
	case !errors.Is(classify("", err), driver.ErrNotFound):
		return st, classify("provision: queue "+name, err)
	case dry:
		st.Action = driver.ActionWouldCreate
		return st, nil
	}
	out, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs, Tags: tags})
	if err != nil {
		return st, classify("provision: create queue "+name, err)
	}
	st.url, st.Name, st.Action = aws.ToString(out.QueueUrl), aws.ToString(out.QueueUrl), driver.ActionCreated
	a, err := queueAttrs(ctx, c, st.url, sqstypes.QueueAttributeNameQueueArn)
	if err != nil {
		return st, err
	}
	st.arn = a[string(sqstypes.QueueAttributeNameQueueArn)]
	return st, nil
}

// sameRedrive compares two RedrivePolicy attributes by meaning (services
// write maxReceiveCount as a number or a string).
func sameRedrive(a, b string) bool {
	arnA, nA, errA := parseRedrivePolicy(a)
	arnB, nB, errB := parseRedrivePolicy(b)
	return errA == nil && errB == nil && arnA == arnB && nA == nB
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

var _ driver.Provisioner = Driver{}

// Provision implements bus.Provision with the AWS SDK's default
// configuration. The URL is a subscription URL
// (sns-sqs://?queue_url=<URL>[&fifo=true][&raw=true][&dlq_url=<URL>]),
// optionally with topic_arn=<ARN>, a parameter only Provision takes: the
// SNS topic to create (if missing) and subscribe the queue to; without it
// publishers send to the queue. A topic URL (topic_arn alone) creates the
// topic. Names come from the URL and ARN; the dead-letter queue is
// dlq_url's, or <queue>-dlq[.fifo].
//
// spec.MaxAttempts is the RedrivePolicy's maxReceiveCount (1 to 1000); 0
// sets SQS's maximum, 1000, rather than removing the policy, through which
// the subscription finds its dead-letter queue (remove it yourself and
// open with dlq_url for truly unlimited receives). spec.AckDeadline is the
// queue's VisibilityTimeout (default 30s, at most 12h). spec.Ordered
// requires FIFO names (.fifo); an existing queue or topic whose FIFO type
// differs is an error wrapping bus.ErrConflict. The subscription uses raw
// delivery when the URL says raw=true.
func (Driver) Provision(ctx context.Context, u *url.URL, spec driver.ProvisionSpec) ([]driver.ProvisionStep, error) {
	if u == nil {
		return nil, invalidURL("nil URL")
	}
	q := u.Query()
	topicARN := q.Get("topic_arn")
	q.Del("topic_arn")
	var o ProvisionOptions
	var pl *plan
	if topicARN != "" {
		tu := *u
		tu.RawQuery = url.Values{"topic_arn": {topicARN}}.Encode()
		if f := q.Get("fifo"); f != "" {
			tu.RawQuery += "&fifo=" + url.QueryEscape(f)
		}
		tp, err := parseURL(&tu, false)
		if err != nil {
			return nil, err
		}
		o.FIFO, o.TopicName = tp.fifo, tp.name()
	}
	if !q.Has("queue_url") {
		if topicARN == "" {
			return nil, invalidURL("missing queue_url or topic_arn")
		}
		if spec.Ordered && !o.FIFO {
			return nil, invalidURL("spec.Ordered needs a FIFO topic (a name ending in .fifo)")
		}
		cfg, err := loadConfig(ctx)
		if err != nil {
			return nil, err
		}
		pl = &plan{o: o, topicName: o.TopicName, wantTopicARN: topicARN}
		st, _, err := pl.ensureTopic(ctx, sns.NewFromConfig(cfg), spec.DryRun)
		return []driver.ProvisionStep{st}, err
	}
	su := *u
	su.RawQuery = q.Encode()
	sp, err := parseURL(&su, true)
	if err != nil {
		return nil, err
	}
	if topicARN != "" && sp.fifo != o.FIFO {
		return nil, invalidURL("topic_arn and queue_url disagree on FIFO")
	}
	if spec.Ordered && !sp.fifo {
		return nil, invalidURL("spec.Ordered needs FIFO queues (names ending in .fifo)")
	}
	o.Name, o.FIFO, o.RawDelivery, o.NoTopic = sp.name(), sp.fifo, sp.raw, topicARN == ""
	if sp.dlqURL != "" {
		sd := &params{queueURL: sp.dlqURL}
		o.DLQName = sd.name()
	}
	switch {
	case spec.MaxAttempts == 0:
		o.MaxReceiveCount = 1000
	case spec.MaxAttempts > 1000:
		return nil, fmt.Errorf("snssqs: MaxAttempts %d: SQS allows 1 to 1000 (0 for its maximum): %w", spec.MaxAttempts, driver.ErrUnsupported)
	default:
		o.MaxReceiveCount = spec.MaxAttempts
	}
	o.VisibilityTimeout = spec.AckDeadline
	if spec.AckDeadline > 12*time.Hour {
		return nil, fmt.Errorf("snssqs: AckDeadline %v: SQS allows up to 12h: %w", spec.AckDeadline, driver.ErrUnsupported)
	}
	if pl, err = newPlan(o); err != nil {
		return nil, fmt.Errorf("%w: %w", driver.ErrInvalidURL, err)
	}
	pl.wantTopicARN = topicARN
	cfg, err := loadConfig(ctx)
	if err != nil {
		return nil, err
	}
	steps, _, err := pl.apply(ctx, cfg, spec.DryRun)
	return steps, err
}
