package pubsub_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gpubsub "cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/pubsub"
	"github.com/payrail/payrail/internal/testkit"
)

// The real peer: pstest, Google's in-process implementation of the Pub/Sub
// gRPC API, served on a local port for the package. The driver reaches it
// the way it reaches any emulator: through PUBSUB_EMULATOR_HOST, read by
// the client library.
const project = "payrail-test"

var (
	srv   *pstest.Server
	admin *gpubsub.Client // for cleanup and the driver-specific tests
)

func TestMain(m *testing.M) {
	// pstest's floor for ack deadlines starts at 0 s, and its
	// ResetMinAckDeadline raises it to the service's 10 s; the tests use
	// deadlines of 1 s and 2 s, so set the floor explicitly.
	pstest.SetMinAckDeadline(time.Second)
	srv = pstest.NewServer()
	os.Setenv("PUBSUB_EMULATOR_HOST", srv.Addr)
	var err error
	admin, err = gpubsub.NewClient(context.Background(), project)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pubsub client:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = admin.Close()
	_ = srv.Close()
	os.Exit(code)
}

var seq atomic.Int64

// uniqueName returns a valid, unique topic ID for the test.
func uniqueName(tb testing.TB) string {
	var b strings.Builder
	b.WriteString("t-")
	for _, r := range strings.ToLower(tb.Name()) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	s := b.String()
	if len(s) > 200 {
		s = s[:200]
	}
	return fmt.Sprintf("%s-%d", s, seq.Add(1))
}

func topicURL(name string) string { return fmt.Sprintf("pubsub://%s/%s", project, name) }

// subURL opens 4 StreamingPull streams per handle (see Capabilities).
func subURL(name, sub string) string {
	return fmt.Sprintf("pubsub://%s/%s?subscription=%s&streams=4", project, name, sub)
}

// provision creates the topic, subscription and dead-letter topic and
// subscription for sub (extra: more URL parameters, such as
// ack_deadline=1s), and deletes them at the end of the test.
func provision(tb testing.TB, ctx context.Context, name, sub, extra string) {
	tb.Helper()
	u := subURL(name, sub)
	if extra != "" {
		u += "&" + extra
	}
	if _, err := pubsub.Provision(ctx, u); err != nil {
		tb.Fatalf("Provision(%s): %v", u, err)
	}
	cleanupProvisioned(tb, name, sub)
}

// cleanupProvisioned deletes, when the test ends, what Provision creates
// for the subscription sub of the topic name.
func cleanupProvisioned(tb testing.TB, name, sub string) {
	tb.Cleanup(func() {
		ctx := context.Background()
		for _, s := range []string{sub, sub + pubsub.DeadLetterSuffix} {
			_ = admin.SubscriptionAdminClient.DeleteSubscription(ctx, &pubsubpb.DeleteSubscriptionRequest{Subscription: "projects/" + project + "/subscriptions/" + s})
		}
		for _, t := range []string{name, sub + pubsub.DeadLetterSuffix} {
			_ = admin.TopicAdminClient.DeleteTopic(ctx, &pubsubpb.DeleteTopicRequest{Topic: "projects/" + project + "/topics/" + t})
		}
	})
}

type harness struct{}

func (harness) Capabilities() testkit.BusCapabilities {
	return testkit.BusCapabilities{
		FanOut:                true,
		NackDelay:             true,
		NackDelayTolerance:    300 * time.Millisecond, // the library sends nacks every 100ms
		AckDeadlineRedelivery: true,
		Extend:                true,
		DeadLetter:            true,
		DLQInspectRedrive:     true,
		Ordering:              true,
		MissingEntityError:    true,
		Stats:                 true, // Backlog is -1: the Pub/Sub API does not report it
		// pstest hands each StreamingPull stream at most one message per
		// 10 ms delivery tick, so receiving is bounded by ~100 msgs/s per
		// stream (the harness opens 4): 3,000 messages keep the smoke test
		// near 12 s.
		ThroughputMessages: 3000,
		ShutdownHandBack:   true,
	}
}

func (harness) MakePair(ctx context.Context, tb testing.TB, cfg testkit.PairConfig) (testkit.BusPair, error) {
	name := uniqueName(tb)
	extra := ""
	if cfg.AckDeadline > 0 {
		extra = "ack_deadline=" + cfg.AckDeadline.String()
	}
	provision(tb, ctx, name, name+"-a", extra)
	if cfg.FanOut {
		provision(tb, ctx, name, name+"-b", extra)
	}
	topic, err := bus.OpenTopic(ctx, topicURL(name))
	if err != nil {
		return testkit.BusPair{}, err
	}
	p := testkit.BusPair{
		Topic: topic,
		OpenSubscription: func(ctx context.Context, opts ...bus.SubscriptionOption) (*bus.Subscription, error) {
			return bus.OpenSubscription(ctx, subURL(name, name+"-a"), opts...)
		},
	}
	if cfg.FanOut {
		p.OpenSecondSubscription = func(ctx context.Context, opts ...bus.SubscriptionOption) (*bus.Subscription, error) {
			return bus.OpenSubscription(ctx, subURL(name, name+"-b"), opts...)
		}
	}
	return p, nil
}

func (harness) OpenMissingTopic(ctx context.Context) (*bus.Topic, error) {
	return bus.OpenTopic(ctx, topicURL("testkit-missing-topic"))
}

func (harness) OpenMissingSubscription(ctx context.Context) (*bus.Subscription, error) {
	return bus.OpenSubscription(ctx, subURL("testkit-missing-topic", "testkit-missing-sub"))
}

func TestConformance(t *testing.T) { testkit.RunBusConformance(t, harness{}) }

func BenchmarkConformance(b *testing.B) { testkit.BenchmarkBus(b, harness{}) }
