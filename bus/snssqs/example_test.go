package snssqs_test

import (
	"context"
	"fmt"
	"log"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/snssqs"
)

// A producer publishing through an SNS topic and a consumer of one of the
// SQS queues subscribed to it. Region, credentials and endpoint come from
// the AWS SDK's default chain (AWS_REGION, AWS_PROFILE, IRSA...).
func Example() {
	ctx := context.Background()
	topicARN := "arn:aws:sns:eu-west-1:123456789012:payments"
	queueURL := "https://sqs.eu-west-1.amazonaws.com/123456789012/payments-worker"

	topic, err := bus.OpenTopic(ctx, "sns-sqs://?topic_arn="+url.QueryEscape(topicARN))
	if err != nil {
		log.Fatal(err)
	}
	defer topic.Close()
	if err := topic.Publish(ctx, &bus.Message{Key: "order-1001", Body: []byte(`{"amount":1999}`)}); err != nil {
		log.Fatal(err)
	}

	// raw=true: the SNS subscription uses raw message delivery.
	sub, err := bus.OpenSubscription(ctx, "sns-sqs://?queue_url="+url.QueryEscape(queueURL)+"&raw=true",
		bus.WithConcurrency(16))
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	// Each message is deleted when the handler returns nil, made visible
	// again after a back-off when it fails, and sent to the queue's
	// dead-letter queue with the reason on its last attempt (the
	// RedrivePolicy's maxReceiveCount).
	err = sub.Receive(ctx, func(ctx context.Context, m *bus.Message) error {
		log.Printf("%s attempt %d: %s", m.ID, m.DeliveryAttempt, m.Body)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}

// Creating a topic, a queue subscribed to it with raw delivery, and the
// queue's dead-letter queue (a message goes there after 5 receives), for
// development against an emulator (AWS_ENDPOINT_URL) or a sandbox account.
// The result gives the bus URLs.
func ExampleProvision() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		log.Fatal(err)
	}
	p, err := snssqs.Provision(ctx, cfg, snssqs.ProvisionOptions{
		Name: "payments", RawDelivery: true, MaxReceiveCount: 5, VisibilityTimeout: 30 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("BUS_TOPIC_URL=" + p.TopicURL())
	fmt.Println("BUS_SUBSCRIPTION_URL=" + p.SubscriptionURL())
}

// Settings from code instead of the environment: OpenTopic and
// OpenSubscription take an aws.Config.
func ExampleOpenSubscription() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion("eu-west-1"), config.WithSharedConfigProfile("payments"))
	if err != nil {
		log.Fatal(err)
	}
	sub, err := snssqs.OpenSubscription(ctx, cfg,
		snssqs.QueueURL("https://sqs.eu-west-1.amazonaws.com/123456789012/payments.fifo")+"&visibility=60s",
		bus.WithMaxAttempts(3))
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	fmt.Println(sub.Capabilities().Ordering) // FIFO queue: per-key ordering
}
