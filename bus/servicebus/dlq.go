package servicebus

import (
	"context"
	"errors"
	"fmt"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/payrail/payrail/bus/driver"
)

// deadLetterReceiver returns the receiver of the dead-letter sub-queue
// (<entity>/$DeadLetterQueue), creating it on first use.
func (s *subscription) deadLetterReceiver() (*azservicebus.Receiver, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, driver.ErrClosed
	}
	if s.dlqRecv == nil {
		r, err := s.newReceiver(&azservicebus.ReceiverOptions{SubQueue: azservicebus.SubQueueDeadLetter})
		if err != nil {
			return nil, err
		}
		s.dlqRecv = r
	}
	return s.dlqRecv, nil
}

// PeekDeadLetters returns up to max dead letters (all if max <= 0), oldest
// first, without locking or removing them.
func (s *subscription) PeekDeadLetters(ctx context.Context, max int) ([]*driver.DeadLetter, error) {
	rms, err := s.peekDeadLetters(ctx, max)
	if err != nil {
		return nil, err
	}
	out := make([]*driver.DeadLetter, len(rms))
	for i, rm := range rms {
		out[i] = s.deadLetterOf(rm)
	}
	return out, nil
}

func (s *subscription) peekDeadLetters(ctx context.Context, max int) ([]*azservicebus.ReceivedMessage, error) {
	r, err := s.deadLetterReceiver()
	if err != nil {
		return nil, err
	}
	var out []*azservicebus.ReceivedMessage
	from := int64(0)
	for max <= 0 || len(out) < max {
		page := peekPage
		if max > 0 {
			page = min(page, max-len(out))
		}
		rms, err := r.PeekMessages(ctx, page, &azservicebus.PeekMessagesOptions{FromSequenceNumber: &from})
		if err != nil {
			return nil, mapErr("peek the dead letters of", s.cfg.path(), err)
		}
		if len(rms) == 0 {
			break
		}
		out = append(out, rms...)
		last := rms[len(rms)-1].SequenceNumber
		if last == nil {
			break
		}
		from = *last + 1
	}
	return out, nil
}

// deadLetterOf converts a peeked dead letter.
func (s *subscription) deadLetterOf(rm *azservicebus.ReceivedMessage) *driver.DeadLetter {
	f := fieldsOf(rm)
	m := driver.Message{ID: f.id, Key: f.key, Body: rm.Body, Attributes: f.attrs}
	if rm.EnqueuedTime != nil {
		m.PublishTime = *rm.EnqueuedTime
	}
	// A peeked message's DeliveryCount, as the Go SDK reports it, is one
	// more than the deliveries the service counted. A payrail dead letter
	// records its attempt itself.
	if a, ok := rm.ApplicationProperties[PropDeadLetterAttempt]; ok {
		m.DeliveryAttempt = propInt(a)
	} else {
		m.DeliveryAttempt = f.carried + max(int(rm.DeliveryCount)-1, 1)
	}
	reason := ""
	if rm.DeadLetterReason != nil {
		reason = *rm.DeadLetterReason
	}
	if rm.DeadLetterErrorDescription != nil && *rm.DeadLetterErrorDescription != "" {
		if reason != "" {
			reason += ": "
		}
		reason += *rm.DeadLetterErrorDescription
	}
	return &driver.DeadLetter{Message: m, Reason: reason}
}

// Redrive moves up to max dead letters (all if max <= 0) back to the queue
// or topic, each with its ID, Key, Body and Attributes and no carried
// attempts, and returns how many were moved.
func (s *subscription) Redrive(ctx context.Context, max int) (int, error) {
	r, err := s.deadLetterReceiver()
	if err != nil {
		return 0, err
	}
	sender, err := s.sender()
	if err != nil {
		return 0, err
	}
	// The SDK's ReceiveMessages waits for a message: count first what there is.
	peeked, err := s.peekDeadLetters(ctx, max)
	if err != nil || len(peeked) == 0 {
		return 0, err
	}
	want := len(peeked)
	select {
	case s.dlqBusy <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-s.dlqBusy }()
	moved := 0
	for moved < want {
		rctx, cancel := context.WithTimeout(ctx, redriveReceiveWait)
		rms, err := r.ReceiveMessages(rctx, want-moved, nil)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return moved, ctx.Err()
			}
			if errors.Is(err, context.DeadlineExceeded) {
				break // the rest were taken meanwhile (or are locked by another redrive)
			}
			return moved, mapErr("receive the dead letters of", s.cfg.path(), err)
		}
		copies := make([]*azservicebus.Message, len(rms))
		for i, rm := range rms {
			seq := int64(0)
			if rm.SequenceNumber != nil {
				seq = *rm.SequenceNumber
			}
			copies[i] = s.copyOf(rm, fieldsOf(rm).id, fmt.Sprintf("redrive%d", seq), 0)
		}
		if err := sendBatches(ctx, sender, s.cfg.entity, copies); err != nil {
			// Leave them in the dead-letter queue.
			actx, acancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
			for _, rm := range rms {
				_ = r.AbandonMessage(actx, rm, nil)
			}
			acancel()
			return moved, fmt.Errorf("servicebus: redrive: %w", err)
		}
		var errs []error
		for _, rm := range rms {
			if err := r.CompleteMessage(ctx, rm, nil); err != nil {
				errs = append(errs, mapErr("complete redriven dead letter "+fieldsOf(rm).id+" (it will be redriven again) on", s.cfg.path(), err))
			}
		}
		moved += len(rms)
		if len(errs) > 0 {
			return moved, errors.Join(errs...)
		}
	}
	return moved, nil
}

// fields are the payrail fields of a received message.
type fields struct {
	id, key string
	attrs   map[string]string
	carried int
}

func fieldsOf(rm *azservicebus.ReceivedMessage) fields {
	var f fields
	for k, v := range rm.ApplicationProperties {
		switch k {
		case PropKey:
			f.key = propString(v)
		case PropID:
			f.id = propString(v)
		case PropAttempts:
			f.carried = propInt(v)
		case PropTarget, PropDeadLetterAttempt, propDeadLetterReason, propDeadLetterDescription:
		default:
			if f.attrs == nil {
				f.attrs = make(map[string]string, len(rm.ApplicationProperties))
			}
			f.attrs[k] = propString(v)
		}
	}
	if f.id == "" {
		f.id = rm.MessageID
	}
	return f
}
