package pubsub

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/driver"
)

// nativeReason is the reason reported for messages Pub/Sub dead-lettered
// itself, which carry no reason attribute.
const nativeReason = "dead-lettered by Pub/Sub's dead-letter policy: the maximum delivery attempts were reached without an ack"

// DeadLetter publishes the message to the dead-letter topic, with the
// reason and attempt as attributes, then acks it.
func (s *subscription) DeadLetter(ctx context.Context, m *driver.Message, reason string) error {
	defer s.forgetDLQCount()
	d, err := s.take(m, stateSettling)
	if err != nil {
		return err
	}
	extra := map[string]string{
		bus.AttrDeadLetterReason: truncate(reason, maxAttributeValue),
		AttrDLQAttempts:          strconv.Itoa(d.dm.DeliveryAttempt),
		AttrDLQSubscription:      s.cfg.subscription,
	}
	pm, err := encode(d.dm, false, extra)
	if err == nil {
		err = publishAll(ctx, s.publisher(&s.dlqPub, s.dlqTopic, false), []*pubsub.Message{pm}, "dead-letter to "+s.dlqTopic)
	}
	s.mu.Lock()
	if err != nil {
		d.state = stateHanded // still ours: it can be settled again
		s.mu.Unlock()
		return err
	}
	d.state = stateSettled
	s.release(d)
	s.mu.Unlock()
	_, err = d.msg.AckWithResult().Get(ctx)
	return classify("ack dead-lettered message", err)
}

// publisher returns *p, creating it for the topic on first use.
func (s *subscription) publisher(p **pubsub.Publisher, topic string, ordered bool) *pubsub.Publisher {
	s.mu.Lock()
	defer s.mu.Unlock()
	if *p == nil {
		*p = newPublisher(s.client, topic, ordered, s.cfg.batchDelay)
	}
	return *p
}

// PeekDeadLetters pulls up to max messages (all if max <= 0) from the
// dead-letter subscription and nacks them, so they stay there.
func (s *subscription) PeekDeadLetters(ctx context.Context, max int) ([]*driver.DeadLetter, error) {
	if err := s.dlqUsable(); err != nil {
		return nil, err
	}
	var out []*driver.DeadLetter
	err := s.pullDLQ(ctx, max, func(rm *pubsubpb.ReceivedMessage) { out = append(out, deadLetterOf(rm)) })
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b *driver.DeadLetter) int { return a.DeadLetteredAt.Compare(b.DeadLetteredAt) })
	return out, nil
}

func (s *subscription) dlqUsable() error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	switch {
	case closed:
		return driver.ErrClosed
	case s.dlqSub == "":
		return fmt.Errorf("pubsub: the dead-letter topic %s has no subscription to read (create it, e.g. with pubsub.Provision): %w", s.dlqTopic, driver.ErrUnsupported)
	}
	return nil
}

// pullDLQ pulls up to max messages (all if max <= 0) from the dead-letter
// subscription, calls fn for each, and nacks them all at the end.
func (s *subscription) pullDLQ(ctx context.Context, max int, fn func(*pubsubpb.ReceivedMessage)) (err error) {
	var held []string
	defer func() {
		if nerr := s.modAck(context.WithoutCancel(ctx), s.dlqSub, held, 0); nerr != nil && err == nil {
			err = nerr
		}
	}()
	for max <= 0 || len(held) < max {
		n := 1000
		if max > 0 {
			n = min(n, max-len(held))
		}
		resp, err := s.client.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{
			Subscription: s.dlqSub, MaxMessages: int32(n), ReturnImmediately: true, //nolint:staticcheck // a peek must not wait
		})
		if err != nil {
			return classify("pull from "+s.dlqSub, err)
		}
		if len(resp.ReceivedMessages) == 0 {
			return nil
		}
		for _, rm := range resp.ReceivedMessages {
			held = append(held, rm.AckId)
			fn(rm)
		}
	}
	return nil
}

// modAck sets the ack deadline of ackIDs on sub (0: nack).
func (s *subscription) modAck(ctx context.Context, sub string, ackIDs []string, seconds int32) error {
	for len(ackIDs) > 0 {
		n := min(len(ackIDs), 1000)
		err := s.client.SubscriptionAdminClient.ModifyAckDeadline(ctx, &pubsubpb.ModifyAckDeadlineRequest{
			Subscription: sub, AckIds: ackIDs[:n], AckDeadlineSeconds: seconds,
		})
		if err != nil {
			return classify("modify ack deadline on "+sub, err)
		}
		ackIDs = ackIDs[n:]
	}
	return nil
}

func (s *subscription) ack(ctx context.Context, sub string, ackIDs []string) error {
	for len(ackIDs) > 0 {
		n := min(len(ackIDs), 1000)
		if err := s.client.SubscriptionAdminClient.Acknowledge(ctx, &pubsubpb.AcknowledgeRequest{Subscription: sub, AckIds: ackIDs[:n]}); err != nil {
			return classify("acknowledge on "+sub, err)
		}
		ackIDs = ackIDs[n:]
	}
	return nil
}

// deadLetterOf decodes a message pulled from the dead-letter subscription.
func deadLetterOf(rm *pubsubpb.ReceivedMessage) *driver.DeadLetter {
	pm := rm.GetMessage()
	m := &pubsub.Message{ID: pm.GetMessageId(), Data: pm.GetData(), Attributes: pm.GetAttributes(), OrderingKey: pm.GetOrderingKey()}
	if pm.GetPublishTime() != nil {
		m.PublishTime = pm.GetPublishTime().AsTime()
	}
	dec := decode(m)
	reason := dec.driver[bus.AttrDeadLetterReason]
	if reason == "" {
		reason = nativeReason
	}
	attempt := 0
	for _, k := range []string{AttrDLQAttempts, attrNativeDLQDeliveryCount} {
		if n, err := strconv.Atoi(dec.driver[k]); err == nil {
			attempt = n
			break
		}
	}
	dec.dm.DeliveryAttempt = attempt
	return &driver.DeadLetter{Message: dec.dm, Reason: reason, DeadLetteredAt: m.PublishTime}
}

// Redrive republishes up to max dead letters (all if max <= 0) to the
// topic, for this subscription only, and acks them on the dead-letter
// subscription. A crash between the two redrives them again.
func (s *subscription) Redrive(ctx context.Context, max int) (int, error) {
	defer s.forgetDLQCount()
	if err := s.dlqUsable(); err != nil {
		return 0, err
	}
	pub := s.publisher(&s.topicPub, s.topicName, true)
	moved := 0
	for max <= 0 || moved < max {
		n := 100
		if max > 0 {
			n = min(n, max-moved)
		}
		resp, err := s.client.SubscriptionAdminClient.Pull(ctx, &pubsubpb.PullRequest{
			Subscription: s.dlqSub, MaxMessages: int32(n), ReturnImmediately: true, //nolint:staticcheck // an empty queue ends the redrive
		})
		if err != nil {
			return moved, classify("pull from "+s.dlqSub, err)
		}
		if len(resp.ReceivedMessages) == 0 {
			break
		}
		rms := resp.ReceivedMessages
		results := make([]*pubsub.PublishResult, len(rms))
		keys := make([]string, len(rms))
		for i, rm := range rms {
			dm := deadLetterOf(rm).Message
			pm, err := encode(&dm, true, map[string]string{AttrRedrive: s.cfg.subscription})
			if err != nil { // cannot happen: decode strips reserved names
				return moved, err
			}
			keys[i] = pm.OrderingKey
			results[i] = pub.Publish(ctx, pm)
		}
		var done, failed []string
		var first error
		for i, r := range results {
			if _, err := r.Get(ctx); err != nil {
				failed = append(failed, rms[i].AckId)
				if keys[i] != "" {
					pub.ResumePublish(keys[i])
				}
				first = cmpErr(first, err)
				continue
			}
			done = append(done, rms[i].AckId)
		}
		bg := context.WithoutCancel(ctx)
		if err := s.ack(bg, s.dlqSub, done); err != nil {
			_ = s.modAck(bg, s.dlqSub, failed, 0)
			return moved, fmt.Errorf("pubsub: %d redriven messages stay in the dead-letter queue and will be redriven again: %w", len(done), err)
		}
		moved += len(done)
		if first != nil {
			_ = s.modAck(bg, s.dlqSub, failed, 0)
			return moved, classify(fmt.Sprintf("redrive to %s: %d messages failed", s.topicName, len(failed)), first)
		}
	}
	return moved, nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// forgetDLQCount drops the cached dead-letter count after this handle
// changed the dead-letter queue, so the next Stats counts again.
func (s *subscription) forgetDLQCount() {
	s.dlqMu.Lock()
	s.dlqAt = time.Time{}
	s.dlqMu.Unlock()
}
