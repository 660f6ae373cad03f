package pubsub

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/payrail/payrail/bus/driver"
)

// Defaults of Provision.
const (
	// DefaultMaxDeliveryAttempts is the dead-letter policy's
	// MaxDeliveryAttempts when the URL sets no max_attempts.
	DefaultMaxDeliveryAttempts = MinMaxDeliveryAttempts
	// DefaultProvisionAckDeadline is the ack deadline of created
	// subscriptions when the URL sets no ack_deadline.
	DefaultProvisionAckDeadline = 30 * time.Second
	// DeadLetterSuffix names the default dead-letter topic and subscription:
	// <subscription>.dlq.
	DeadLetterSuffix = ".dlq"
	// deadLetterRetention is the message retention of created dead-letter
	// subscriptions (Pub/Sub's maximum).
	deadLetterRetention = 7 * 24 * time.Hour
)

// Provision actions, the values of ProvisionStep.Action (package bus's).
const (
	ActionExists      = driver.ActionExists
	ActionCreated     = driver.ActionCreated
	ActionUpdated     = driver.ActionUpdated
	ActionWouldCreate = driver.ActionWouldCreate
	ActionWouldUpdate = driver.ActionWouldUpdate
)

// ProvisionStep is what Provision found, did or would do for one resource:
// its Kind is "topic", "dead-letter topic", "dead-letter subscription" or
// "subscription" and its Name the full resource name
// (projects/<project>/...).
type ProvisionStep = driver.ProvisionStep

// ProvisionOption configures Provision.
type ProvisionOption func(*provisionOptions)

type provisionOptions struct{ dryRun bool }

// WithDryRun makes Provision only report what it would create or update.
func WithDryRun() ProvisionOption { return func(o *provisionOptions) { o.dryRun = true } }

// Provision creates what a subscription URL needs, if missing (the
// portable bus.Provision does the same from a bus.ProvisionSpec; see
// Driver.Provision): the topic,
// the dead-letter topic (dead_letter_topic, default <subscription>.dlq), its
// subscription (dead_letter_subscription, default the dead-letter topic's ID;
// 7-day retention), and the subscription with message ordering (ordered,
// default true), ack deadline (ack_deadline, default 30s) and a dead-letter
// policy (max_attempts, default 5; Pub/Sub allows 5 to 100), in that order.
//
//	steps, err := pubsub.Provision(ctx, "pubsub://my-project/payments?subscription=payments-worker")
//
// Existing resources are kept: a subscription attached to another topic,
// or whose ordering differs (it cannot be changed), is an error; a missing
// or different dead-letter policy, and an ack deadline the URL sets, are
// updated. No retry policy is set, so that nacks follow the delays package
// bus asks for.
//
// On Google Cloud, Pub/Sub's service agent
// (service-<project number>@gcp-sa-pubsub.iam.gserviceaccount.com) also
// needs roles/pubsub.publisher on the dead-letter topic and
// roles/pubsub.subscriber on the subscription to forward messages it
// dead-letters itself; grant them with your IAM tooling (the Cloud Console
// offers it when editing the subscription). Emulators need nothing.
func Provision(ctx context.Context, urlstr string, opts ...ProvisionOption) ([]ProvisionStep, error) {
	var o provisionOptions
	for _, opt := range opts {
		opt(&o)
	}
	u, err := url.Parse(urlstr)
	if err != nil {
		return nil, invalidURL("malformed URL")
	}
	if u.Scheme != Scheme {
		return nil, invalidURL("scheme %q, want %s", u.Scheme, Scheme)
	}
	cfg, err := parseURL(u, true)
	if err != nil {
		return nil, err
	}
	return planFor(cfg).run(ctx, o.dryRun)
}

var _ driver.Provisioner = Driver{}

// Provision implements bus.Provision. For a topic URL it creates the topic;
// for a subscription URL, everything the package-level Provision creates,
// with the spec's settings taking precedence over the URL's: MaxAttempts is
// the dead-letter policy's MaxDeliveryAttempts, 5 to 100, and 0 (unlimited)
// sets Pub/Sub's maximum, 100, since the driver needs a dead-letter policy
// to count attempts; AckDeadline the subscription's ack deadline (10s to
// 600s); Ordered enables message ordering (without it, the URL's ordered
// parameter decides, by default true as for the package-level Provision,
// and an existing subscription keeps its ordering). An
// existing subscription attached to another topic, or whose ordering
// differs from what is asked, is an error wrapping bus.ErrConflict.
func (Driver) Provision(ctx context.Context, u *url.URL, spec driver.ProvisionSpec) ([]driver.ProvisionStep, error) {
	if u == nil {
		return nil, invalidURL("nil URL")
	}
	sub := u.Query().Has("subscription")
	cfg, err := parseURL(u, sub)
	if err != nil {
		return nil, err
	}
	if !sub {
		client, err := newClient(ctx, cfg.project)
		if err != nil {
			return nil, err
		}
		defer client.Close()
		st, err := ensureTopic(ctx, client, "topic", cfg.topicName(), spec.DryRun)
		return []driver.ProvisionStep{st}, err
	}
	switch {
	case spec.MaxAttempts == 0:
		cfg.maxAttempts = MaxMaxDeliveryAttempts
	case spec.MaxAttempts < MinMaxDeliveryAttempts || spec.MaxAttempts > MaxMaxDeliveryAttempts:
		return nil, fmt.Errorf("pubsub: MaxAttempts %d: Pub/Sub allows %d to %d (0 for its maximum): %w", spec.MaxAttempts, MinMaxDeliveryAttempts, MaxMaxDeliveryAttempts, driver.ErrUnsupported)
	default:
		cfg.maxAttempts = spec.MaxAttempts
	}
	if spec.AckDeadline > 0 {
		if spec.AckDeadline < 10*time.Second || spec.AckDeadline > 600*time.Second {
			return nil, fmt.Errorf("pubsub: AckDeadline %v: Pub/Sub allows 10s to 600s: %w", spec.AckDeadline, driver.ErrUnsupported)
		}
		cfg.ackDeadline = spec.AckDeadline
	}
	if spec.Ordered {
		if cfg.orderedSet && !cfg.ordered {
			return nil, invalidURL("ordered=false contradicts spec.Ordered")
		}
		cfg.ordered, cfg.orderedSet = true, true
	}
	return planFor(cfg).run(ctx, spec.DryRun)
}

// run connects and applies the plan.
func (p *plan) run(ctx context.Context, dry bool) ([]ProvisionStep, error) {
	client, err := newClient(ctx, p.cfg.project)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	return p.apply(ctx, client, dry)
}

// conflict returns an error wrapping driver.ErrConflict and, as the
// package-level Provision always did, driver.ErrInvalidURL.
func conflict(format string, args ...any) error {
	return fmt.Errorf("pubsub: %s: %w (%w)", fmt.Sprintf(format, args...), driver.ErrConflict, driver.ErrInvalidURL)
}

// plan is what Provision ensures.
type plan struct {
	cfg                          *config
	topic, dlqTopic, sub, dlqSub string
	maxAttempts                  int32
	ackDeadline                  time.Duration
	ackDeadlineSet, attemptsSet  bool
}

func planFor(cfg *config) *plan {
	p := &plan{cfg: cfg, topic: cfg.topicName(), sub: cfg.subName()}
	dlqTopic := cfg.dlqTopic
	if dlqTopic == "" {
		dlqTopic = cfg.subscription + DeadLetterSuffix
	}
	dlqSub := cfg.dlqSubscription
	if dlqSub == "" {
		dlqSub = dlqTopic
	}
	p.dlqTopic, p.dlqSub = topicName(cfg.project, dlqTopic), subName(cfg.project, dlqSub)
	p.maxAttempts, p.attemptsSet = DefaultMaxDeliveryAttempts, cfg.maxAttempts != 0
	if p.attemptsSet {
		p.maxAttempts = int32(cfg.maxAttempts)
	}
	p.ackDeadline, p.ackDeadlineSet = DefaultProvisionAckDeadline, cfg.ackDeadline != 0
	if p.ackDeadlineSet {
		p.ackDeadline = cfg.ackDeadline
	}
	return p
}

// ackSeconds rounds an ack deadline up to whole seconds, as the API takes it.
func ackSeconds(d time.Duration) int32 { return int32((d + time.Second - 1) / time.Second) }

func (p *plan) apply(ctx context.Context, c *pubsub.Client, dry bool) ([]ProvisionStep, error) {
	var steps []ProvisionStep
	for _, t := range []struct{ kind, name string }{{"topic", p.topic}, {"dead-letter topic", p.dlqTopic}} {
		st, err := ensureTopic(ctx, c, t.kind, t.name, dry)
		if err != nil {
			return steps, err
		}
		steps = append(steps, st)
	}
	st, err := p.ensureDLQSub(ctx, c, dry)
	if err != nil {
		return steps, err
	}
	steps = append(steps, st)
	st, err = p.ensureSub(ctx, c, dry)
	if err != nil {
		return steps, err
	}
	return append(steps, st), nil
}

func ensureTopic(ctx context.Context, c *pubsub.Client, kind, name string, dry bool) (ProvisionStep, error) {
	st := ProvisionStep{Kind: kind, Name: name, Action: ActionExists}
	_, err := c.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: name})
	switch {
	case err == nil:
		return st, nil
	case !isCode(err, codes.NotFound):
		return st, classify("get "+kind+" "+name, err)
	case dry:
		st.Action = ActionWouldCreate
		return st, nil
	}
	if _, err := c.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: name}); err != nil && !isCode(err, codes.AlreadyExists) {
		return st, classify("create "+kind+" "+name, err)
	}
	st.Action = ActionCreated
	return st, nil
}

func (p *plan) ensureDLQSub(ctx context.Context, c *pubsub.Client, dry bool) (ProvisionStep, error) {
	st := ProvisionStep{Kind: "dead-letter subscription", Name: p.dlqSub, Action: ActionExists}
	got, err := c.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: p.dlqSub})
	switch {
	case err == nil:
		if got.Topic != p.dlqTopic {
			return st, conflict("dead-letter subscription %s exists but is attached to %q, not %s", p.dlqSub, got.Topic, p.dlqTopic)
		}
		return st, nil
	case !isCode(err, codes.NotFound):
		return st, classify("get subscription "+p.dlqSub, err)
	}
	st.Detail = "topic " + p.dlqTopic + ", retention 7d"
	if dry {
		st.Action = ActionWouldCreate
		return st, nil
	}
	_, err = c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name:                     p.dlqSub,
		Topic:                    p.dlqTopic,
		AckDeadlineSeconds:       60,
		MessageRetentionDuration: durationpb.New(deadLetterRetention),
	})
	if err != nil && !isCode(err, codes.AlreadyExists) {
		return st, classify("create subscription "+p.dlqSub, err)
	}
	st.Action = ActionCreated
	return st, nil
}

func (p *plan) ensureSub(ctx context.Context, c *pubsub.Client, dry bool) (ProvisionStep, error) {
	st := ProvisionStep{Kind: "subscription", Name: p.sub, Action: ActionExists}
	policy := &pubsubpb.DeadLetterPolicy{DeadLetterTopic: p.dlqTopic, MaxDeliveryAttempts: p.maxAttempts}
	got, err := c.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: p.sub})
	switch {
	case err == nil:
		return p.updateSub(ctx, c, got, policy, dry)
	case !isCode(err, codes.NotFound):
		return st, classify("get subscription "+p.sub, err)
	}
	st.Detail = fmt.Sprintf("topic %s, ordered %t, ack deadline %ds, dead-letter %s after %d attempts",
		p.topic, p.cfg.ordered, ackSeconds(p.ackDeadline), p.dlqTopic, p.maxAttempts)
	if dry {
		st.Action = ActionWouldCreate
		return st, nil
	}
	_, err = c.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
		Name:                  p.sub,
		Topic:                 p.topic,
		AckDeadlineSeconds:    ackSeconds(p.ackDeadline),
		EnableMessageOrdering: p.cfg.ordered,
		DeadLetterPolicy:      policy,
	})
	if err != nil && !isCode(err, codes.AlreadyExists) {
		return st, classify("create subscription "+p.sub, err)
	}
	st.Action = ActionCreated
	return st, nil
}

func (p *plan) updateSub(ctx context.Context, c *pubsub.Client, got *pubsubpb.Subscription, policy *pubsubpb.DeadLetterPolicy, dry bool) (ProvisionStep, error) {
	st := ProvisionStep{Kind: "subscription", Name: p.sub, Action: ActionExists}
	if got.Topic != p.topic {
		return st, conflict("subscription %s exists but is attached to %q, not %s", p.sub, got.Topic, p.topic)
	}
	if p.cfg.orderedSet && got.EnableMessageOrdering != p.cfg.ordered {
		return st, conflict("subscription %s exists with message ordering %t; ordering cannot be changed (recreate it, or set ordered=%t)", p.sub, got.EnableMessageOrdering, got.EnableMessageOrdering)
	}
	upd := &pubsubpb.Subscription{Name: p.sub}
	var paths []string
	old := got.GetDeadLetterPolicy()
	if old == nil || old.DeadLetterTopic != p.dlqTopic || (p.attemptsSet && old.MaxDeliveryAttempts != p.maxAttempts) ||
		old.MaxDeliveryAttempts != 0 && old.MaxDeliveryAttempts < MinMaxDeliveryAttempts {
		upd.DeadLetterPolicy = policy
		paths = append(paths, "dead_letter_policy")
		st.Detail = fmt.Sprintf("dead-letter %s after %d attempts", p.dlqTopic, p.maxAttempts)
	}
	if p.ackDeadlineSet && got.AckDeadlineSeconds != ackSeconds(p.ackDeadline) {
		upd.AckDeadlineSeconds = ackSeconds(p.ackDeadline)
		paths = append(paths, "ack_deadline_seconds")
		st.Detail = join(st.Detail, fmt.Sprintf("ack deadline %ds", upd.AckDeadlineSeconds))
	}
	if len(paths) == 0 {
		return st, nil
	}
	if dry {
		st.Action = ActionWouldUpdate
		return st, nil
	}
	_, err := c.SubscriptionAdminClient.UpdateSubscription(ctx, &pubsubpb.UpdateSubscriptionRequest{
		Subscription: upd, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths},
	})
	if err != nil {
		return st, classify("update subscription "+p.sub, err)
	}
	st.Action = ActionUpdated
	return st, nil
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + ", " + b
}
