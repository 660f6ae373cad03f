package servicebus_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	azlog "github.com/Azure/azure-sdk-for-go/sdk/azcore/log"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/servicebus"
	"github.com/payrail/payrail/internal/testkit"
)

// The real peer: internal/testkit's Service Bus test peer (Qpid Proton,
// real AMQP 1.0), started once for the package; the driver reaches it
// through the real azservicebus SDK with the connection string in
// SERVICEBUS_CONNECTION_STRING.
var (
	peer    *testkit.ServiceBusPeer
	peerErr error
)

func TestMain(m *testing.M) {
	peer, peerErr = testkit.StartServiceBusPeer()
	if peerErr == nil {
		os.Setenv(servicebus.EnvConnectionString, peer.ConnectionString)
		// The admin client (Provision, Stats) speaks ATOM to the peer's
		// administration endpoint.
		servicebus.SetAdminTransport(peer.AdminTransport())
	}
	// The SDK's connection events (a link or connection recovered, and
	// why), kept in a ring and printed with the peer's log when a test
	// fails: a connection the SDK recovered fails every link on it.
	connLog := &eventRing{max: 400}
	azlog.SetEvents(azservicebus.EventConn)
	azlog.SetListener(connLog.add)
	code := m.Run()
	peer.Stop()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "--- azservicebus connection events (last %d):\n%s--- Service Bus peer log:\n%s\n",
			connLog.max, connLog.String(), peer.Log())
	}
	os.Exit(code)
}

// eventRing keeps the last max notable log lines of the SDK.
type eventRing struct {
	mu    sync.Mutex
	max   int
	lines []string
}

func (r *eventRing) add(ev azlog.Event, msg string) {
	// Only what explains a failure: errors, recoveries, new connections
	// (not the routine opening and closing of links).
	if !strings.Contains(msg, "rror") && !strings.Contains(msg, "ecover") &&
		!strings.Contains(msg, "ailed") && !strings.Contains(msg, "new client") {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, time.Now().Format("15:04:05.000000")+" "+string(ev)+": "+msg)
	if len(r.lines) > r.max {
		r.lines = r.lines[len(r.lines)-r.max:]
	}
}

func (r *eventRing) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n") + "\n"
}

// requirePeer skips the test when the peer could not start, or fails it
// under CI=true.
func requirePeer(tb testing.TB) {
	tb.Helper()
	testkit.StoreRequirePeer(tb, "the Service Bus test peer (python3-qpid-proton)", peerErr)
}

var seq atomic.Int64

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
	if len(s) > 40 {
		s = s[len(s)-40:]
	}
	return fmt.Sprintf("%s-%d", strings.Trim(s, "-"), seq.Add(1))
}

// defaultLock is the lock duration of entities whose case asks for none:
// the service's minimum, so that a lock left behind lapses quickly.
const defaultLock = 5 * time.Second

// harness runs the conformance suite on queues or topic subscriptions,
// with or without sessions.
type harness struct {
	topics   bool
	sessions bool
}

func (h harness) Capabilities() testkit.BusCapabilities {
	c := testkit.BusCapabilities{
		FanOut:                h.topics,
		NackDelay:             true,
		NackDelayTolerance:    300 * time.Millisecond,
		AckDeadlineRedelivery: true,
		Extend:                true,
		DeadLetter:            true,
		DLQInspectRedrive:     true,
		Ordering:              h.sessions,
		MissingEntityError:    true,
		// Through the administration (ATOM) API, which the peer serves.
		Stats:            true,
		ShutdownHandBack: true,
		Notes:            map[string]string{},
	}
	if !h.topics {
		c.Notes[testkit.CapFanOut] = "a queue has one set of competing consumers; topics with subscriptions fan out"
	}
	if !h.sessions {
		c.Notes[testkit.CapOrdering] = "without sessions=true, competing consumers, abandons and lock expiries reorder messages"
	} else {
		// Every message of the throughput test has its own key, so its own
		// session: each costs an accept round trip and an idle wait.
		c.ThroughputMessages = 500
	}
	return c
}

func (h harness) params() string {
	if h.sessions {
		return "sessions=true"
	}
	return ""
}

func (h harness) MakePair(ctx context.Context, tb testing.TB, cfg testkit.PairConfig) (testkit.BusPair, error) {
	name := uniqueName(tb)
	lock := cfg.AckDeadline
	if lock <= 0 {
		lock = defaultLock
	}
	ent := testkit.ServiceBusEntity{LockDuration: lock, MaxDeliveryCount: 10, RequiresSession: h.sessions}
	subParams := url.Values{"lock_duration": {lock.String()}, "max_delivery_count": {"10"}}
	topicURL := "servicebus://" + name
	if h.sessions {
		subParams.Set("sessions", "true")
		subParams.Set("max_sessions", "16")
		topicURL += "?sessions=true"
	}
	var subURL, secondURL string
	if h.topics {
		if err := peer.CreateTopic(ctx, name); err != nil {
			return testkit.BusPair{}, err
		}
		tb.Cleanup(func() { _ = peer.Delete(context.Background(), name) })
		for _, s := range []string{"first", "second"} {
			if s == "second" && !cfg.FanOut {
				break
			}
			if err := peer.CreateSubscription(ctx, name, s, ent); err != nil {
				return testkit.BusPair{}, err
			}
		}
		p := url.Values{"subscription": {"first"}}
		for k, v := range subParams {
			p[k] = v
		}
		subURL = "servicebus://" + name + "?" + p.Encode()
		p.Set("subscription", "second")
		secondURL = "servicebus://" + name + "?" + p.Encode()
	} else {
		if err := peer.CreateQueue(ctx, name, ent); err != nil {
			return testkit.BusPair{}, err
		}
		tb.Cleanup(func() { _ = peer.Delete(context.Background(), name) })
		subURL = "servicebus://" + name + "?" + subParams.Encode()
	}
	topic, err := bus.OpenTopic(ctx, topicURL)
	if err != nil {
		return testkit.BusPair{}, err
	}
	p := testkit.BusPair{
		Topic: topic,
		OpenSubscription: func(ctx context.Context, opts ...bus.SubscriptionOption) (*bus.Subscription, error) {
			return bus.OpenSubscription(ctx, subURL, opts...)
		},
	}
	if cfg.FanOut {
		p.OpenSecondSubscription = func(ctx context.Context, opts ...bus.SubscriptionOption) (*bus.Subscription, error) {
			return bus.OpenSubscription(ctx, secondURL, opts...)
		}
	}
	return p, nil
}

func (h harness) OpenMissingTopic(ctx context.Context) (*bus.Topic, error) {
	return bus.OpenTopic(ctx, "servicebus://testkit-missing-topic")
}

func (h harness) OpenMissingSubscription(ctx context.Context) (*bus.Subscription, error) {
	if h.topics {
		return bus.OpenSubscription(ctx, "servicebus://testkit-missing-topic?subscription=missing")
	}
	return bus.OpenSubscription(ctx, "servicebus://testkit-missing-queue")
}

// The suite runs twice: on topic subscriptions without sessions (the
// delayed-nack copies go through the topic, tagged for one subscription)
// and on sessionful queues (per-key ordering). Queues without sessions share
// all of the first run's code but the entity path; the end-to-end test in
// examples/internal/e2e and the tests in driver_test.go use them.

func TestConformanceTopic(t *testing.T) {
	requirePeer(t)
	testkit.RunBusConformance(t, harness{topics: true})
}

func TestConformanceSessions(t *testing.T) {
	requirePeer(t)
	testkit.RunBusConformance(t, harness{sessions: true})
}

func BenchmarkConformance(b *testing.B) {
	requirePeer(b)
	testkit.BenchmarkBus(b, harness{})
}
