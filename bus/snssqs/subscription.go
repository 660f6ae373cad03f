package snssqs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/payrail/payrail/bus/driver"
)

const (
	// settleSenders is how many delete and visibility requests a
	// subscription has in flight at most, each.
	settleSenders = 4
	// peekVisibility hides the dead letters being inspected, briefly.
	peekVisibility = 5
	// handBackTimeout bounds making an abandoned poll's messages visible.
	handBackTimeout = 10 * time.Second
)

type subscription struct {
	sqs        *sqs.Client
	queueURL   string
	queueARN   string
	dlqURL     string
	fifo       bool
	unwrap     bool
	wait       int32 // seconds; 0: the queue's
	visibility int32 // seconds; 0: the queue's
	caps       driver.Capabilities
	maxReceive int // the RedrivePolicy's maxReceiveCount, 0 if none

	deleter *batcher[string]     // receipt handles to delete
	vis     *batcher[visibility] // visibility changes

	pollCtx    context.Context // cancelled by Close: aborts long polls
	cancelPoll context.CancelFunc
	mu         sync.Mutex
	closed     bool
	polls      sync.WaitGroup
}

type visibility struct {
	receipt string
	seconds int32
}

// ackID is a delivery's handle.
type ackID struct {
	receipt string
	sqsID   string
	group   string // MessageGroupId, FIFO only
	count   int    // ApproximateReceiveCount
}

var (
	_ driver.Subscription    = (*subscription)(nil)
	_ driver.Extender        = (*subscription)(nil)
	_ driver.DeadLetterQueue = (*subscription)(nil)
	_ driver.Stater          = (*subscription)(nil)
	_ driver.Pinger          = (*subscription)(nil)
)

func openSubscription(ctx context.Context, cfg aws.Config, p *params) (*subscription, error) {
	s := &subscription{
		sqs:      sqs.NewFromConfig(cfg),
		queueURL: p.queueURL,
		fifo:     p.fifo,
		unwrap:   !p.raw,
		wait:     int32(p.wait / time.Second),
		dlqURL:   p.dlqURL,
	}
	attrs, err := queueAttrs(ctx, s.sqs, s.queueURL, sqstypes.QueueAttributeNameQueueArn, sqstypes.QueueAttributeNameFifoQueue,
		sqstypes.QueueAttributeNameVisibilityTimeout, sqstypes.QueueAttributeNameRedrivePolicy)
	if err != nil {
		return nil, err
	}
	s.queueARN = attrs[string(sqstypes.QueueAttributeNameQueueArn)]
	if fifo := attrs[string(sqstypes.QueueAttributeNameFifoQueue)] == "true"; fifo != s.fifo {
		return nil, invalidURL("fifo=%t, but the queue's FifoQueue attribute is %t", s.fifo, fifo)
	}
	deadline := p.visibility
	if deadline == 0 {
		n, err := strconv.Atoi(attrs[string(sqstypes.QueueAttributeNameVisibilityTimeout)])
		if err != nil {
			return nil, fmt.Errorf("snssqs: queue %s: unreadable VisibilityTimeout %q", s.queueURL, attrs[string(sqstypes.QueueAttributeNameVisibilityTimeout)])
		}
		deadline = time.Duration(n) * time.Second
	} else {
		s.visibility = int32(deadline / time.Second)
	}
	if rp := attrs[string(sqstypes.QueueAttributeNameRedrivePolicy)]; rp != "" {
		arn, n, err := parseRedrivePolicy(rp)
		if err != nil {
			return nil, fmt.Errorf("snssqs: queue %s: %w", s.queueURL, err)
		}
		s.maxReceive = n
		if s.dlqURL == "" {
			if s.dlqURL, err = queueURLForARN(ctx, s.sqs, arn); err != nil {
				return nil, fmt.Errorf("snssqs: the dead-letter queue of %s: %w", s.queueURL, err)
			}
		}
	}
	if s.dlqURL == "" {
		return nil, fmt.Errorf("%w: %s", ErrNoDeadLetterQueue, s.queueURL)
	}
	dattrs, err := queueAttrs(ctx, s.sqs, s.dlqURL, sqstypes.QueueAttributeNameFifoQueue)
	if err != nil {
		return nil, fmt.Errorf("snssqs: the dead-letter queue of %s: %w", s.queueURL, err)
	}
	if (dattrs[string(sqstypes.QueueAttributeNameFifoQueue)] == "true") != s.fifo {
		return nil, fmt.Errorf("snssqs: the dead-letter queue %s must be FIFO exactly when %s is", s.dlqURL, s.queueURL)
	}
	maxAttempts := s.maxReceive
	if p.maxAttempt > 0 {
		if s.maxReceive > 0 && p.maxAttempt > s.maxReceive {
			return nil, invalidURL("max_attempts=%d exceeds the queue's maxReceiveCount %d: SQS would dead-letter messages before their last attempt", p.maxAttempt, s.maxReceive)
		}
		maxAttempts = p.maxAttempt
	}
	s.caps = driver.Capabilities{
		Ordering:        s.fifo,
		FanOut:          true,
		NackDelay:       true,
		Extend:          true,
		DeadLetterQueue: true,
		Stats:           true,
		AckDeadline:     deadline,
		MaxAttempts:     maxAttempts,
	}
	s.pollCtx, s.cancelPoll = context.WithCancel(context.Background())
	s.deleter = newBatcher(1, settleSenders, 0, requestTimeout, s.deleteBatch)
	s.vis = newBatcher(1, settleSenders, 0, requestTimeout, s.visibilityBatch)
	return s, nil
}

// Capabilities reports what the subscription supports.
func (s *subscription) Capabilities() driver.Capabilities { return s.caps }

type pollResult struct {
	out *sqs.ReceiveMessageOutput
	err error
}

func (s *subscription) receiveInput(queueURL string, n, wait, visibility int32) *sqs.ReceiveMessageInput {
	return &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(queueURL),
		MaxNumberOfMessages:         n,
		WaitTimeSeconds:             wait,
		VisibilityTimeout:           visibility,
		MessageAttributeNames:       []string{"All"},
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
	}
}

// ReceiveBatch long-polls for up to limit (at most 10) messages.
func (s *subscription) ReceiveBatch(ctx context.Context, limit int) ([]*driver.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, driver.ErrClosed
	}
	s.polls.Add(1)
	s.mu.Unlock()
	in := s.receiveInput(s.queueURL, int32(min(max(limit, 1), maxBatch)), s.wait, s.visibility)
	res := make(chan pollResult)
	abandoned := make(chan struct{})
	go func() {
		defer s.polls.Done()
		out, err := s.sqs.ReceiveMessage(s.pollCtx, in)
		select {
		case res <- pollResult{out, err}:
		case <-abandoned:
			// The caller gave up while the poll was in flight: rather than
			// leave what it brings invisible until the visibility timeout,
			// hand it back at once.
			if err == nil {
				s.handBack(s.queueURL, out.Messages)
			}
		}
	}()
	select {
	case r := <-res:
		if r.err != nil {
			if s.pollCtx.Err() != nil {
				return nil, driver.ErrClosed
			}
			return nil, classify("receive from "+s.queueURL, r.err)
		}
		out := make([]*driver.Message, 0, len(r.out.Messages))
		for _, sm := range r.out.Messages {
			out = append(out, s.toDriver(sm))
		}
		return out, nil
	case <-ctx.Done():
		// The poll is left to finish (Close aborts it): a long poll that
		// SQS already answered with messages would otherwise leave them
		// invisible until their visibility timeout.
		close(abandoned)
		return nil, ctx.Err()
	}
}

func (s *subscription) toDriver(sm sqstypes.Message) *driver.Message {
	d := decode(sm, s.unwrap)
	m := d.msg
	m.AckID = s.ackIDOf(sm)
	return &m
}

func (s *subscription) ackIDOf(sm sqstypes.Message) *ackID {
	a := &ackID{receipt: aws.ToString(sm.ReceiptHandle), sqsID: aws.ToString(sm.MessageId), group: sm.Attributes[string(sqstypes.MessageSystemAttributeNameMessageGroupId)], count: 1}
	if n, err := strconv.Atoi(sm.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)]); err == nil {
		a.count = n
	}
	return a
}

// handBack makes received messages visible again at once.
func (s *subscription) handBack(queueURL string, ms []sqstypes.Message) {
	if len(ms) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), handBackTimeout)
	defer cancel()
	for len(ms) > 0 {
		n := min(len(ms), maxBatch)
		in := &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(queueURL)}
		for i, sm := range ms[:n] {
			in.Entries = append(in.Entries, sqstypes.ChangeMessageVisibilityBatchRequestEntry{
				Id: aws.String(strconv.Itoa(i)), ReceiptHandle: sm.ReceiptHandle, VisibilityTimeout: 0,
			})
		}
		_, _ = s.sqs.ChangeMessageVisibilityBatch(ctx, in) // best effort: they reappear after their visibility timeout anyway
		ms = ms[n:]
	}
}

func ackOf(m *driver.Message) (*ackID, error) {
	a, ok := m.AckID.(*ackID)
	if !ok || a == nil {
		return nil, errors.New("snssqs: message was not received from this driver")
	}
	return a, nil
}

// Ack deletes the message (batched with concurrent acks).
func (s *subscription) Ack(ctx context.Context, m *driver.Message) error {
	a, err := ackOf(m)
	if err != nil {
		return err
	}
	return s.deleter.do(ctx, a.receipt, 0, 0)
}

// Nack makes the message visible again after delay (rounded up to whole
// seconds).
func (s *subscription) Nack(ctx context.Context, m *driver.Message, delay time.Duration) error {
	a, err := ackOf(m)
	if err != nil {
		return err
	}
	return s.vis.do(ctx, visibility{a.receipt, seconds(delay)}, 0, 0)
}

// Extend keeps the message invisible for d from now.
func (s *subscription) Extend(ctx context.Context, m *driver.Message, d time.Duration) error {
	a, err := ackOf(m)
	if err != nil {
		return err
	}
	return s.vis.do(ctx, visibility{a.receipt, max(seconds(d), 1)}, 0, 0)
}

func (s *subscription) deleteBatch(ctx context.Context, batch []*item[string]) {
	in := &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(s.queueURL)}
	for i, it := range batch {
		in.Entries = append(in.Entries, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(it.v)})
	}
	out, err := s.sqs.DeleteMessageBatch(ctx, in)
	if err != nil {
		err = classify("delete from "+s.queueURL, err)
		for _, it := range batch {
			it.err = err
		}
		return
	}
	for _, f := range out.Failed {
		if i, err := strconv.Atoi(aws.ToString(f.Id)); err == nil && i < len(batch) {
			batch[i].err = fmt.Errorf("snssqs: delete: %s: %s", aws.ToString(f.Code), aws.ToString(f.Message))
		}
	}
}

func (s *subscription) visibilityBatch(ctx context.Context, batch []*item[visibility]) {
	in := &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(s.queueURL)}
	for i, it := range batch {
		in.Entries = append(in.Entries, sqstypes.ChangeMessageVisibilityBatchRequestEntry{
			Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(it.v.receipt), VisibilityTimeout: it.v.seconds,
		})
	}
	out, err := s.sqs.ChangeMessageVisibilityBatch(ctx, in)
	if err != nil {
		err = classify("change visibility in "+s.queueURL, err)
		for _, it := range batch {
			it.err = err
		}
		return
	}
	for _, f := range out.Failed {
		if i, err := strconv.Atoi(aws.ToString(f.Id)); err == nil && i < len(batch) {
			batch[i].err = fmt.Errorf("snssqs: change visibility: %s: %s", aws.ToString(f.Code), aws.ToString(f.Message))
		}
	}
}

// DeadLetter sends the message to the dead-letter queue with the reason,
// then deletes it from the queue.
func (s *subscription) DeadLetter(ctx context.Context, m *driver.Message, reason string) error {
	a, err := ackOf(m)
	if err != nil {
		return err
	}
	dl := &deadInfo{At: time.Now().UTC(), Attempt: m.DeliveryAttempt, Source: s.queueARN}
	e, err := encode(m, dl, reason)
	if err != nil {
		return err
	}
	if e.size > MaxSQSMessageBytes {
		return fmt.Errorf("%w: dead letter of message %q is %d bytes encoded", ErrTooLarge, m.ID, e.size)
	}
	in := &sqs.SendMessageInput{QueueUrl: aws.String(s.dlqURL), MessageBody: aws.String(e.body), MessageAttributes: e.sqsAttrs()}
	if s.fifo {
		group := a.group
		if group == "" {
			group = groupFor(m)
		}
		// Unique per delivery: a retried DeadLetter is deduplicated, a
		// later dead-lettering of the same (redriven) message is not.
		in.MessageGroupId, in.MessageDeduplicationId = aws.String(group), aws.String(dedupFor("dlq", a.sqsID, strconv.Itoa(a.count)))
	}
	if _, err := s.sqs.SendMessage(ctx, in); err != nil {
		return classify("send to the dead-letter queue "+s.dlqURL, err)
	}
	return s.deleter.do(ctx, a.receipt, 0, 0)
}

// deadLetter is a received dead letter with its SQS handle.
type deadLetter struct {
	dl *driver.DeadLetter
	sm sqstypes.Message
}

func (s *subscription) toDeadLetter(sm sqstypes.Message) deadLetter {
	d := decode(sm, s.unwrap)
	dl := &driver.DeadLetter{Message: d.msg, Reason: d.reason}
	if d.dead != nil {
		dl.DeadLetteredAt = d.dead.At
		if d.dead.Attempt > 0 {
			dl.Message.DeliveryAttempt = d.dead.Attempt
		}
	} else {
		// Moved by SQS's redrive policy.
		dl.Reason = "moved by SQS after maxReceiveCount receives"
		if s.maxReceive > 0 {
			dl.Reason = fmt.Sprintf("moved by SQS after maxReceiveCount (%d) receives", s.maxReceive)
			dl.Message.DeliveryAttempt = s.maxReceive
		}
	}
	dl.Message.AckID = nil
	return deadLetter{dl: dl, sm: sm}
}

// dlqCount reads how many messages the dead-letter queue holds.
func (s *subscription) dlqCount(ctx context.Context) (visible, total int64, err error) {
	attrs, err := queueAttrs(ctx, s.sqs, s.dlqURL, sqstypes.QueueAttributeNameApproximateNumberOfMessages,
		sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible, sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed)
	if err != nil {
		return 0, 0, err
	}
	visible = atoi64(attrs[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)])
	total = visible + atoi64(attrs[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)]) +
		atoi64(attrs[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed)])
	return visible, total, nil
}

func atoi64(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// receiveDead receives up to want dead letters, hidden for visibility
// seconds, stopping early when SQS has no more to give.
func (s *subscription) receiveDead(ctx context.Context, want int, visibility int32) ([]sqstypes.Message, error) {
	var got []sqstypes.Message
	seen := map[string]bool{}
	for len(got) < want {
		out, err := s.sqs.ReceiveMessage(ctx, s.receiveInput(s.dlqURL, int32(min(want-len(got), maxBatch)), 1, visibility))
		if err != nil {
			s.handBack(s.dlqURL, got)
			return nil, classify("receive from the dead-letter queue "+s.dlqURL, err)
		}
		if len(out.Messages) == 0 {
			break
		}
		for _, sm := range out.Messages {
			if id := aws.ToString(sm.MessageId); !seen[id] {
				seen[id] = true
				got = append(got, sm)
			}
		}
	}
	return got, nil
}

// PeekDeadLetters returns up to max dead letters (all if max <= 0) without
// removing them: they are received with a short visibility timeout and
// made visible again.
func (s *subscription) PeekDeadLetters(ctx context.Context, limit int) ([]*driver.DeadLetter, error) {
	visible, _, err := s.dlqCount(ctx)
	if err != nil {
		return nil, err
	}
	want := int(visible)
	if limit > 0 {
		want = min(want, limit)
	}
	if want == 0 {
		return nil, nil
	}
	sms, err := s.receiveDead(ctx, want, peekVisibility)
	if err != nil {
		return nil, err
	}
	defer s.handBack(s.dlqURL, sms)
	out := make([]*driver.DeadLetter, len(sms))
	for i, sm := range sms {
		out[i] = s.toDeadLetter(sm).dl
	}
	return out, nil
}

// Redrive moves up to max dead letters (all those present when it starts,
// if max <= 0) back to the subscription's queue.
func (s *subscription) Redrive(ctx context.Context, limit int) (int, error) {
	visible, _, err := s.dlqCount(ctx)
	if err != nil {
		return 0, err
	}
	want := int(visible)
	if limit > 0 {
		want = min(want, limit)
	}
	moved := 0
	for moved < want {
		sms, err := s.receiveDead(ctx, min(want-moved, maxBatch), int32(requestTimeout/time.Second))
		if err != nil {
			return moved, err
		}
		if len(sms) == 0 {
			break
		}
		n, err := s.redriveBatch(ctx, sms)
		moved += n
		if err != nil {
			return moved, err
		}
	}
	return moved, nil
}

// redriveBatch sends up to 10 dead letters to the queue and deletes those
// sent from the dead-letter queue.
func (s *subscription) redriveBatch(ctx context.Context, sms []sqstypes.Message) (int, error) {
	in := &sqs.SendMessageBatchInput{QueueUrl: aws.String(s.queueURL)}
	for i, sm := range sms {
		d := decode(sm, s.unwrap)
		e, err := encode(&d.msg, nil, "")
		if err != nil {
			s.handBack(s.dlqURL, sms)
			return 0, err
		}
		entry := sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(e.body), MessageAttributes: e.sqsAttrs()}
		if s.fifo {
			group := sm.Attributes[string(sqstypes.MessageSystemAttributeNameMessageGroupId)]
			if group == "" {
				group = groupFor(&d.msg)
			}
			// Not the original deduplication ID: within SQS's five-minute
			// window the queue would drop the message as a duplicate.
			entry.MessageGroupId, entry.MessageDeduplicationId = aws.String(group), aws.String(dedupFor("redrive", aws.ToString(sm.MessageId)))
		}
		in.Entries = append(in.Entries, entry)
	}
	out, err := s.sqs.SendMessageBatch(ctx, in)
	if err != nil {
		s.handBack(s.dlqURL, sms)
		return 0, classify("redrive to "+s.queueURL, err)
	}
	var firstErr error
	var sent, unsent []sqstypes.Message
	failed := map[string]bool{}
	for _, f := range out.Failed {
		failed[aws.ToString(f.Id)] = true
		if firstErr == nil {
			firstErr = fmt.Errorf("snssqs: redrive: %s: %s", aws.ToString(f.Code), aws.ToString(f.Message))
		}
	}
	for i, sm := range sms {
		if failed[strconv.Itoa(i)] {
			unsent = append(unsent, sm)
		} else {
			sent = append(sent, sm)
		}
	}
	s.handBack(s.dlqURL, unsent)
	if len(sent) > 0 {
		del := &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(s.dlqURL)}
		for i, sm := range sent {
			del.Entries = append(del.Entries, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: sm.ReceiptHandle})
		}
		dout, err := s.sqs.DeleteMessageBatch(ctx, del)
		if err != nil {
			return len(sent), classify("delete redriven messages from "+s.dlqURL, err)
		}
		if len(dout.Failed) > 0 && firstErr == nil {
			firstErr = fmt.Errorf("snssqs: deleting %d redriven messages from the dead-letter queue: %s (they will be redriven again)", len(dout.Failed), aws.ToString(dout.Failed[0].Message))
		}
	}
	return len(sent), firstErr
}

// Stats reads the queues' approximate counts.
func (s *subscription) Stats(ctx context.Context) (driver.Stats, error) {
	attrs, err := queueAttrs(ctx, s.sqs, s.queueURL, sqstypes.QueueAttributeNameApproximateNumberOfMessages,
		sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible, sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed)
	if err != nil {
		return driver.Stats{}, err
	}
	_, dead, err := s.dlqCount(ctx)
	if err != nil {
		return driver.Stats{}, err
	}
	return driver.Stats{
		Backlog: atoi64(attrs[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)]) +
			atoi64(attrs[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed)]),
		InFlight:    atoi64(attrs[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)]),
		DeadLetters: dead,
		OldestAge:   -1, // only CloudWatch's ApproximateAgeOfOldestMessage reports it
	}, nil
}

// Ping checks that the queue exists and is reachable.
func (s *subscription) Ping(ctx context.Context) error {
	_, err := queueAttrs(ctx, s.sqs, s.queueURL, sqstypes.QueueAttributeNameQueueArn)
	return err
}

// Close aborts the long polls in flight and stops the batchers, after the
// settlements already queued were sent.
func (s *subscription) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return s.Shutdown(ctx)
}

var _ driver.Shutdowner = (*subscription)(nil)

// Shutdown lets the long polls in flight finish until ctx is done (a poll
// its receiver gave up on hands back, at once, the messages it brings, which
// would otherwise stay invisible for their visibility timeout), then aborts
// those left and stops the batchers, after the settlements already queued
// were sent. It waits at most the poll's wait time (the wait URL parameter
// or the queue's ReceiveMessageWaitTimeSeconds).
func (s *subscription) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return driver.ErrClosed
	}
	s.closed = true
	s.mu.Unlock()
	polled := make(chan struct{})
	go func() {
		s.polls.Wait()
		close(polled)
	}()
	select {
	case <-polled:
	case <-ctx.Done():
		s.cancelPoll()
		<-polled
	}
	s.cancelPoll()
	s.deleter.close()
	s.vis.close()
	return nil
}

// As converts to *sqs.Client.
func (s *subscription) As(i any) bool {
	p, ok := i.(**sqs.Client)
	if ok {
		*p = s.sqs
	}
	return ok
}
