package snssqs_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/snssqs"
	"github.com/payrail/payrail/internal/testkit"
	"github.com/payrail/payrail/internal/testkit/fauxqs"
)

// fauxURLs returns the topic and subscription URLs of the named entities
// as fauxqs forms them (account 000000000000), for bus.Provision.
func fauxURLs(tb testing.TB, name string, fifo bool) (topicURL, provisionURL, subURL string) {
	suffix := ""
	if fifo {
		suffix = ".fifo"
	}
	endpoint, err := url.Parse(faux.Endpoint)
	if err != nil {
		tb.Fatal(err)
	}
	arn := "arn:aws:sns:" + fauxqs.Region + ":000000000000:" + name + suffix
	queue := "http://sqs." + fauxqs.Region + "." + endpoint.Host + "/000000000000/" + name + suffix
	subURL = snssqs.QueueURL(queue) + "&raw=true&wait=1s"
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		dlq := strings.TrimSuffix(queue, suffix) + "-dlq" + suffix
		_ = snssqs.Deprovision(ctx, awsCfg, &snssqs.Provisioned{TopicARN: arn, TopicCreated: true, QueueURL: queue, DLQURL: dlq})
	})
	return snssqs.TopicURL(arn), subURL + "&topic_arn=" + url.QueryEscape(arn), subURL
}

func TestProvisionConformance(t *testing.T) {
	requirePeer(t)
	for _, fifo := range []bool{false, true} {
		t.Run(map[bool]string{false: "standard", true: "fifo"}[fifo], func(t *testing.T) {
			testkit.RunBusProvision(t, testkit.BusProvisionConfig{
				NewURLs: func(tb testing.TB) testkit.ProvisionURLs {
					topic, prov, sub := fauxURLs(tb, uniqueName(tb), fifo)
					return testkit.ProvisionURLs{Topic: topic, Subscription: sub, Provision: prov}
				},
				Spec:         bus.ProvisionSpec{MaxAttempts: 4, AckDeadline: 20 * time.Second, Ordered: fifo},
				UnknownStats: []string{"OldestAge"},
			})
		})
	}
}

// A changed visibility timeout updates the queue; a queue that exists with
// another FIFO type is a conflict; 0 attempts sets SQS's maximum.
func TestProvisionUpdatesAndConflicts(t *testing.T) {
	requirePeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := uniqueName(t)
	_, prov, sub := fauxURLs(t, name, false)
	if _, err := bus.Provision(ctx, prov, bus.ProvisionSpec{AckDeadline: 10 * time.Second}); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	steps, err := bus.Provision(ctx, prov, bus.ProvisionSpec{AckDeadline: 40 * time.Second})
	if err != nil {
		t.Fatalf("Provision with a new ack deadline: %v", err)
	}
	var queueStep bus.ProvisionStep
	for _, s := range steps {
		if s.Kind == "queue" {
			queueStep = s
		}
	}
	if queueStep.Action != bus.ActionUpdated || !strings.Contains(queueStep.Detail, "VisibilityTimeout") {
		t.Fatalf("queue step = %+v; want VisibilityTimeout updated", queueStep)
	}
	s, err := bus.OpenSubscription(ctx, sub)
	if err != nil {
		t.Fatalf("OpenSubscription: %v", err)
	}
	defer s.Close()
	if c := s.Capabilities(); c.AckDeadline != 40*time.Second || c.MaxAttempts != 1000 {
		t.Fatalf("Capabilities = %+v; want AckDeadline 40s, MaxAttempts 1000 (0 = SQS's maximum)", c)
	}
	// A standard queue named like the FIFO one's dead-letter queue.
	fname := uniqueName(t)
	_, fprov, _ := fauxURLs(t, fname, true)
	if _, err := sqs.NewFromConfig(awsCfg).CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(fname + "-dlq")}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		if u, err := sqs.NewFromConfig(awsCfg).GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(fname + "-dlq")}); err == nil {
			_, _ = sqs.NewFromConfig(awsCfg).DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: u.QueueUrl})
		}
	})
	if _, err := bus.Provision(ctx, fprov, bus.ProvisionSpec{Ordered: true}); err != nil {
		t.Fatalf("Provision of FIFO entities beside a standard queue: %v", err)
	}
	if _, err := bus.Provision(ctx, prov, bus.ProvisionSpec{Ordered: true}); !errors.Is(err, bus.ErrInvalidURL) {
		t.Fatalf("Provision of a standard queue with Ordered = %v; want ErrInvalidURL (FIFO needs .fifo names)", err)
	}
}
