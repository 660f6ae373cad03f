package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/driver"
	"github.com/payrail/payrail/bus/kafka"
	"github.com/payrail/payrail/internal/testkit"
)

// The real peer: franz-go's kfake, an in-process implementation of the
// Kafka wire protocol, started once for the package. Its group session
// timeout floor is lowered so that consumer groups rebalance quickly.
var brokers string

func TestMain(m *testing.M) {
	c, err := kfake.NewCluster(
		kfake.NumBrokers(3),
		kfake.DefaultNumPartitions(4),
		kfake.GroupMinSessionTimeout(100*time.Millisecond),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kfake:", err)
		os.Exit(1)
	}
	brokers = strings.Join(c.ListenAddrs(), ",")
	code := m.Run()
	c.Close()
	os.Exit(code)
}

// groupParams tunes consumer groups for tests: fast heartbeats and
// rebalances, frequent commits.
const groupParams = "session_timeout=3s&heartbeat_interval=100ms&rebalance_timeout=10s&commit_interval=100ms&drain_timeout=5s"

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
	fmt.Fprintf(&b, "-%d", seq.Add(1))
	return b.String()
}

func topicURL(name string) string { return fmt.Sprintf("kafka://%s/%s", brokers, name) }

func subURL(name, group string) string {
	return fmt.Sprintf("kafka://%s/%s?group=%s&%s", brokers, name, group, groupParams)
}

// newTopic creates a uniquely named topic with its dead-letter topic and
// opens it (closed when the test ends).
func newTopic(t *testing.T, partitions int32) (string, *bus.Topic) {
	t.Helper()
	name := uniqueName(t)
	ensure(t, name, partitions)
	topic, err := bus.OpenTopic(context.Background(), topicURL(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = topic.Close() })
	return name, topic
}

// ensure creates a topic and its dead-letter topic.
func ensure(tb testing.TB, name string, partitions int32) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafka.EnsureTopic(ctx, topicURL(name), kafka.WithPartitions(partitions)); err != nil {
		tb.Fatalf("EnsureTopic(%s): %v", name, err)
	}
}

type harness struct{}

func (harness) Capabilities() testkit.BusCapabilities {
	return testkit.BusCapabilities{
		FanOut:             true,
		NackDelay:          true,
		NackDelayTolerance: 300 * time.Millisecond,
		DeadLetter:         true,
		DLQInspectRedrive:  true,
		Ordering:           true,
		MissingEntityError: true,
		Stats:              true,
		ShutdownHandBack:   true,
		Notes: map[string]string{
			testkit.CapAckDeadlineRedelivery: "Kafka has no per-message ack deadline: an unsettled record holds its partition's commit point and is delivered again only after a rebalance or restart",
			testkit.CapExtend:                "no ack deadline, so nothing to extend",
		},
	}
}

func (harness) MakePair(ctx context.Context, tb testing.TB, cfg testkit.PairConfig) (testkit.BusPair, error) {
	name := uniqueName(tb)
	if err := kafka.EnsureTopic(ctx, topicURL(name), kafka.WithPartitions(4)); err != nil {
		return testkit.BusPair{}, err
	}
	topic, err := bus.OpenTopic(ctx, topicURL(name))
	if err != nil {
		return testkit.BusPair{}, err
	}
	p := testkit.BusPair{
		Topic: topic,
		OpenSubscription: func(ctx context.Context, opts ...bus.SubscriptionOption) (*bus.Subscription, error) {
			return bus.OpenSubscription(ctx, subURL(name, name+"-g1"), opts...)
		},
	}
	if cfg.FanOut {
		p.OpenSecondSubscription = func(ctx context.Context, opts ...bus.SubscriptionOption) (*bus.Subscription, error) {
			return bus.OpenSubscription(ctx, subURL(name, name+"-g2"), opts...)
		}
	}
	return p, nil
}

func (harness) OpenMissingTopic(ctx context.Context) (*bus.Topic, error) {
	return bus.OpenTopic(ctx, topicURL("testkit-missing-topic"))
}

func (harness) OpenMissingSubscription(ctx context.Context) (*bus.Subscription, error) {
	return bus.OpenSubscription(ctx, subURL("testkit-missing-topic", "g"))
}

func TestConformance(t *testing.T) { testkit.RunBusConformance(t, harness{}) }

func BenchmarkConformance(b *testing.B) { testkit.BenchmarkBus(b, harness{}) }

// openDriverSub opens a driver-level subscription, for the commit rules the
// portable layer does not expose (it settles every message it receives).
func openDriverSub(t *testing.T, rawURL string) driver.Subscription {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	s, err := kafka.Driver{}.OpenSubscription(context.Background(), u)
	if err != nil {
		t.Fatalf("OpenSubscription: %v", err)
	}
	return s
}

// receiveN receives until n messages arrived.
func receiveN(t *testing.T, s driver.Subscription, n int) []*driver.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
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

func bodies(ms []*driver.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = string(m.Body)
	}
	return out
}

// TestOutOfOrderAcksLoseNothing acks records out of order, "crashes" (closes
// the member with records unsettled) and checks that the group resumes at
// the first unsettled record: nothing is skipped.
func TestOutOfOrderAcksLoseNothing(t *testing.T) {
	ctx := context.Background()
	name, topic := newTopic(t, 1)
	var ms []*bus.Message
	for i := range 5 {
		ms = append(ms, &bus.Message{Body: []byte{'0' + byte(i)}})
	}
	if err := topic.PublishBatch(ctx, ms); err != nil {
		t.Fatal(err)
	}
	group := name + "-g"

	// Round 1: ack 1..4 but not 0. Nothing may be committed.
	s := openDriverSub(t, subURL(name, group))
	got := receiveN(t, s, 5)
	if fmt.Sprint(bodies(got)) != "[0 1 2 3 4]" {
		t.Fatalf("round 1 received %v", bodies(got))
	}
	for _, i := range []int{4, 2, 3, 1} {
		if err := s.Ack(ctx, got[i]); err != nil {
			t.Fatalf("Ack(%d): %v", i, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// Round 2: everything comes back (0 was never acked); ack 0 and 2 only.
	s = openDriverSub(t, subURL(name, group))
	got = receiveN(t, s, 5)
	if fmt.Sprint(bodies(got)) != "[0 1 2 3 4]" {
		t.Fatalf("round 2 received %v, want all five again", bodies(got))
	}
	for _, i := range []int{2, 0} {
		if err := s.Ack(ctx, got[i]); err != nil {
			t.Fatalf("Ack(%d): %v", i, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// Round 3: resumes at 1, the first unsettled; 0 is gone.
	s = openDriverSub(t, subURL(name, group))
	defer s.Close()
	got = receiveN(t, s, 4)
	if fmt.Sprint(bodies(got)) != "[1 2 3 4]" {
		t.Fatalf("round 3 received %v, want [1 2 3 4]", bodies(got))
	}
	for _, m := range got {
		if err := s.Ack(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRedriveOnlyToOwnGroup checks that a message redriven by one group is
// not delivered again to another group of the same topic.
func TestRedriveOnlyToOwnGroup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	name, topic := newTopic(t, 2)
	a, b := openDriverSub(t, subURL(name, "a")), openDriverSub(t, subURL(name, "b"))
	defer a.Close()
	defer b.Close()
	if err := topic.Publish(ctx, &bus.Message{Key: "k", Body: []byte("once"), Attributes: map[string]string{"x": "1"}}); err != nil {
		t.Fatal(err)
	}
	ma := receiveN(t, a, 1)[0]
	if err := a.DeadLetter(ctx, ma, "testing redrive"); err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	mb := receiveN(t, b, 1)[0]
	if err := b.Ack(ctx, mb); err != nil {
		t.Fatal(err)
	}
	dq := a.(driver.DeadLetterQueue)
	if dls, err := dq.PeekDeadLetters(ctx, 0); err != nil || len(dls) != 1 || dls[0].Reason != "testing redrive" || dls[0].Message.Attributes["x"] != "1" {
		t.Fatalf("PeekDeadLetters = %+v, %v", dls, err)
	}
	if dls, err := b.(driver.DeadLetterQueue).PeekDeadLetters(ctx, 0); err != nil || len(dls) != 0 {
		t.Fatalf("group b sees %d dead letters (%v); they are group a's", len(dls), err)
	}
	if n, err := dq.Redrive(ctx, 0); err != nil || n != 1 {
		t.Fatalf("Redrive = %d, %v", n, err)
	}
	again := receiveN(t, a, 1)[0]
	if again.ID != ma.ID || again.DeliveryAttempt != 1 || string(again.Body) != "once" || again.Attributes["x"] != "1" {
		t.Fatalf("redriven message = %+v", again)
	}
	if err := a.Ack(ctx, again); err != nil {
		t.Fatal(err)
	}
	// Group b skips the redriven record: nothing arrives.
	qctx, qcancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer qcancel()
	if ms, err := b.ReceiveBatch(qctx, 1); len(ms) != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("group b received %v, %v; want nothing", bodies(ms), err)
	}
}

func TestReservedAttributesRefused(t *testing.T) {
	ctx := context.Background()
	_, topic := newTopic(t, 1)
	for _, k := range []string{kafka.HeaderID, kafka.HeaderRedriveGroup, kafka.HeaderDLQReason} {
		err := topic.Publish(ctx, &bus.Message{Body: []byte("x"), Attributes: map[string]string{k: "v"}})
		if err == nil || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("Publish with attribute %q = %v, want a reserved-name error", k, err)
		}
	}
}

func TestAs(t *testing.T) {
	ctx := context.Background()
	name, topic := newTopic(t, 1)
	var client sarama.Client
	var producer sarama.AsyncProducer
	if !topic.As(&client) || client == nil || !topic.As(&producer) || producer == nil {
		t.Fatal("topic As(*sarama.Client / *sarama.AsyncProducer) failed")
	}
	if ps, err := client.Partitions(name); err != nil || len(ps) != 1 {
		t.Fatalf("client.Partitions = %v, %v", ps, err)
	}
	sub, err := bus.OpenSubscription(ctx, subURL(name, "as"))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var group sarama.ConsumerGroup
	if !sub.As(&group) || group == nil || !sub.As(&client) {
		t.Fatal("subscription As(*sarama.ConsumerGroup / *sarama.Client) failed")
	}
	var wrong *int
	if topic.As(&wrong) || sub.As(&wrong) {
		t.Fatal("As accepted an unsupported type")
	}
	if err := topic.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if err := sub.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func TestInvalidURLs(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct{ url, want string }{
		{"kafka:///t", "missing brokers"},
		{"kafka://h:9092/", "one topic name"},
		{"kafka://h:9092/a/b", "one topic name"},
		{"kafka://h/t", "no port"},
		{"kafka://h:1,,h:2/t", "empty broker"},
		{"kafka://h:9092/t?version=abc", "version"},
		{"kafka://h:9092/t?bogus=1", "unknown topic parameter"},
		{"kafka://h:9092/t?idempotent=yes-please", "idempotent"},
		{"kafka://h:9092/t?acks=leader", "acks must be all"},
		{"kafka://h:9092/t?compression=brotli", "compression"},
		{"kafka://u:p@h:9092/t", "needs sasl"},
		{"kafka://h:9092/t?sasl=plain", "needs kafka://user:password@"},
		{"kafka://u:p@h:9092/t?sasl=gssapi", "sasl"},
		{"kafka://h:9092/t?tls_ca=/nonexistent/ca.pem", "tls_ca"},
		{"kafka://h:9092/t?tls_cert=/x.pem", "go together"},
		{"kafka://h:9092/t?group=g", "unknown topic parameter"},
	} {
		_, err := bus.OpenTopic(ctx, c.url)
		if !errors.Is(err, bus.ErrInvalidURL) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("OpenTopic(%q) = %v, want ErrInvalidURL mentioning %q", c.url, err, c.want)
		}
		if strings.Contains(fmt.Sprint(err), ":p@") {
			t.Errorf("error %v shows the password", err)
		}
	}
	for _, c := range []struct{ url, want string }{
		{"kafka://h:9092/t", "missing group"},
		{"kafka://h:9092/t?group=g&initial=latest", "initial"},
		{"kafka://h:9092/t?group=g&prefetch=0", "prefetch"},
		{"kafka://h:9092/t?group=g&session_timeout=-1s", "session_timeout"},
		{"kafka://h:9092/t?group=g&dlq=t", "must differ"},
		{"kafka://h:9092/t?group=g&balance=magic", "balance"},
		{"kafka://h:9092/t?group=g&acks=all", "unknown subscription parameter"},
		{"kafka://h:9092/t?group=g&group=h", "given 2 times"},
		{"kafka://h:9092/t?group=g&rebalance_timeout=5s", "drain_timeout"},
		{"kafka://h:9092/t?group=g&attempts_metadata_max=-1", "attempts_metadata_max"},
		{"kafka://h:9092/t?group=g&attempts_metadata_max=10", "at least 64"},
	} {
		_, err := bus.OpenSubscription(ctx, c.url)
		if !errors.Is(err, bus.ErrInvalidURL) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("OpenSubscription(%q) = %v, want ErrInvalidURL mentioning %q", c.url, err, c.want)
		}
	}
}

func TestMissingDeadLetterTopic(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := uniqueName(t)
	if err := kafka.EnsureTopic(ctx, topicURL(name), kafka.WithPartitions(1), kafka.WithoutDeadLetterTopic()); err != nil {
		t.Fatal(err)
	}
	_, err := bus.OpenSubscription(ctx, subURL(name, "g"))
	if !errors.Is(err, bus.ErrNotFound) || !strings.Contains(err.Error(), name+".dlq") {
		t.Fatalf("OpenSubscription without a dead-letter topic = %v, want ErrNotFound naming %s.dlq", err, name)
	}
	// A custom dlq parameter names another topic, which EnsureTopic creates.
	custom := subURL(name, "g") + "&dlq=" + name + "-dead"
	if err := kafka.EnsureTopic(ctx, custom); err != nil {
		t.Fatal(err)
	}
	sub, err := bus.OpenSubscription(ctx, custom)
	if err != nil {
		t.Fatalf("OpenSubscription with dlq=%s-dead: %v", name, err)
	}
	_ = sub.Close()
}

func TestUnreachableBrokers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := bus.OpenTopic(ctx, "kafka://127.0.0.1:1/t?dial_timeout=200ms")
	if err == nil {
		t.Fatal("OpenTopic of an unreachable broker succeeded")
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("OpenTopic took %v; the context allowed 2s", time.Since(start))
	}
}

// TestSessionTimeoutRejected checks that a consumer group setting the
// brokers refuse surfaces from Receive as a clear error instead of a
// silent stall.
func TestSessionTimeoutRejected(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := uniqueName(t)
	ensure(t, name, 1)
	// The package's kfake allows session timeouts from 100ms to 5m.
	sub, err := bus.OpenSubscription(ctx, topicURL(name)+"?group=g&session_timeout=50ms&heartbeat_interval=10ms")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	err = sub.Receive(ctx, func(context.Context, *bus.Message) error { return nil })
	if !errors.Is(err, bus.ErrInvalidURL) || !strings.Contains(err.Error(), "session_timeout") {
		t.Fatalf("Receive = %v, want ErrInvalidURL about session_timeout", err)
	}
}

// TestRebalanceRedeliversUnsettled has a member hold records unsettled
// while a second member joins: the rebalance drains the first member's
// claim for drain_timeout, then hands the partition over (to either
// member); the unsettled records are delivered again, the settled one is
// not, and a late settle of a drained delivery reports ErrRevoked.
func TestRebalanceRedeliversUnsettled(t *testing.T) {
	ctx := context.Background()
	name, topic := newTopic(t, 1)
	if err := topic.PublishBatch(ctx, []*bus.Message{{Body: []byte("0")}, {Body: []byte("1")}, {Body: []byte("2")}}); err != nil {
		t.Fatal(err)
	}
	u := topicURL(name) + "?group=g&session_timeout=3s&heartbeat_interval=100ms&rebalance_timeout=10s&commit_interval=100ms&drain_timeout=1s"
	a := openDriverSub(t, u)
	defer a.Close()
	held := receiveN(t, a, 3)
	if err := a.Ack(ctx, held[0]); err != nil {
		t.Fatal(err)
	}

	b := openDriverSub(t, u)
	defer b.Close()
	got := make(chan string, 16)
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, s := range []driver.Subscription{a, b} {
		go receiveAcking(rctx, s, got)
	}
	seen := map[string]bool{}
	for !seen["1"] || !seen["2"] {
		select {
		case body := <-got:
			if body == "0" {
				t.Fatalf("the acked record 0, below the commit point, was delivered again")
			}
			seen[body] = true
		case <-rctx.Done():
			t.Fatalf("unsettled records not redelivered after the rebalance; got %v", seen)
		}
	}
	if err := a.Ack(ctx, held[1]); !errors.Is(err, kafka.ErrRevoked) {
		t.Fatalf("late Ack of a drained delivery = %v, want ErrRevoked", err)
	}
}

// receiveAcking receives from s until ctx ends or s closes, sending each
// body to got and acking it.
func receiveAcking(ctx context.Context, s driver.Subscription, got chan<- string) {
	for ctx.Err() == nil {
		ms, err := s.ReceiveBatch(ctx, 10)
		if err != nil {
			return
		}
		for _, m := range ms {
			got <- string(m.Body)
			_ = s.Ack(context.Background(), m)
		}
	}
}

// TestRebalanceLeavesNoKeyBlocked ends a claim while each key has a record
// waiting behind an earlier one (per-key ordering), then gives the
// partition back to the same member: every record with those keys,
// earlier and new, is delivered. A record promoted behind a released one
// used to be released as if it were still waiting, which left its key
// blocked in that member for as long as it lived (in the soak test: a
// payment whose republished commands were never handled).
func TestRebalanceLeavesNoKeyBlocked(t *testing.T) {
	ctx := context.Background()
	name, topic := newTopic(t, 1)
	const keys = 16 // releases run in map order: 2^-16 that none hits the bug
	var ms []*bus.Message
	for round := range 2 {
		for k := range keys {
			ms = append(ms, &bus.Message{Key: fmt.Sprintf("k%02d", k), Body: fmt.Appendf(nil, "k%02d/%d", k, round)})
		}
	}
	if err := topic.PublishBatch(ctx, ms); err != nil {
		t.Fatal(err)
	}
	u := topicURL(name) + "?group=g&session_timeout=3s&heartbeat_interval=100ms&rebalance_timeout=10s&commit_interval=100ms&drain_timeout=1s"
	a := openDriverSub(t, u)
	defer a.Close()
	// The first record of each key is handed out and nacked for later; the
	// second waits behind it. Nothing is in flight when the claim ends.
	for _, m := range receiveN(t, a, keys) {
		if err := a.Nack(ctx, m, time.Hour); err != nil {
			t.Fatal(err)
		}
	}

	got := make(chan string, 4*keys)
	rctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	wait := func(want []string, what string) {
		t.Helper()
		seen := map[string]bool{}
		for _, w := range want {
			for !seen[w] {
				select {
				case body := <-got:
					seen[body] = true
				case <-rctx.Done():
					t.Fatalf("%s: %q never delivered (got %d of %d)", what, w, len(seen), len(want))
				}
			}
		}
	}
	var all []string
	for _, m := range ms {
		all = append(all, string(m.Body))
	}

	// A second member joins: a's claim ends with every record released,
	// and the partition goes to one of the two.
	b := openDriverSub(t, u)
	go receiveAcking(rctx, a, got)
	go receiveAcking(rctx, b, got)
	wait(all, "after a member joined")
	// b leaves: the partition is a's (again). Records with the same keys
	// must still go through a.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	var later []*bus.Message
	var want []string
	for k := range keys {
		body := fmt.Sprintf("k%02d/later", k)
		later = append(later, &bus.Message{Key: fmt.Sprintf("k%02d", k), Body: []byte(body)})
		want = append(want, body)
	}
	if err := topic.PublishBatch(ctx, later); err != nil {
		t.Fatal(err)
	}
	wait(want, "after the partition came back")
}
