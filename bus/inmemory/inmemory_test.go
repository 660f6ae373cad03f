package inmemory_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/inmemory"
)

func TestRegistered(t *testing.T) {
	if !slices.Contains(bus.Drivers(), "inmemory") {
		t.Fatalf("bus.Drivers() = %v, want it to contain inmemory", bus.Drivers())
	}
}

func TestRoundTrip(t *testing.T) {
	name := uniqueName(t)
	topic := openTopic(t, "inmemory://"+name)
	sub := openSub(t, "inmemory://"+name, bus.WithConcurrency(1))

	body := []byte{0x00, 0xff, 0xfe, 0xc3, 0x28, 0x80, '\n', 0x00} // not UTF-8
	for i := range 256 {
		body = append(body, byte(i))
	}
	attrs := map[string]string{"tenant": "acme", "empty": "", "unicode": "ünï"}
	in := &bus.Message{ID: "order-42", Key: "acct-7", Body: bytes.Clone(body), Attributes: maps.Clone(attrs)}
	bare := &bus.Message{} // no ID, body or attributes

	before := time.Now()
	publish(t, topic, in, bare)
	after := time.Now()
	if bare.ID == "" {
		t.Fatal("Publish did not assign an ID")
	}
	// The publisher reuses its buffers; the stored message must not change.
	in.Body[0] = 'X'
	in.Attributes["tenant"] = "mallory"
	in.Attributes["extra"] = "1"

	got := collect(t, sub, 2)
	m := got[0]
	if m.ID != "order-42" || m.Key != "acct-7" {
		t.Errorf("ID, Key = %q, %q; want order-42, acct-7", m.ID, m.Key)
	}
	if !bytes.Equal(m.Body, body) {
		t.Errorf("Body = %x, want %x", m.Body, body)
	}
	if !maps.Equal(m.Attributes, attrs) {
		t.Errorf("Attributes = %v, want %v", m.Attributes, attrs)
	}
	if m.Attempt != 1 {
		t.Errorf("DeliveryAttempt = %d, want 1", m.Attempt)
	}
	if m.PublishTime.Before(before) || m.PublishTime.After(after) {
		t.Errorf("PublishTime = %v, want within [%v, %v]", m.PublishTime, before, after)
	}
	if e := got[1]; e.ID != bare.ID || len(e.Body) != 0 || len(e.Attributes) != 0 || e.Key != "" {
		t.Errorf("bare message = %+v, want ID %q and nothing else", e, bare.ID)
	}
	wantStats(t, sub, bus.Stats{})
}

func TestLargeBody(t *testing.T) {
	name := uniqueName(t)
	topic := openTopic(t, "inmemory://"+name)
	sub := openSub(t, "inmemory://"+name)

	body := make([]byte, 256<<10)
	rng := rand.NewChaCha8([32]byte{1, 2, 3})
	_, _ = rng.Read(body)
	publish(t, topic, &bus.Message{Body: body})
	got := collect(t, sub, 1)
	if !bytes.Equal(got[0].Body, body) {
		t.Fatalf("256 KiB body changed in transit (got %d bytes)", len(got[0].Body))
	}
}

// A handler that mutates its message must not corrupt the stored copy seen
// by a redelivery or by another subscription.
func TestDeliveriesAreIsolatedCopies(t *testing.T) {
	name := uniqueName(t)
	topic := openTopic(t, "inmemory://"+name)
	sub := openSub(t, "inmemory://"+name, bus.WithRetryBackoff(func(int) time.Duration { return time.Millisecond }))
	audit := openSub(t, "inmemory://"+name+"?subscription=audit")
	publish(t, topic, &bus.Message{Body: []byte("original"), Attributes: map[string]string{"a": "1"}})

	second := make(chan received, 1)
	startReceive(t, sub, func(_ context.Context, m *bus.Message) error {
		if m.DeliveryAttempt == 1 {
			copy(m.Body, "CORRUPT!")
			m.Attributes["a"] = "changed"
			return errors.New("retry me")
		}
		second <- snapshot(m)
		return nil
	})
	r := await(t, second, "redelivery")
	if string(r.Body) != "original" || r.Attributes["a"] != "1" || r.Attempt != 2 {
		t.Errorf("redelivery = body %q attrs %v attempt %d; want original, a=1, 2", r.Body, r.Attributes, r.Attempt)
	}
	a := collect(t, audit, 1)[0]
	if string(a.Body) != "original" || a.Attributes["a"] != "1" {
		t.Errorf("fan-out copy = body %q attrs %v; want original, a=1", a.Body, a.Attributes)
	}
}

func TestCompetingConsumers(t *testing.T) {
	const publishers, perPublisher = 4, 500
	const total = publishers * perPublisher
	name := uniqueName(t)
	topic := openTopic(t, "inmemory://"+name)
	// Two handles on the same subscription, one running two Receive loops.
	subA := openSub(t, "inmemory://"+name, bus.WithConcurrency(4))
	subB := openSub(t, "inmemory://"+name, bus.WithConcurrency(4))

	var mu sync.Mutex
	seen := map[string]int{}
	var handled atomic.Int64
	done := make(chan struct{})
	h := func(_ context.Context, m *bus.Message) error {
		mu.Lock()
		seen[m.ID]++
		mu.Unlock()
		if handled.Add(1) == total {
			close(done)
		}
		return nil
	}
	stops := []func() error{startReceive(t, subA, h), startReceive(t, subA, h), startReceive(t, subB, h)}

	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range perPublisher {
				m := &bus.Message{ID: fmt.Sprintf("p%d-%d", p, i), Body: []byte{byte(i)}}
				if err := topic.Publish(context.Background(), m); err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	await(t, done, "all messages handled")
	for _, stop := range stops {
		if err := stop(); err != nil {
			t.Fatalf("Receive: %v", err)
		}
	}
	if n := handled.Load(); n != total {
		t.Fatalf("handled %d deliveries, want exactly %d", n, total)
	}
	if len(seen) != total {
		t.Fatalf("handled %d distinct messages, want %d", len(seen), total)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("message %s handled %d times", id, n)
		}
	}
	wantStats(t, subA, bus.Stats{})
}

func TestFanOut(t *testing.T) {
	name := uniqueName(t)
	topic := openTopic(t, "inmemory://"+name)
	one := bus.WithConcurrency(1) // handle in delivery order
	audit := openSub(t, "inmemory://"+name+"?subscription=audit", one)
	publish(t, topic, &bus.Message{ID: "first"})
	late := openSub(t, "inmemory://"+name+"?subscription=late", one)
	publish(t, topic, &bus.Message{ID: "second"})
	// The default subscription exists since the topic was created, so it
	// kept both messages although nobody had opened it.
	def := openSub(t, "inmemory://"+name, one)

	for _, tc := range []struct {
		name string
		sub  *bus.Subscription
		want []string
	}{
		{"default", def, []string{"first", "second"}},
		{"audit", audit, []string{"first", "second"}},
		{"late", late, []string{"second"}},
	} {
		got := collect(t, tc.sub, len(tc.want))
		var gotIDs []string
		for _, m := range got {
			gotIDs = append(gotIDs, m.ID)
		}
		if !slices.Equal(gotIDs, tc.want) {
			t.Errorf("%s subscription received %v, want %v", tc.name, gotIDs, tc.want)
		}
		wantStats(t, tc.sub, bus.Stats{})
	}
}

func TestCreateFalse(t *testing.T) {
	ctx := context.Background()
	name := uniqueName(t)
	for _, u := range []string{
		"inmemory://" + name + "?create=false",
	} {
		if _, err := bus.OpenTopic(ctx, u); !errors.Is(err, bus.ErrNotFound) {
			t.Errorf("OpenTopic(%q) error = %v, want ErrNotFound", u, err)
		}
		if _, err := bus.OpenSubscription(ctx, u); !errors.Is(err, bus.ErrNotFound) {
			t.Errorf("OpenSubscription(%q) error = %v, want ErrNotFound", u, err)
		}
	}
	if _, err := bus.OpenSubscription(ctx, "inmemory://"+name+"?subscription=s&create=false"); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("named subscription of a missing topic: error = %v, want ErrNotFound", err)
	}
	// The failed opens created nothing.
	if _, err := bus.OpenTopic(ctx, "inmemory://"+name+"?create=false"); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("topic exists after failed opens: %v", err)
	}

	openTopic(t, "inmemory://"+name)
	openTopic(t, "inmemory://"+name+"?create=false")
	openSub(t, "inmemory://"+name+"?create=false")
	if _, err := bus.OpenSubscription(ctx, "inmemory://"+name+"?subscription=s&create=false"); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("missing named subscription: error = %v, want ErrNotFound", err)
	}
	openSub(t, "inmemory://"+name+"?subscription=s")
	openSub(t, "inmemory://"+name+"?subscription=s&create=false")
}

func TestInvalidURL(t *testing.T) {
	ctx := context.Background()
	subURLs := []string{
		"inmemory://",
		"inmemory:///path-only",
		"inmemory:opaque",
		"inmemory://t/extra/path",
		"inmemory://user@t",
		"inmemory://t#fragment",
		"inmemory://t?bogus=1",
		"inmemory://t?ack_deadline=soon",
		"inmemory://t?ack_deadline=0s",
		"inmemory://t?ack_deadline=-1s",
		"inmemory://t?max_attempts=-1",
		"inmemory://t?max_attempts=two",
		"inmemory://t?ordered=maybe",
		"inmemory://t?create=perhaps",
		"inmemory://t?subscription=",
		"inmemory://t?ack_deadline=1s&ack_deadline=2s",
		"inmemory://t?a=%zz",
	}
	for _, u := range subURLs {
		if _, err := bus.OpenSubscription(ctx, u); !errors.Is(err, bus.ErrInvalidURL) {
			t.Errorf("OpenSubscription(%q) error = %v, want ErrInvalidURL", u, err)
		}
	}
	topicURLs := []string{
		"inmemory://",
		"inmemory://t?subscription=s", // subscription settings are not topic parameters
		"inmemory://t?ack_deadline=1s",
		"inmemory://t?create=perhaps",
		"inmemory://t/x",
	}
	for _, u := range topicURLs {
		if _, err := bus.OpenTopic(ctx, u); !errors.Is(err, bus.ErrInvalidURL) {
			t.Errorf("OpenTopic(%q) error = %v, want ErrInvalidURL", u, err)
		}
	}
}

func TestCapabilitiesAndSettings(t *testing.T) {
	name := uniqueName(t)
	def := openSub(t, "inmemory://"+name)
	want := bus.Capabilities{
		Ordering: true, FanOut: true, NackDelay: true, Extend: true, DeadLetterQueue: true, Stats: true,
		AckDeadline: inmemory.DefaultAckDeadline,
		MaxAttempts: 10, // the driver has no limit, so package bus applies its default
	}
	if got := def.Capabilities(); got != want {
		t.Errorf("default Capabilities = %+v, want %+v", got, want)
	}

	u := "inmemory://" + name + "?subscription=s&ack_deadline=250ms&max_attempts=3&ordered=false"
	s := openSub(t, u)
	want.AckDeadline, want.MaxAttempts, want.Ordering = 250*time.Millisecond, 3, false
	if got := s.Capabilities(); got != want {
		t.Errorf("Capabilities of %s = %+v, want %+v", u, got, want)
	}
	// Reopening without parameters keeps the settings; parameters update them.
	if got := openSub(t, "inmemory://"+name+"?subscription=s").Capabilities(); got != want {
		t.Errorf("Capabilities after reopening = %+v, want %+v", got, want)
	}
	s2 := openSub(t, "inmemory://"+name+"?subscription=s&max_attempts=5&ordered=true")
	want.MaxAttempts, want.Ordering = 5, true
	if got := s2.Capabilities(); got != want {
		t.Errorf("Capabilities after update = %+v, want %+v", got, want)
	}
	// The other subscription of the topic is unaffected.
	if got := def.Capabilities().AckDeadline; got != inmemory.DefaultAckDeadline {
		t.Errorf("default subscription AckDeadline = %v after updating another one", got)
	}
}

func TestStats(t *testing.T) {
	name := uniqueName(t)
	topic := openTopic(t, "inmemory://"+name)
	sub := openSub(t, "inmemory://"+name, bus.WithConcurrency(1))
	publish(t, topic, &bus.Message{ID: "a"}, &bus.Message{ID: "b"}, &bus.Message{ID: "c"})
	wantStats(t, sub, bus.Stats{Backlog: 3})

	started := make(chan string)
	release := make(chan error)
	stop := startReceive(t, sub, func(ctx context.Context, m *bus.Message) error {
		started <- m.ID
		err, ok := within(release)
		if !ok {
			return errors.New("test gave up")
		}
		if err != nil {
			return m.Nack(ctx, time.Hour)
		}
		return nil
	})
	await(t, started, "first delivery")
	wantStats(t, sub, bus.Stats{Backlog: 2, InFlight: 1})
	release <- errors.New("nack") // nacked with a delay: still backlog
	await(t, started, "second delivery")
	wantStats(t, sub, bus.Stats{Backlog: 2, InFlight: 1})
	release <- nil
	await(t, started, "third delivery")
	release <- nil
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	wantStats(t, sub, bus.Stats{Backlog: 1}) // the delayed one
}

func TestAsAndPing(t *testing.T) {
	ctx := context.Background()
	name := uniqueName(t)
	topic := openTopic(t, "inmemory://"+name)
	sub := openSub(t, "inmemory://"+name)
	var tb, sb *inmemory.Broker
	if !topic.As(&tb) || tb == nil {
		t.Fatal("Topic.As(**Broker) failed")
	}
	if !sub.As(&sb) || sb != tb {
		t.Fatal("Subscription.As(**Broker) did not return the topic's broker")
	}
	var wrong *string
	if topic.As(&wrong) || sub.As(&wrong) || sub.As(nil) {
		t.Error("As accepted an unsupported type")
	}
	if err := topic.Ping(ctx); err != nil {
		t.Errorf("Topic.Ping: %v", err)
	}
	if err := sub.Ping(ctx); err != nil {
		t.Errorf("Subscription.Ping: %v", err)
	}
	_ = topic.Close()
	_ = sub.Close()
	if err := topic.Ping(ctx); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Topic.Ping after Close = %v, want ErrClosed", err)
	}
	if err := sub.Ping(ctx); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("Subscription.Ping after Close = %v, want ErrClosed", err)
	}
}

func TestBrokerConstructors(t *testing.T) {
	ctx := context.Background()
	name := uniqueName(t)
	b := inmemory.NewBroker()
	topic, err := inmemory.NewTopic(b, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = topic.Close() })
	def, err := inmemory.NewSubscription(b, name, "", bus.WithConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = def.Close() })
	named, err := inmemory.NewSubscription(b, name, "audit")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = named.Close() })
	var got *inmemory.Broker
	if !topic.As(&got) || got != b {
		t.Error("NewTopic's topic does not belong to the broker")
	}

	publish(t, topic, &bus.Message{ID: "x"})
	if r := collect(t, def, 1); r[0].ID != "x" {
		t.Errorf("default subscription got %q", r[0].ID)
	}
	if r := collect(t, named, 1); r[0].ID != "x" {
		t.Errorf("named subscription got %q", r[0].ID)
	}
	// The process-wide broker behind bus.OpenTopic is a different broker.
	if _, err := bus.OpenTopic(ctx, "inmemory://"+name+"?create=false"); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("topic of a NewBroker broker visible through the default broker: %v", err)
	}
	if _, err := inmemory.NewTopic(b, ""); !errors.Is(err, bus.ErrInvalidURL) {
		t.Errorf("NewTopic with an empty name: %v, want ErrInvalidURL", err)
	}
	if _, err := inmemory.NewSubscription(nil, name, ""); err == nil {
		t.Error("NewSubscription with a nil broker succeeded")
	}
	var zero inmemory.Broker // the zero value is usable
	zt, err := inmemory.NewTopic(&zero, name)
	if err != nil {
		t.Fatalf("NewTopic on a zero Broker: %v", err)
	}
	if err := zt.Publish(ctx, &bus.Message{}); err != nil {
		t.Fatalf("Publish on a zero Broker: %v", err)
	}
}
