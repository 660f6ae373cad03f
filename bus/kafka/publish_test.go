package kafka_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/kafka"
)

// ownCluster starts a one-broker kfake cluster with a 4-partition topic,
// for tests that watch or hold the produce requests (control functions
// act on every request of a cluster, so these tests do not share the
// package's).
func ownCluster(t *testing.T, topic string) (*kfake.Cluster, string) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, strings.Join(c.ListenAddrs(), ",")
}

// readAll reads the n records of topic (all partitions, from the start)
// with a raw sarama consumer.
func readAll(t *testing.T, addrs, topic string, n int) []*sarama.ConsumerMessage {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = kafka.DefaultVersion
	c, err := sarama.NewConsumer(strings.Split(addrs, ","), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	parts, err := c.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan *sarama.ConsumerMessage, n+1)
	for _, p := range parts {
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		go func() {
			for m := range pc.Messages() {
				out <- m
			}
		}()
	}
	var got []*sarama.ConsumerMessage
	timeout := time.After(30 * time.Second)
	for len(got) < n {
		select {
		case m := <-out:
			got = append(got, m)
		case <-timeout:
			t.Fatalf("read %d of %d records", len(got), n)
		}
	}
	select {
	case m := <-out:
		t.Fatalf("more than %d records: also offset %d of partition %d", n, m.Offset, m.Partition)
	case <-time.After(300 * time.Millisecond):
	}
	return got
}

// TestConcurrentPublishesShareBatches publishes from many goroutines at
// once, single messages and batches of every shape (keyed or not, with
// attributes or not, empty bodies), and checks that the concurrent calls
// went out together in the producer's batches, not one produce request per
// call, and that each record is exactly what was published: key (null when
// empty), value, the payrail.id header first and the attributes after it
// in name order.
func TestConcurrentPublishesShareBatches(t *testing.T) {
	const name = "shared"
	c, addrs := ownCluster(t, name)
	var requests atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		requests.Add(1)
		return nil, nil, false // observe only: the cluster handles it
	})
	topic, err := bus.OpenTopic(context.Background(), "kafka://"+addrs+"/"+name)
	if err != nil {
		t.Fatal(err)
	}
	defer topic.Close()

	const workers, rounds = 32, 10
	want := map[string]*bus.Message{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			ctx := context.Background()
			for r := range rounds {
				// Even workers publish singly, odd ones batches of 1 to 5.
				n := 1
				if w%2 == 1 {
					n = 1 + r%5
				}
				ms := make([]*bus.Message, n)
				for i := range ms {
					id := fmt.Sprintf("w%d-r%d-%d", w, r, i)
					m := &bus.Message{ID: id, Body: []byte("body of " + id)}
					if i%2 == 0 {
						m.Key = "key-" + strconv.Itoa(w)
					}
					if r%3 == 0 {
						m.Attributes = map[string]string{"zeta": id, "alpha": "", "mid": "ü✓"}
					}
					if r == rounds-1 && i == 0 {
						m.Body = nil
					}
					ms[i] = m
				}
				if err := topic.PublishBatch(ctx, ms); err != nil {
					t.Errorf("worker %d round %d: %v", w, r, err)
					return
				}
				mu.Lock()
				for _, m := range ms {
					want[m.ID] = m
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	total := len(want)
	if n := requests.Load(); n*2 > int64(total) {
		t.Errorf("%d produce requests for %d records from %d concurrent publishers: the calls do not share the producer's batches", n, total, workers)
	} else {
		t.Logf("%d records in %d produce requests", total, n)
	}

	for _, rec := range readAll(t, addrs, name, total) {
		if len(rec.Headers) == 0 || string(rec.Headers[0].Key) != kafka.HeaderID {
			t.Fatalf("record at %d/%d: first header is not %s: %v", rec.Partition, rec.Offset, kafka.HeaderID, rec.Headers)
		}
		id := string(rec.Headers[0].Value)
		m := want[id]
		if m == nil {
			t.Fatalf("unexpected or duplicate record %q", id)
		}
		delete(want, id)
		if m.Key == "" && rec.Key != nil || string(rec.Key) != m.Key {
			t.Errorf("%s: key %q (nil %v), want %q", id, rec.Key, rec.Key == nil, m.Key)
		}
		if !bytes.Equal(rec.Value, m.Body) {
			t.Errorf("%s: value %q, want %q", id, rec.Value, m.Body)
		}
		var got []string
		for _, h := range rec.Headers[1:] {
			got = append(got, string(h.Key)+"="+string(h.Value))
		}
		var exp []string
		if m.Attributes != nil {
			exp = []string{"alpha=", "mid=ü✓", "zeta=" + id}
		}
		if strings.Join(got, ",") != strings.Join(exp, ",") {
			t.Errorf("%s: headers after the ID %q, want %q", id, got, exp)
		}
	}
}

// holdProduce makes the cluster hold every produce request until release
// is closed, and reports on held when the first one arrives.
func holdProduce(c *kfake.Cluster) (held <-chan struct{}, release func()) {
	heldc, releasec := make(chan struct{}), make(chan struct{})
	var once sync.Once
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		once.Do(func() { close(heldc) })
		c.SleepControl(func() { <-releasec })
		return nil, nil, false
	})
	var rel sync.Once
	return heldc, func() { rel.Do(func() { close(releasec) }) }
}

// TestPublishCancelledWhileWaiting cancels a Publish waiting for its
// acknowledgement: it returns the context's error at once; the record,
// already handed to the producer, is still published, and the topic keeps
// working (the abandoned call's completion is not reused by later ones).
func TestPublishCancelledWhileWaiting(t *testing.T) {
	const name = "cancel"
	c, addrs := ownCluster(t, name)
	topic, err := bus.OpenTopic(context.Background(), "kafka://"+addrs+"/"+name)
	if err != nil {
		t.Fatal(err)
	}
	defer topic.Close()
	held, release := holdProduce(c)
	defer release()

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- topic.Publish(ctx, &bus.Message{ID: "cancelled", Key: "k", Body: []byte("a")}) }()
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the produce request never reached the broker")
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Publish = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Publish did not return after its context was cancelled")
	}
	release()
	for i := range 20 {
		if err := topic.Publish(context.Background(), &bus.Message{ID: "after-" + strconv.Itoa(i), Key: "k", Body: []byte("b")}); err != nil {
			t.Fatalf("Publish after a cancelled one: %v", err)
		}
	}
	ids := map[string]bool{}
	for _, rec := range readAll(t, addrs, name, 21) {
		ids[string(rec.Headers[0].Value)] = true
	}
	if !ids["cancelled"] || !ids["after-19"] {
		t.Errorf("records stored: %v; want the cancelled one and those after it", ids)
	}
}

// TestShutdownCompletesPublishesUnderWay shuts a topic down while
// publishes wait for their acknowledgements: Shutdown gives up at its
// deadline, the publishes keep waiting and succeed once the broker
// answers (a 202 may depend on them), the topic is then released, later
// publishes fail with ErrClosed, and no goroutine is left behind.
// Publishers that only called Publish after Shutdown began get ErrClosed
// at once.
func TestShutdownCompletesPublishesUnderWay(t *testing.T) {
	const name = "shutdown"
	c, addrs := ownCluster(t, name)
	before := runtime.NumGoroutine()
	topic, err := bus.OpenTopic(context.Background(), "kafka://"+addrs+"/"+name)
	if err != nil {
		t.Fatal(err)
	}
	held, release := holdProduce(c)
	defer release()

	const n = 8
	errc := make(chan error, n)
	for i := range n {
		go func() {
			errc <- topic.Publish(context.Background(), &bus.Message{ID: "inflight-" + strconv.Itoa(i), Key: strconv.Itoa(i), Body: []byte("x")})
		}()
	}
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("the produce request never reached the broker")
	}
	sctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := topic.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with publishes held at the broker = %v, want DeadlineExceeded", err)
	}
	if err := topic.Publish(context.Background(), &bus.Message{Body: []byte("late")}); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Publish during Shutdown = %v, want ErrClosed", err)
	}
	// A publisher goroutine that only called Publish after Shutdown began
	// got ErrClosed; one under way must not return before the broker
	// answers.
	late := 0
drain:
	for {
		select {
		case err := <-errc:
			if !errors.Is(err, bus.ErrClosed) {
				t.Fatalf("a Publish returned (%v) before the broker acknowledged it", err)
			}
			late++
		default:
			break drain
		}
	}
	release()
	acked := 0
	for range n - late {
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Publish under way at Shutdown = %v, want nil (acknowledged)", err)
			} else {
				acked++
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a Publish under way never returned")
		}
	}
	if acked == 0 {
		t.Fatal("no Publish was under way at Shutdown")
	}
	if err := topic.Close(); err != nil {
		t.Errorf("Close after Shutdown = %v, want nil", err)
	}
	if got := len(readAll(t, addrs, name, acked)); got != acked {
		t.Errorf("%d records stored, want the %d acknowledged", got, acked)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before the topic was opened, %d after it was closed:\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

// TestSaramaMetrics checks that the driver's sarama clients keep no
// go-metrics unless the URL asks for them with sarama_metrics=true.
func TestSaramaMetrics(t *testing.T) {
	ctx := context.Background()
	name := uniqueName(t)
	ensure(t, name, 1)
	for _, keep := range []bool{false, true} {
		u := topicURL(name)
		if keep {
			u += "?sarama_metrics=true"
		}
		topic, err := bus.OpenTopic(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		if err := topic.Publish(ctx, &bus.Message{Body: []byte("m")}); err != nil {
			t.Fatal(err)
		}
		var client sarama.Client
		if !topic.As(&client) {
			t.Fatal("As(*sarama.Client) failed")
		}
		n := 0
		client.Config().MetricRegistry.Each(func(string, any) { n++ })
		if keep && n == 0 {
			t.Error("sarama_metrics=true: the registry is empty after a publish")
		}
		if !keep && n != 0 {
			t.Errorf("default: the registry holds %d metrics, want none", n)
		}
		if err := topic.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
