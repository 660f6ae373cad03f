package snssqs_test

import (
	"context"
	"encoding/base64"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/snssqs"
	"github.com/payrail/payrail/internal/testkit"
)

// BenchmarkConformance runs the portable bus benchmarks (publish at batch 1
// and 100, concurrent publishes, publish + receive) through an SNS topic
// with raw delivery.
func BenchmarkConformance(b *testing.B) {
	requirePeer(b)
	testkit.BenchmarkBus(b, harness{raw: true})
}

// BenchmarkPublish compares, against the same fauxqs in one run, publishing
// without batching (the SDK's Publish / SendMessage, one request per
// message, sequentially and from 16 goroutines) with bus/snssqs, whose
// publishes are batched (PublishBatch / SendMessageBatch of 10): a
// PublishBatch of 100, single Publish calls one at a time (nothing to
// batch: the unbatched case through the driver), and single Publish calls
// from 16 goroutines per CPU, which the driver coalesces. The payloads
// match: testkit's 256 random bytes, which the driver sends in base64, and
// the same 344 base64 characters with one attribute (the message ID) from
// the SDK (the driver's one attribute, payrail.meta, carries ID and key).
//
//	go test -run XXX -bench BenchmarkPublish -benchtime 20000x ./bus/snssqs/
func BenchmarkPublish(b *testing.B) {
	requirePeer(b)
	for _, via := range []string{"sns", "sqs"} {
		b.Run(via+"/sdk-unbatched", func(b *testing.B) { benchSDK(b, via, 1) })
		b.Run(via+"/sdk-unbatched-16goroutines", func(b *testing.B) { benchSDK(b, via, 16) })
		b.Run(via+"/bus-Publish", func(b *testing.B) { testkit.BenchPublish(b, benchTopic(b, via), 1) })
		b.Run(via+"/bus-PublishBatch=100", func(b *testing.B) { testkit.BenchPublish(b, benchTopic(b, via), 100) })
		b.Run(via+"/bus-PublishParallel", func(b *testing.B) { testkit.BenchPublishParallel(b, benchTopic(b, via)) })
	}
}

// benchBody is what the driver sends for testkit's benchmark bodies (256
// random bytes): their base64, so that both sides carry the same payload.
var benchBody = func() string {
	b := make([]byte, testkit.BenchBodySize)
	_, _ = rand.NewChaCha8([32]byte{}).Read(b)
	return base64.StdEncoding.EncodeToString(b)
}()

// benchProvision creates a fresh topic and queue for one benchmark.
func benchProvision(b *testing.B) *snssqs.Provisioned {
	return provision(b, snssqs.ProvisionOptions{Name: uniqueName(b), RawDelivery: true})
}

func benchTopic(b *testing.B, via string) *bus.Topic {
	p := benchProvision(b)
	u := p.TopicURL()
	if via == "sqs" {
		u = snssqs.QueueURL(p.QueueURL)
	}
	topic, err := bus.OpenTopic(context.Background(), u)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = topic.Close() })
	return topic
}

// benchSDK publishes b.N messages with one SDK request each, from workers
// goroutines.
func benchSDK(b *testing.B, via string, workers int) {
	p := benchProvision(b)
	snsc, sqsc := sns.NewFromConfig(awsCfg), sqs.NewFromConfig(awsCfg)
	ctx := context.Background()
	var next atomic.Int64
	errc := make(chan error, workers)
	b.SetBytes(testkit.BenchBodySize)
	b.ReportAllocs()
	b.ResetTimer()
	for range workers {
		go func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					errc <- nil
					return
				}
				id := "b" + strconv.Itoa(i)
				var err error
				if via == "sns" {
					_, err = snsc.Publish(ctx, &sns.PublishInput{TopicArn: aws.String(p.TopicARN), Message: aws.String(benchBody),
						MessageAttributes: map[string]snstypes.MessageAttributeValue{"id": {DataType: aws.String("String"), StringValue: aws.String(id)}}})
				} else {
					_, err = sqsc.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(p.QueueURL), MessageBody: aws.String(benchBody),
						MessageAttributes: map[string]sqstypes.MessageAttributeValue{"id": {DataType: aws.String("String"), StringValue: aws.String(id)}}})
				}
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	for range workers {
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
