package snssqs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go/middleware"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/driver"
	"github.com/payrail/payrail/bus/snssqs"
)

func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func openTopic(t *testing.T, ctx context.Context, u string) *bus.Topic {
	t.Helper()
	topic, err := bus.OpenTopic(ctx, u)
	if err != nil {
		t.Fatalf("OpenTopic(%s): %v", u, err)
	}
	t.Cleanup(func() { _ = topic.Close() })
	return topic
}

func openDriverSub(t *testing.T, ctx context.Context, u string) driver.Subscription {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	s, err := snssqs.Driver{}.OpenSubscription(ctx, pu)
	if err != nil {
		t.Fatalf("OpenSubscription(%s): %v", u, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// receiveN receives with the driver until n messages arrived.
func receiveN(t *testing.T, ctx context.Context, s driver.Subscription, n int) []*driver.Message {
	t.Helper()
	var out []*driver.Message
	for len(out) < n {
		ms, err := s.ReceiveBatch(ctx, n-len(out))
		if err != nil {
			t.Fatalf("ReceiveBatch after %d of %d: %v", len(out), n, err)
		}
		out = append(out, ms...)
	}
	return out
}

func manyAttrs(n int) map[string]string {
	m := map[string]string{"empty": "", "name with spaces": "x", "ctl": "a\x01b"}
	for i := range n {
		m[fmt.Sprintf("attr-%02d", i)] = fmt.Sprintf("value %d ✓", i)
	}
	return m
}

// TestPublishToQueue publishes straight to standard and FIFO queues (no
// topic): bodies up to SQS's 1 MiB limit, more than 10 attributes, empty
// bodies, keys.
func TestPublishToQueue(t *testing.T) {
	requirePeer(t)
	for _, fifo := range []bool{false, true} {
		t.Run(fmt.Sprintf("fifo=%t", fifo), func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t, 30*time.Second)
			p := provision(t, snssqs.ProvisionOptions{Name: uniqueName(t), NoTopic: true, FIFO: fifo})
			if p.TopicARN != "" || !strings.Contains(p.TopicURL(), "queue_url=") {
				t.Fatalf("NoTopic provisioned %+v", p)
			}
			topic := openTopic(t, ctx, p.TopicURL())
			big := make([]byte, 700_000) // binary: 933 KB in base64, under SQS's 1 MiB
			for i := range big {
				big[i] = byte(i * 7)
			}
			ms := []*bus.Message{
				{Key: "k1", Body: big, Attributes: manyAttrs(12)},
				{Key: "k1", Body: []byte("second of k1")},
				{Body: nil, Attributes: map[string]string{"only": "attr"}},
			}
			want := make([]*bus.Message, len(ms))
			for i, m := range ms {
				want[i] = &bus.Message{Key: m.Key, Body: bytes.Clone(m.Body), Attributes: maps.Clone(m.Attributes)}
			}
			if err := topic.PublishBatch(ctx, ms); err != nil {
				t.Fatalf("PublishBatch: %v", err)
			}
			s := openDriverSub(t, ctx, p.SubscriptionURL()+"&wait=1s")
			got := map[string]*driver.Message{}
			var order []string
			for len(got) < len(ms) {
				for _, m := range receiveN(t, ctx, s, 1) {
					got[m.ID] = m
					order = append(order, m.ID)
					if err := s.Ack(ctx, m); err != nil {
						t.Fatalf("Ack: %v", err)
					}
				}
			}
			for i, m := range ms {
				g := got[m.ID]
				if g == nil || g.Key != want[i].Key || !bytes.Equal(g.Body, want[i].Body) || !maps.Equal(g.Attributes, want[i].Attributes) || g.DeliveryAttempt != 1 {
					t.Errorf("message %d: got %+v; want key %q, %d-byte body, attributes %v", i, g, want[i].Key, len(want[i].Body), want[i].Attributes)
				}
			}
			if fifo && slices.Index(order, ms[0].ID) > slices.Index(order, ms[1].ID) {
				t.Errorf("FIFO delivered key k1 out of order: %v", order)
			}
		})
	}
}

// TestNativeAttributes reads a published message with the raw SQS client:
// at most 10 message attributes, the first nine valid ones native.
func TestNativeAttributes(t *testing.T) {
	requirePeer(t)
	ctx := testCtx(t, 30*time.Second)
	p := provision(t, snssqs.ProvisionOptions{Name: uniqueName(t), RawDelivery: true})
	topic := openTopic(t, ctx, p.TopicURL())
	attrs := manyAttrs(12)
	if err := topic.Publish(ctx, &bus.Message{Body: []byte("x"), Attributes: attrs}); err != nil {
		t.Fatal(err)
	}
	var c *sns.Client
	if !topic.As(&c) || c == nil {
		t.Fatal("topic.As(*sns.Client) failed")
	}
	sub, err := bus.OpenSubscription(ctx, p.SubscriptionURL())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var q *sqs.Client
	if !sub.As(&q) || q == nil {
		t.Fatal("sub.As(*sqs.Client) failed")
	}
	out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(p.QueueURL), MessageAttributeNames: []string{"All"}, WaitTimeSeconds: 2})
	if err != nil || len(out.Messages) != 1 {
		t.Fatalf("ReceiveMessage: %d messages, %v", len(out.Messages), err)
	}
	native := slices.Sorted(maps.Keys(out.Messages[0].MessageAttributes))
	wantNative := []string{"attr-00", "attr-01", "attr-02", "attr-03", "attr-04", "attr-05", "attr-06", "attr-07", "attr-08", snssqs.AttrMeta}
	if !slices.Equal(native, wantNative) {
		t.Errorf("native attributes %v, want %v", native, wantNative)
	}
}

// TestTooLarge checks the size limits: nothing of a batch holding an
// oversized message is published.
func TestTooLarge(t *testing.T) {
	requirePeer(t)
	ctx := testCtx(t, 30*time.Second)
	p := provision(t, snssqs.ProvisionOptions{Name: uniqueName(t), RawDelivery: true})
	for _, c := range []struct {
		url  string
		size int
	}{{p.TopicURL(), 200_000}, {snssqs.QueueURL(p.QueueURL), 800_000}} {
		topic := openTopic(t, ctx, c.url)
		ok := &bus.Message{Body: []byte("fits")}
		huge := &bus.Message{Body: bytes.Repeat([]byte{0xff}, c.size)} // base64: 4/3 larger
		err := topic.PublishBatch(ctx, []*bus.Message{ok, huge})
		if !errors.Is(err, snssqs.ErrTooLarge) {
			t.Errorf("%s: PublishBatch with a %d-byte binary body = %v, want ErrTooLarge", c.url, c.size, err)
		}
		if err := topic.Publish(ctx, &bus.Message{Body: []byte("x"), Attributes: map[string]string{snssqs.AttrMeta: "mine"}}); err == nil || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("publishing the reserved attribute %s: %v", snssqs.AttrMeta, err)
		}
	}
	sub, err := bus.OpenSubscription(ctx, p.SubscriptionURL())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if st, err := sub.Stats(ctx); err != nil || st.Backlog != 0 || st.InFlight != 0 {
		t.Errorf("Stats = %+v, %v; want nothing published", st, err)
	}
}

// TestEnvelopeAndForeignMessages publishes with the raw SNS client to a
// queue without raw delivery: the driver unwraps the envelope (raw=false,
// the default) or leaves it (raw=true).
func TestEnvelopeAndForeignMessages(t *testing.T) {
	requirePeer(t)
	ctx := testCtx(t, 30*time.Second)
	p := provision(t, snssqs.ProvisionOptions{Name: uniqueName(t), RawDelivery: false})
	c := sns.NewFromConfig(awsCfg)
	for i := range 2 {
		_, err := c.Publish(ctx, &sns.PublishInput{TopicArn: aws.String(p.TopicARN), Message: aws.String(fmt.Sprintf(`{"order":%d}`, i)),
			MessageAttributes: map[string]snstypes.MessageAttributeValue{"n": {DataType: aws.String("Number"), StringValue: aws.String("42")}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	s := openDriverSub(t, ctx, p.SubscriptionURL()+"&wait=1s")
	m := receiveN(t, ctx, s, 1)[0]
	if string(m.Body) != `{"order":0}` || m.Attributes["n"] != "42" || m.ID == "" || m.PublishTime.IsZero() {
		t.Errorf("unwrapped foreign message %+v", m)
	}
	if err := s.Ack(ctx, m); err != nil {
		t.Fatal(err)
	}
	raw := openDriverSub(t, ctx, p.SubscriptionURL()+"&wait=1s&raw=true")
	m = receiveN(t, ctx, raw, 1)[0]
	if !strings.Contains(string(m.Body), `"Type":"Notification"`) || !strings.Contains(string(m.Body), `\"order\":1`) {
		t.Errorf("raw=true delivered %q, want the SNS envelope", m.Body)
	}
	if err := raw.Ack(ctx, m); err != nil {
		t.Fatal(err)
	}
}

// TestRedrivePolicy lets SQS move a message that is never settled to the
// dead-letter queue after maxReceiveCount receives, then inspects and
// redrives it.
func TestRedrivePolicy(t *testing.T) {
	requirePeer(t)
	ctx := testCtx(t, 30*time.Second)
	p := provision(t, snssqs.ProvisionOptions{Name: uniqueName(t), RawDelivery: true, MaxReceiveCount: 2})
	topic := openTopic(t, ctx, p.TopicURL())
	attrs := manyAttrs(10)
	m := &bus.Message{Key: "crashy", Body: []byte{0, 1, 2}, Attributes: maps.Clone(attrs)}
	if err := topic.Publish(ctx, m); err != nil {
		t.Fatal(err)
	}
	s := openDriverSub(t, ctx, p.SubscriptionURL()+"&wait=1s&visibility=1s")
	if got := s.Capabilities().MaxAttempts; got != 2 {
		t.Errorf("MaxAttempts = %d, want maxReceiveCount 2", got)
	}
	// Two deliveries that are never settled (a consumer that crashes).
	for attempt := 1; attempt <= 2; attempt++ {
		d := receiveN(t, ctx, s, 1)[0]
		if d.ID != m.ID || d.DeliveryAttempt != attempt {
			t.Fatalf("delivery %d: %s at attempt %d", attempt, d.ID, d.DeliveryAttempt)
		}
	}
	// The third receive makes SQS move it to the dead-letter queue.
	deadline := time.Now().Add(5 * time.Second)
	var dls []*driver.DeadLetter
	for len(dls) == 0 && time.Now().Before(deadline) {
		if ms, err := s.ReceiveBatch(ctx, 1); err != nil || len(ms) != 0 {
			t.Fatalf("receive after maxReceiveCount: %d messages, %v", len(ms), err)
		}
		var err error
		if dls, err = s.(driver.DeadLetterQueue).PeekDeadLetters(ctx, 0); err != nil {
			t.Fatal(err)
		}
	}
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	dl := dls[0]
	if dl.Message.ID != m.ID || dl.Message.Key != "crashy" || !bytes.Equal(dl.Message.Body, []byte{0, 1, 2}) || !maps.Equal(dl.Message.Attributes, attrs) {
		t.Errorf("dead letter %+v; want the original message", dl.Message)
	}
	if !strings.Contains(dl.Reason, "maxReceiveCount (2)") || dl.Message.DeliveryAttempt != 2 {
		t.Errorf("reason %q attempt %d", dl.Reason, dl.Message.DeliveryAttempt)
	}
	st, err := s.(driver.Stater).Stats(ctx)
	if err != nil || st.DeadLetters != 1 || st.Backlog != 0 {
		t.Errorf("Stats = %+v, %v", st, err)
	}
	n, err := s.(driver.DeadLetterQueue).Redrive(ctx, 0)
	if err != nil || n != 1 {
		t.Fatalf("Redrive = %d, %v", n, err)
	}
	d := receiveN(t, ctx, s, 1)[0]
	if d.ID != m.ID || d.DeliveryAttempt != 1 || !maps.Equal(d.Attributes, attrs) || !bytes.Equal(d.Body, []byte{0, 1, 2}) {
		t.Errorf("redriven %+v", d)
	}
	if err := s.Ack(ctx, d); err != nil {
		t.Fatal(err)
	}
}

// countingConfig returns awsCfg with a middleware counting SDK calls by
// operation name.
func countingConfig() (aws.Config, func(op string) int64) {
	var mu sync.Mutex
	calls := map[string]int64{}
	cfg := awsCfg.Copy()
	cfg.APIOptions = append(slices.Clone(cfg.APIOptions), func(st *middleware.Stack) error {
		return st.Initialize.Add(middleware.InitializeMiddlewareFunc("payrail-count", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			mu.Lock()
			calls[awsmiddleware.GetOperationName(ctx)]++
			mu.Unlock()
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
	})
	return cfg, func(op string) int64 {
		mu.Lock()
		defer mu.Unlock()
		return calls[op]
	}
}

// TestBatching counts the requests: a batch is split into requests of 10,
// concurrent single publishes and acks share requests.
func TestBatching(t *testing.T) {
	requirePeer(t)
	ctx := testCtx(t, 30*time.Second)
	p := provision(t, snssqs.ProvisionOptions{Name: uniqueName(t), RawDelivery: true})
	cfg, calls := countingConfig()
	topic, err := snssqs.OpenTopic(ctx, cfg, p.TopicURL())
	if err != nil {
		t.Fatal(err)
	}
	defer topic.Close()
	batch := make([]*bus.Message, 25)
	for i := range batch {
		batch[i] = &bus.Message{Body: []byte{byte('a' + i)}}
	}
	if err := topic.PublishBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if got := calls("PublishBatch"); got != 3 {
		t.Errorf("PublishBatch of 25 messages took %d requests, want 3", got)
	}
	const n = 64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() { errs <- topic.Publish(ctx, &bus.Message{Body: []byte(fmt.Sprint(i))}) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	single := calls("PublishBatch") - 3
	t.Logf("%d concurrent Publish calls sent in %d requests", n, single)
	if single >= n {
		t.Errorf("%d concurrent Publish calls took %d requests: none were coalesced", n, single)
	}

	sub, err := snssqs.OpenSubscription(ctx, cfg, p.SubscriptionURL()+"&wait=1s", bus.WithConcurrency(32))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var handled atomic.Int64
	done := make(chan struct{})
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		_ = sub.Receive(rctx, func(context.Context, *bus.Message) error {
			if handled.Add(1) == 25+n {
				close(done)
			}
			return nil
		})
	}()
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatalf("handled %d of %d", handled.Load(), 25+n)
	}
	time.Sleep(100 * time.Millisecond) // the last acks
	deletes := calls("DeleteMessageBatch")
	t.Logf("%d acks sent in %d DeleteMessageBatch requests", 25+n, deletes)
	if deletes == 0 || deletes >= 25+n {
		t.Errorf("%d acks took %d DeleteMessageBatch requests", 25+n, deletes)
	}
	if calls("DeleteMessage") != 0 {
		t.Errorf("acks used DeleteMessage %d times", calls("DeleteMessage"))
	}
}

// TestAbandonedPoll stops a receive while its long poll is in flight: the
// message the poll then brings is made visible again at once instead of
// staying invisible for the visibility timeout (30 s).
func TestAbandonedPoll(t *testing.T) {
	requirePeer(t)
	ctx := testCtx(t, 30*time.Second)
	p := provision(t, snssqs.ProvisionOptions{Name: uniqueName(t), NoTopic: true})
	s := openDriverSub(t, ctx, p.SubscriptionURL()+"&wait=5s")
	rctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if ms, err := s.ReceiveBatch(rctx, 10); !errors.Is(err, context.DeadlineExceeded) || len(ms) != 0 {
		t.Fatalf("ReceiveBatch on an empty queue with a 200ms context = %d, %v", len(ms), err)
	}
	topic := openTopic(t, ctx, p.TopicURL())
	if err := topic.Publish(ctx, &bus.Message{Body: []byte("late")}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	m := receiveN(t, ctx, s, 1)[0]
	if string(m.Body) != "late" || time.Since(start) > 5*time.Second {
		t.Fatalf("received %q after %v", m.Body, time.Since(start))
	}
	t.Logf("received after %v at attempt %d (the abandoned poll took it first)", time.Since(start), m.DeliveryAttempt)
}

// TestOpenErrors covers what opening checks.
func TestOpenErrors(t *testing.T) {
	requirePeer(t)
	ctx := testCtx(t, 30*time.Second)
	p := provision(t, snssqs.ProvisionOptions{Name: uniqueName(t), MaxReceiveCount: 3})

	_, err := bus.OpenSubscription(ctx, p.SubscriptionURL()+"&max_attempts=4")
	if !errors.Is(err, bus.ErrInvalidURL) || !strings.Contains(err.Error(), "maxReceiveCount 3") {
		t.Errorf("max_attempts above maxReceiveCount: %v", err)
	}
	sub, err := bus.OpenSubscription(ctx, p.SubscriptionURL()+"&max_attempts=2&visibility=7s")
	if err != nil {
		t.Fatal(err)
	}
	if c := sub.Capabilities(); c.MaxAttempts != 2 || c.AckDeadline != 7*time.Second || c.Ordering || !c.FanOut || !c.DeadLetterQueue {
		t.Errorf("Capabilities = %+v", c)
	}
	_ = sub.Close()

	// A queue without a RedrivePolicy needs dlq_url.
	c := sqs.NewFromConfig(awsCfg)
	bare, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(uniqueName(t) + "-bare")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = c.DeleteQueue(context.Background(), &sqs.DeleteQueueInput{QueueUrl: bare.QueueUrl}) })
	bareURL := snssqs.QueueURL(aws.ToString(bare.QueueUrl))
	if _, err := bus.OpenSubscription(ctx, bareURL); !errors.Is(err, snssqs.ErrNoDeadLetterQueue) {
		t.Errorf("queue without a dead-letter queue: %v", err)
	}
	missing := strings.Replace(p.DLQURL, "-dlq", "-nothere", 1)
	if _, err := bus.OpenSubscription(ctx, bareURL+"&dlq_url="+url.QueryEscape(missing)); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("missing dlq_url: %v", err)
	}
	// dlq_url works without a RedrivePolicy: DeadLetter sends there.
	topic := openTopic(t, ctx, bareURL)
	if err := topic.Publish(ctx, &bus.Message{Body: []byte("to the dlq")}); err != nil {
		t.Fatal(err)
	}
	s := openDriverSub(t, ctx, bareURL+"&wait=1s&dlq_url="+url.QueryEscape(p.DLQURL))
	if s.Capabilities().MaxAttempts != 0 {
		t.Errorf("MaxAttempts without a RedrivePolicy = %d, want 0 (package bus's default)", s.Capabilities().MaxAttempts)
	}
	m := receiveN(t, ctx, s, 1)[0]
	if err := s.DeadLetter(ctx, m, "bad\x00input"); err != nil {
		t.Fatal(err)
	}
	dls, err := s.(driver.DeadLetterQueue).PeekDeadLetters(ctx, 0)
	if err != nil || len(dls) != 1 || dls[0].Reason != "bad\x00input" || string(dls[0].Message.Body) != "to the dlq" || dls[0].DeadLetteredAt.IsZero() {
		t.Fatalf("dead letters %v, %v", dls, err)
	}

	// A queue deleted under an open subscription and topic.
	if _, err := c.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: bare.QueueUrl}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReceiveBatch(ctx, 1); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("ReceiveBatch from a deleted queue: %v", err)
	}
	if err := topic.Ping(ctx); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("Ping of a deleted queue: %v", err)
	}
	if err := topic.Publish(ctx, &bus.Message{Body: []byte("x")}); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("Publish to a deleted queue: %v", err)
	}
}

// TestProvisionIdempotent provisions twice, changing the redrive policy.
func TestProvisionIdempotent(t *testing.T) {
	requirePeer(t)
	ctx := testCtx(t, 30*time.Second)
	name := uniqueName(t)
	a := provision(t, snssqs.ProvisionOptions{Name: name, FIFO: true, MaxReceiveCount: 3})
	b, err := snssqs.Provision(ctx, awsCfg, snssqs.ProvisionOptions{Name: name, FIFO: true, MaxReceiveCount: 4, VisibilityTimeout: 45 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if a.QueueURL != b.QueueURL || a.DLQURL != b.DLQURL || a.TopicARN != b.TopicARN || !strings.HasSuffix(a.TopicARN, ".fifo") || !strings.HasSuffix(a.DLQURL, "-dlq.fifo") {
		t.Errorf("first %+v, second %+v", a, b)
	}
	sub, err := bus.OpenSubscription(ctx, b.SubscriptionURL())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if c := sub.Capabilities(); c.MaxAttempts != 4 || c.AckDeadline != 45*time.Second || !c.Ordering {
		t.Errorf("after re-provisioning: %+v", c)
	}
	for _, o := range []snssqs.ProvisionOptions{{Name: ""}, {Name: "bad name"}, {Name: strings.Repeat("x", 72)}, {Name: "x", NoTopic: true, TopicARN: a.TopicARN}, {Name: "x", MaxReceiveCount: -1}} {
		if _, err := snssqs.Provision(ctx, awsCfg, o); err == nil {
			t.Errorf("Provision(%+v) accepted", o)
		}
	}
}

// TestSettleErrors checks settling outside the normal flow.
func TestSettleErrors(t *testing.T) {
	requirePeer(t)
	ctx := testCtx(t, 30*time.Second)
	p := provision(t, snssqs.ProvisionOptions{Name: uniqueName(t), NoTopic: true})
	topic := openTopic(t, ctx, p.TopicURL())
	if err := topic.Publish(ctx, &bus.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	s := openDriverSub(t, ctx, p.SubscriptionURL()+"&wait=1s")
	m := receiveN(t, ctx, s, 1)[0]
	if err := s.Ack(ctx, &driver.Message{ID: "forged"}); err == nil {
		t.Error("Ack of a message that was not received succeeded")
	}
	if err := s.(driver.Extender).Extend(ctx, m, 10*time.Second); err != nil {
		t.Errorf("Extend: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(ctx, m); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Ack after Close = %v, want ErrClosed", err)
	}
	if _, err := s.ReceiveBatch(ctx, 1); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("ReceiveBatch after Close = %v, want ErrClosed", err)
	}
	if err := s.Close(); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
}
