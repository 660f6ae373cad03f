package pubsub

import (
	"context"
	"errors"
	"fmt"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/grpc/codes"

	"github.com/payrail/payrail/bus/driver"
)

type topic struct {
	client  *pubsub.Client
	pub     *pubsub.Publisher
	name    string // projects/<project>/topics/<topic>
	ordered bool
}

var (
	_ driver.Topic  = (*topic)(nil)
	_ driver.Pinger = (*topic)(nil)
)

func openTopic(ctx context.Context, cfg *config) (*topic, error) {
	client, err := newClient(ctx, cfg.project)
	if err != nil {
		return nil, err
	}
	t := &topic{client: client, name: cfg.topicName(), ordered: cfg.ordered}
	if err := t.Ping(ctx); err != nil {
		_ = client.Close()
		return nil, err
	}
	t.pub = newPublisher(client, t.name, cfg.ordered, cfg.batchDelay)
	return t, nil
}

// newPublisher returns a publisher for the topic with the driver's settings.
func newPublisher(c *pubsub.Client, name string, ordered bool, delay time.Duration) *pubsub.Publisher {
	p := c.Publisher(name)
	p.EnableMessageOrdering = ordered
	p.PublishSettings.DelayThreshold = delay
	return p
}

// SendBatch publishes the messages and waits until Pub/Sub accepted all of
// them. Messages are validated before any is published.
func (t *topic) SendBatch(ctx context.Context, ms []*driver.Message) error {
	pms := make([]*pubsub.Message, len(ms))
	for i, m := range ms {
		pm, err := encode(m, t.ordered, nil)
		if err != nil {
			return err
		}
		pms[i] = pm
	}
	return publishAll(ctx, t.pub, pms, "publish to "+t.name)
}

// publishAll publishes pms and waits for every result. An ordering key
// whose publish failed is resumed once its results are in, so that the
// caller's retry is accepted.
func publishAll(ctx context.Context, p *pubsub.Publisher, pms []*pubsub.Message, op string) error {
	rs := make([]*pubsub.PublishResult, len(pms))
	for i, pm := range pms {
		rs[i] = p.Publish(ctx, pm)
	}
	var first error
	failed := 0
	paused := map[string]bool{}
	for i, r := range rs {
		_, err := r.Get(ctx)
		if err == nil {
			continue
		}
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// The remaining results arrive later: resume their keys then.
			go resumeFailed(p, pms[i:], rs[i:])
			return classify(op, err)
		}
		failed++
		if first == nil {
			first = err
		}
		if k := pms[i].OrderingKey; k != "" {
			paused[k] = true
		}
	}
	for k := range paused {
		p.ResumePublish(k)
	}
	if first != nil {
		return classify(fmt.Sprintf("%s: %d of %d messages failed", op, failed, len(pms)), first)
	}
	return nil
}

func resumeFailed(p *pubsub.Publisher, pms []*pubsub.Message, rs []*pubsub.PublishResult) {
	for i, r := range rs {
		if _, err := r.Get(context.Background()); err != nil && pms[i].OrderingKey != "" {
			p.ResumePublish(pms[i].OrderingKey)
		}
	}
}

// Ping checks that the topic exists. Credentials that may publish but not
// read the topic's configuration (roles/pubsub.publisher) pass.
func (t *topic) Ping(ctx context.Context) error {
	_, err := t.client.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: t.name})
	switch {
	case err == nil, isCode(err, codes.PermissionDenied):
		return nil
	case isCode(err, codes.NotFound):
		return fmt.Errorf("pubsub: topic %s does not exist (create it, e.g. with pubsub.Provision or opsctl bus provision): %w", t.name, driver.ErrNotFound)
	}
	return classify("get topic "+t.name, err)
}

// Close flushes pending publishes and closes the client.
func (t *topic) Close() error {
	t.pub.Stop()
	if err := t.client.Close(); err != nil {
		return fmt.Errorf("pubsub: close: %w", err)
	}
	return nil
}

// As converts to *pubsub.Client or *pubsub.Publisher.
func (t *topic) As(i any) bool {
	switch p := i.(type) {
	case **pubsub.Client:
		*p = t.client
	case **pubsub.Publisher:
		*p = t.pub
	default:
		return false
	}
	return true
}
