package snssqs_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/snssqs"
	"github.com/payrail/payrail/internal/testkit"
	"github.com/payrail/payrail/internal/testkit/fauxqs"
)

// The real peer: fauxqs, an SNS/SQS emulator, started once for the package
// on a free port. The driver finds it through the SDK's default chain
// (AWS_ENDPOINT_URL, AWS_REGION and dummy credentials set here).
var (
	faux    *fauxqs.Server
	fauxErr error
	awsCfg  aws.Config
)

func TestMain(m *testing.M) {
	// The conformance cases mostly wait for SQS timers (visibility
	// timeouts, nack delays, long polls): unless -parallel is given, run
	// up to 6 at once rather than GOMAXPROCS, which keeps the three suites
	// near 20 s on a two-core machine.
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", "6")
	}
	faux, fauxErr = fauxqs.Start()
	if fauxErr == nil {
		faux.SetEnv()
		awsCfg, fauxErr = config.LoadDefaultConfig(context.Background())
	}
	code := m.Run()
	faux.Stop()
	os.Exit(code)
}

// requirePeer skips the test without fauxqs, or fails it under CI=true.
func requirePeer(tb testing.TB) {
	tb.Helper()
	testkit.StoreRequirePeer(tb, "fauxqs (the SNS/SQS emulator; .ci/setup.d/bus-snssqs-fauxqs.sh installs it)", fauxErr)
}

var seq atomic.Int64

// uniqueName returns a queue/topic name for the test: letters, digits and
// dashes, short enough for SQS once -dlq.fifo is added.
func uniqueName(tb testing.TB) string {
	var b strings.Builder
	for _, r := range strings.ToLower(tb.Name()) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	s := b.String()
	if len(s) > 50 {
		s = s[len(s)-50:]
	}
	return fmt.Sprintf("%s-%d", strings.Trim(s, "-"), seq.Add(1))
}

// provision creates a topic, queue and dead-letter queue for the test and
// deletes them when it ends.
func provision(tb testing.TB, o snssqs.ProvisionOptions) *snssqs.Provisioned {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := snssqs.Provision(ctx, awsCfg, o)
	if err != nil {
		tb.Fatalf("Provision(%+v): %v", o, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := snssqs.Deprovision(ctx, awsCfg, p); err != nil {
			tb.Errorf("Deprovision: %v", err)
		}
	})
	return p
}

// harness runs the conformance suite through an SNS topic with one SQS
// queue per subscription, as deployed.
type harness struct {
	fifo       bool // FIFO topic and queues
	raw        bool // raw message delivery (else SNS envelopes)
	throughput int
}

// testWait is the long-poll wait of the test subscriptions: shorter than
// the 20s default, so that polls abandoned by a stopped Receive end soon.
const testWait = "&wait=2s"

func (h harness) Capabilities() testkit.BusCapabilities {
	c := testkit.BusCapabilities{
		FanOut:                true,
		NackDelay:             true,
		NackDelayTolerance:    time.Second, // SQS visibility timeouts are whole seconds (delays are rounded up)
		AckDeadlineRedelivery: true,
		Extend:                true,
		DeadLetter:            true,
		DLQInspectRedrive:     true,
		Ordering:              h.fifo,
		MissingEntityError:    true,
		Stats:                 true,
		ShutdownHandBack:      true,
		// Through SNS a message is at most 256 KiB including attributes;
		// a binary body travels in base64 (4/3 larger).
		MaxBodyBytes:       190_000,
		ThroughputMessages: h.throughput,
		Notes: map[string]string{
			testkit.CapOrdering: "standard SQS queues do not order messages; FIFO queues do (see the fifo harness)",
		},
	}
	return c
}

func (h harness) MakePair(ctx context.Context, tb testing.TB, cfg testkit.PairConfig) (testkit.BusPair, error) {
	name := uniqueName(tb)
	o := snssqs.ProvisionOptions{Name: name, FIFO: h.fifo, RawDelivery: h.raw, MaxReceiveCount: 5}
	p := provision(tb, o)
	topic, err := bus.OpenTopic(ctx, p.TopicURL())
	if err != nil {
		return testkit.BusPair{}, err
	}
	params := testWait
	if cfg.AckDeadline > 0 {
		// At least 2s: with SQS's whole-second visibility timeouts, 1s
		// leaves the automatic extension (every third of it) little slack
		// on a loaded machine. The suite reads the effective deadline.
		params += "&visibility=" + max(cfg.AckDeadline, 2*time.Second).String()
	}
	subURL := p.SubscriptionURL() + params
	pair := testkit.BusPair{
		Topic: topic,
		OpenSubscription: func(ctx context.Context, opts ...bus.SubscriptionOption) (*bus.Subscription, error) {
			return bus.OpenSubscription(ctx, subURL, opts...)
		},
	}
	if cfg.FanOut {
		o.Name, o.TopicARN = name+"-b", p.TopicARN
		second := provision(tb, o).SubscriptionURL() + params
		pair.OpenSecondSubscription = func(ctx context.Context, opts ...bus.SubscriptionOption) (*bus.Subscription, error) {
			return bus.OpenSubscription(ctx, second, opts...)
		}
	}
	return pair, nil
}

func (h harness) OpenMissingTopic(ctx context.Context) (*bus.Topic, error) {
	arn := "arn:aws:sns:" + fauxqs.Region + ":000000000000:testkit-missing-topic"
	if h.fifo {
		arn += ".fifo"
	}
	return bus.OpenTopic(ctx, snssqs.TopicURL(arn))
}

func (h harness) OpenMissingSubscription(ctx context.Context) (*bus.Subscription, error) {
	u := faux.Endpoint + "/000000000000/testkit-missing-queue"
	if h.fifo {
		u += ".fifo"
	}
	return bus.OpenSubscription(ctx, snssqs.QueueURL(u))
}

// TestConformance runs the bus suite three times, in parallel, against
// fauxqs: a standard topic with raw message delivery, a standard topic
// delivering SNS JSON envelopes, and a FIFO topic with FIFO queues.
func TestConformance(t *testing.T) {
	requirePeer(t)
	for _, c := range []struct {
		name string
		h    harness
	}{
		{"raw", harness{raw: true, throughput: 10_000}},
		{"envelope", harness{raw: false, throughput: 2_000}},
		{"fifo", harness{fifo: true, raw: true, throughput: 2_000}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			testkit.RunBusConformance(t, c.h)
		})
	}
}
