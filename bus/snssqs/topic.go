package snssqs

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/payrail/payrail/bus/driver"
)

const (
	// publishSenders is how many publish requests a topic has in flight at
	// most (on FIFO topics: the number of group shards, each sending one
	// request at a time).
	publishSenders = 8
	// requestTimeout bounds each batch request.
	requestTimeout = 30 * time.Second
	// entryRetries is how often an entry the service failed through no
	// fault of the sender is retried.
	entryRetries = 2
)

type topic struct {
	sns      *sns.Client
	sqs      *sqs.Client
	topicARN string // publish through SNS, or
	queueURL string // straight to the queue
	fifo     bool
	maxBytes int
	pub      *batcher[*pubEntry]
}

// pubEntry is one message to publish.
type pubEntry struct {
	e            encoded
	group, dedup string // FIFO only
}

var _ driver.Topic = (*topic)(nil)

func openTopic(ctx context.Context, cfg aws.Config, p *params) (*topic, error) {
	t := &topic{sns: sns.NewFromConfig(cfg), sqs: sqs.NewFromConfig(cfg), topicARN: p.topicARN, queueURL: p.queueURL, fifo: p.fifo}
	var fifoAttr string
	if t.topicARN != "" {
		out, err := t.sns.GetTopicAttributes(ctx, &sns.GetTopicAttributesInput{TopicArn: aws.String(t.topicARN)})
		if err != nil {
			return nil, classify("topic "+t.topicARN, err)
		}
		fifoAttr = out.Attributes["FifoTopic"]
		t.maxBytes = MaxSNSMessageBytes
	} else {
		attrs, err := queueAttrs(ctx, t.sqs, t.queueURL, sqstypes.QueueAttributeNameFifoQueue)
		if err != nil {
			return nil, err
		}
		fifoAttr = attrs[string(sqstypes.QueueAttributeNameFifoQueue)]
		t.maxBytes = MaxSQSMessageBytes
	}
	if (fifoAttr == "true") != t.fifo {
		return nil, invalidURL("fifo=%t, but the entity's FIFO attribute is %q", t.fifo, fifoAttr)
	}
	shards, senders := 1, publishSenders
	if t.fifo {
		shards, senders = publishSenders, 1
	}
	t.pub = newBatcher(shards, senders, t.maxBytes, requestTimeout, t.sendBatch)
	return t, nil
}

// SendBatch encodes every message, refusing the whole batch if one cannot
// be sent, and publishes them through the batcher.
func (t *topic) SendBatch(ctx context.Context, ms []*driver.Message) error {
	entries := make([]*pubEntry, len(ms))
	sizes := make([]int, len(ms))
	for i, m := range ms {
		e, err := encode(m, nil, "")
		if err != nil {
			return fmt.Errorf("%w (message %q; nothing of the batch was published)", err, m.ID)
		}
		if e.size > t.maxBytes {
			return fmt.Errorf("%w: message %q is %d bytes encoded, the limit is %d (nothing of the batch was published)", ErrTooLarge, m.ID, e.size, t.maxBytes)
		}
		pe := &pubEntry{e: e}
		if t.fifo {
			pe.group, pe.dedup = groupFor(m), dedupFor(m.ID)
		}
		entries[i], sizes[i] = pe, e.size
	}
	shard := func(int) int { return 0 }
	if t.fifo {
		shard = func(i int) int {
			h := fnv.New32a()
			_, _ = h.Write([]byte(entries[i].group))
			return int(h.Sum32() & 0x7fffffff)
		}
	}
	errs, err := t.pub.enqueue(ctx, entries, sizes, shard)
	if err != nil {
		return err
	}
	var first error
	failed := 0
	for _, e := range errs {
		if e != nil {
			failed++
			if first == nil {
				first = e
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("snssqs: %d of %d messages not published (the others were): %w", failed, len(ms), first)
	}
	return nil
}

// sendBatch publishes one batch request, retrying the entries the service
// failed through no fault of the sender.
func (t *topic) sendBatch(ctx context.Context, batch []*item[*pubEntry]) {
	pending := batch
	for attempt := 0; len(pending) > 0; attempt++ {
		var failed map[string]entryError
		var err error
		if t.topicARN != "" {
			failed, err = t.publishSNS(ctx, pending)
		} else {
			failed, err = t.publishSQS(ctx, pending)
		}
		if err != nil {
			for _, it := range pending {
				it.err = err
			}
			return
		}
		var retry []*item[*pubEntry]
		for i, it := range pending {
			fe, ok := failed[strconv.Itoa(i)]
			if !ok {
				it.err = nil
				continue
			}
			it.err = fmt.Errorf("snssqs: publish: %s: %s", fe.code, fe.message)
			if !fe.senderFault && attempt < entryRetries {
				retry = append(retry, it)
			}
		}
		pending = retry
		if len(pending) > 0 {
			select {
			case <-time.After(time.Duration(attempt+1) * 50 * time.Millisecond):
			case <-ctx.Done():
				return
			}
		}
	}
}

type entryError struct {
	code, message string
	senderFault   bool
}

func (t *topic) publishSNS(ctx context.Context, batch []*item[*pubEntry]) (map[string]entryError, error) {
	in := &sns.PublishBatchInput{TopicArn: aws.String(t.topicARN), PublishBatchRequestEntries: make([]snstypes.PublishBatchRequestEntry, len(batch))}
	for i, it := range batch {
		attrs := make(map[string]snstypes.MessageAttributeValue, len(it.v.e.attrs))
		for k, v := range it.v.e.attrs {
			attrs[k] = snstypes.MessageAttributeValue{DataType: aws.String(stringType), StringValue: aws.String(v)}
		}
		e := snstypes.PublishBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), Message: aws.String(it.v.e.body), MessageAttributes: attrs}
		if t.fifo {
			e.MessageGroupId, e.MessageDeduplicationId = aws.String(it.v.group), aws.String(it.v.dedup)
		}
		in.PublishBatchRequestEntries[i] = e
	}
	out, err := t.sns.PublishBatch(ctx, in)
	if err != nil {
		return nil, classify("publish to "+t.topicARN, err)
	}
	failed := make(map[string]entryError, len(out.Failed))
	for _, f := range out.Failed {
		failed[aws.ToString(f.Id)] = entryError{aws.ToString(f.Code), aws.ToString(f.Message), f.SenderFault}
	}
	return failed, nil
}

func (t *topic) publishSQS(ctx context.Context, batch []*item[*pubEntry]) (map[string]entryError, error) {
	in := &sqs.SendMessageBatchInput{QueueUrl: aws.String(t.queueURL), Entries: make([]sqstypes.SendMessageBatchRequestEntry, len(batch))}
	for i, it := range batch {
		e := sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(it.v.e.body), MessageAttributes: it.v.e.sqsAttrs()}
		if t.fifo {
			e.MessageGroupId, e.MessageDeduplicationId = aws.String(it.v.group), aws.String(it.v.dedup)
		}
		in.Entries[i] = e
	}
	out, err := t.sqs.SendMessageBatch(ctx, in)
	if err != nil {
		return nil, classify("send to "+t.queueURL, err)
	}
	failed := make(map[string]entryError, len(out.Failed))
	for _, f := range out.Failed {
		failed[aws.ToString(f.Id)] = entryError{aws.ToString(f.Code), aws.ToString(f.Message), f.SenderFault}
	}
	return failed, nil
}

// Ping checks that the topic or queue exists and is reachable.
func (t *topic) Ping(ctx context.Context) error {
	if t.topicARN != "" {
		_, err := t.sns.GetTopicAttributes(ctx, &sns.GetTopicAttributesInput{TopicArn: aws.String(t.topicARN)})
		return classify("topic "+t.topicARN, err)
	}
	_, err := queueAttrs(ctx, t.sqs, t.queueURL, sqstypes.QueueAttributeNameQueueArn)
	return err
}

// Close stops the publish batcher.
func (t *topic) Close() error {
	t.pub.close()
	return nil
}

// As converts to *sns.Client or *sqs.Client.
func (t *topic) As(i any) bool {
	switch p := i.(type) {
	case **sns.Client:
		*p = t.sns
	case **sqs.Client:
		*p = t.sqs
	default:
		return false
	}
	return true
}
