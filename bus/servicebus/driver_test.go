package servicebus_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/driver"
	"github.com/payrail/payrail/bus/servicebus"
	"github.com/payrail/payrail/internal/testkit"
)

// Behaviour beyond the conformance suite, against the same peer.

func newQueue(t *testing.T, e testkit.ServiceBusEntity) string {
	t.Helper()
	requirePeer(t)
	name := uniqueName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := peer.CreateQueue(ctx, name, e); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Delete(context.Background(), name) })
	return name
}

func openTopic(t *testing.T, u string) *bus.Topic {
	t.Helper()
	topic, err := bus.OpenTopic(context.Background(), u)
	if err != nil {
		t.Fatalf("OpenTopic(%s): %v", u, err)
	}
	t.Cleanup(func() { _ = topic.Close() })
	return topic
}

func openSub(t *testing.T, u string, opts ...bus.SubscriptionOption) *bus.Subscription {
	t.Helper()
	sub, err := bus.OpenSubscription(context.Background(), u, opts...)
	if err != nil {
		t.Fatalf("OpenSubscription(%s): %v", u, err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	return sub
}

// receive runs sub.Receive with h until the test ends.
func receive(t *testing.T, sub *bus.Subscription, h bus.Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Receive(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Receive: %v", err)
		}
	})
}

type seen struct {
	id, key string
	attempt int
	attrs   map[string]string
	at      time.Time
}

// TestMaxDeliveryCountExceeded lets the broker dead-letter: package bus
// allows more attempts than the queue's MaxDeliveryCount and nacks without
// delay (abandon), so the service moves the message to the dead-letter
// queue with reason MaxDeliveryCountExceeded after its second delivery.
func TestMaxDeliveryCountExceeded(t *testing.T) {
	q := newQueue(t, testkit.ServiceBusEntity{LockDuration: 5 * time.Second, MaxDeliveryCount: 2})
	topic := openTopic(t, "servicebus://"+q)
	sub := openSub(t, "servicebus://"+q+"?max_delivery_count=2&lock_duration=5s",
		bus.WithMaxAttempts(10), bus.WithRetryBackoff(func(int) time.Duration { return 0 }))
	m := &bus.Message{Key: "k1", Body: []byte("poison"), Attributes: map[string]string{"tenant": "acme"}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := topic.Publish(ctx, m); err != nil {
		t.Fatal(err)
	}
	attempts := make(chan int, 10)
	receive(t, sub, func(ctx context.Context, m *bus.Message) error {
		attempts <- m.DeliveryAttempt
		return errors.New("always failing")
	})
	for want := 1; want <= 2; want++ {
		select {
		case got := <-attempts:
			if got != want {
				t.Fatalf("delivery attempt %d, want %d", got, want)
			}
		case <-ctx.Done():
			t.Fatalf("no delivery %d", want)
		}
	}
	var dls []*bus.DeadLetter
	for ctx.Err() == nil {
		var err error
		if dls, err = sub.DeadLetters(ctx, 0); err != nil {
			t.Fatal(err)
		}
		if len(dls) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	dl := dls[0]
	if !strings.HasPrefix(dl.Reason, "MaxDeliveryCountExceeded") {
		t.Errorf("reason %q, want MaxDeliveryCountExceeded...", dl.Reason)
	}
	if dl.Message.ID != m.ID || dl.Message.Key != "k1" || !bytes.Equal(dl.Message.Body, m.Body) ||
		!maps.Equal(dl.Message.Attributes, m.Attributes) || dl.Message.DeliveryAttempt != 2 {
		t.Errorf("dead letter %+v, want the original message at attempt 2", dl.Message)
	}
	select {
	case a := <-attempts:
		t.Fatalf("delivered again (attempt %d) after the broker dead-lettered it", a)
	case <-time.After(500 * time.Millisecond):
	}
}

// TestDelayedNackCopies checks the scheduled copies a delayed nack sends:
// the ID, key and attributes survive, the attempts carry over, the copy
// waits its delay on the broker as a scheduled message, and Redrive of the
// dead letter starts again at attempt 1.
func TestDelayedNackCopies(t *testing.T) {
	q := newQueue(t, testkit.ServiceBusEntity{LockDuration: 5 * time.Second, MaxDeliveryCount: 10})
	topic := openTopic(t, "servicebus://"+q)
	const delay = 400 * time.Millisecond
	sub := openSub(t, "servicebus://"+q+"?lock_duration=5s",
		bus.WithMaxAttempts(3), bus.WithRetryBackoff(func(int) time.Duration { return delay }))
	m := &bus.Message{Key: "order-7", Body: []byte("retry me"), Attributes: map[string]string{"a": "1"}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := topic.Publish(ctx, m); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	isRedriven := false
	deliveries := make(chan seen, 10)
	receive(t, sub, func(ctx context.Context, msg *bus.Message) error {
		deliveries <- seen{msg.ID, msg.Key, msg.DeliveryAttempt, maps.Clone(msg.Attributes), time.Now()}
		mu.Lock()
		defer mu.Unlock()
		if isRedriven {
			return nil
		}
		return errors.New("not yet")
	})
	var got []seen
	for len(got) < 3 {
		select {
		case d := <-deliveries:
			got = append(got, d)
			if len(got) == 1 {
				// The copy waits on the broker as a scheduled message.
				waitCounts(t, ctx, q, func(c testkit.ServiceBusCounts) bool { return c.Scheduled == 1 && c.Active+c.Locked == 0 })
			}
		case <-ctx.Done():
			t.Fatalf("deliveries %+v; want 3", got)
		}
	}
	for i, d := range got {
		if d.id != m.ID || d.key != m.Key || !maps.Equal(d.attrs, m.Attributes) || d.attempt != i+1 {
			t.Errorf("delivery %d = %+v; want ID %s key %s attrs %v attempt %d", i, d, m.ID, m.Key, m.Attributes, i+1)
		}
		if i > 0 && d.at.Sub(got[i-1].at) < delay-50*time.Millisecond {
			t.Errorf("delivery %d came %v after the previous one; the nack delay is %v", i, d.at.Sub(got[i-1].at), delay)
		}
	}
	// The third attempt failed: package bus dead-lettered it.
	var dls []*bus.DeadLetter
	for ctx.Err() == nil {
		var err error
		if dls, err = sub.DeadLetters(ctx, 0); err != nil {
			t.Fatal(err)
		}
		if len(dls) == 1 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(dls) != 1 || dls[0].Message.ID != m.ID || dls[0].Message.DeliveryAttempt != 3 || !strings.Contains(dls[0].Reason, "not yet") {
		t.Fatalf("dead letters %+v; want the message at attempt 3 with the handler's error", dls)
	}
	mu.Lock()
	isRedriven = true
	mu.Unlock()
	if n, err := sub.Redrive(ctx, 0); err != nil || n != 1 {
		t.Fatalf("Redrive = %d, %v; want 1", n, err)
	}
	select {
	case d := <-deliveries:
		if d.id != m.ID || d.attempt != 1 || !maps.Equal(d.attrs, m.Attributes) || d.key != m.Key {
			t.Fatalf("redriven delivery %+v; want ID %s at attempt 1 with its key and attributes", d, m.ID)
		}
	case <-ctx.Done():
		t.Fatal("the redriven message never came")
	}
}

func waitCounts(t *testing.T, ctx context.Context, path string, ok func(testkit.ServiceBusCounts) bool) {
	t.Helper()
	var c testkit.ServiceBusCounts
	for ctx.Err() == nil {
		var err error
		if c, err = peer.Counts(ctx, path); err != nil {
			t.Fatal(err)
		}
		if ok(c) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("counts of %s: %+v", path, c)
}

// TestTopicCopyStaysWithItsSubscription nacks with a delay on one
// subscription of a topic: the copy goes through the topic, and the other
// subscription's handle drops it instead of delivering it again.
func TestTopicCopyStaysWithItsSubscription(t *testing.T) {
	requirePeer(t)
	name := uniqueName(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := peer.CreateTopic(ctx, name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Delete(context.Background(), name) })
	for _, s := range []string{"retrying", "other"} {
		if err := peer.CreateSubscription(ctx, name, s, testkit.ServiceBusEntity{LockDuration: 5 * time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	topic := openTopic(t, "servicebus://"+name)
	retrying := openSub(t, "servicebus://"+name+"?subscription=retrying&lock_duration=5s",
		bus.WithRetryBackoff(func(int) time.Duration { return 200 * time.Millisecond }))
	other := openSub(t, "servicebus://"+name+"?subscription=other&lock_duration=5s")
	var mu sync.Mutex
	var onRetrying, onOther []int
	done := make(chan struct{})
	receive(t, retrying, func(ctx context.Context, m *bus.Message) error {
		mu.Lock()
		defer mu.Unlock()
		onRetrying = append(onRetrying, m.DeliveryAttempt)
		if m.DeliveryAttempt == 1 {
			return errors.New("once more")
		}
		close(done)
		return nil
	})
	receive(t, other, func(ctx context.Context, m *bus.Message) error {
		mu.Lock()
		defer mu.Unlock()
		onOther = append(onOther, m.DeliveryAttempt)
		return nil
	})
	if err := topic.Publish(ctx, &bus.Message{Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("no redelivery on the retrying subscription")
	}
	// The copy reached "other" too; its handle completes it unseen.
	waitCounts(t, ctx, name+"/Subscriptions/other", func(c testkit.ServiceBusCounts) bool { return c.Active+c.Locked+c.Scheduled == 0 })
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(onRetrying) != "[1 2]" || fmt.Sprint(onOther) != "[1]" {
		t.Fatalf("deliveries: retrying %v, other %v; want [1 2] and [1]", onRetrying, onOther)
	}
}

func openDriverSub(t *testing.T, rawURL string) driver.Subscription {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	s, err := servicebus.Driver{}.OpenSubscription(context.Background(), u)
	if err != nil {
		t.Fatalf("OpenSubscription: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestExtendAndLockLost holds two deliveries past a 1s lock: the one
// extended for 3s stays locked and can be completed; the other is
// delivered again and completing it fails with ErrLockLost.
func TestExtendAndLockLost(t *testing.T) {
	q := newQueue(t, testkit.ServiceBusEntity{LockDuration: time.Second, MaxDeliveryCount: 10})
	topic := openTopic(t, "servicebus://"+q)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := topic.PublishBatch(ctx, []*bus.Message{{ID: "extended"}, {ID: "lapsing"}}); err != nil {
		t.Fatal(err)
	}
	s := openDriverSub(t, "servicebus://"+q+"?lock_duration=1s")
	var got []*driver.Message
	for len(got) < 2 {
		ms, err := s.ReceiveBatch(ctx, 2-len(got))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ms...)
	}
	byID := map[string]*driver.Message{got[0].ID: got[0], got[1].ID: got[1]}
	ext := s.(driver.Extender)
	if err := ext.Extend(ctx, byID["extended"], 3*time.Second); err != nil {
		t.Fatalf("Extend: %v", err)
	}
	time.Sleep(2500 * time.Millisecond)
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
	again, err := s.ReceiveBatch(rctx, 2)
	rcancel()
	if err != nil || len(again) != 1 || again[0].ID != "lapsing" || again[0].DeliveryAttempt != 2 {
		t.Fatalf("receive after the lock lapsed = %v, %v; want only %q at attempt 2", again, err, "lapsing")
	}
	if err := s.Ack(ctx, byID["extended"]); err != nil {
		t.Fatalf("Ack of the extended delivery: %v", err)
	}
	if err := s.Ack(ctx, byID["lapsing"]); !errors.Is(err, servicebus.ErrLockLost) {
		t.Fatalf("Ack of the lapsed delivery = %v, want ErrLockLost", err)
	}
	if err := s.Ack(ctx, again[0]); err != nil {
		t.Fatalf("Ack of the redelivery: %v", err)
	}
	if err := s.Ack(ctx, again[0]); !errors.Is(err, driver.ErrAlreadySettled) {
		t.Fatalf("second Ack = %v, want ErrAlreadySettled", err)
	}
}

// TestPublishBatchesAndLimits sends more than one Service Bus batch holds
// (the peer's limit is 1 MiB), refuses a message larger than that and
// attributes the driver reserves.
func TestPublishBatchesAndLimits(t *testing.T) {
	q := newQueue(t, testkit.ServiceBusEntity{LockDuration: 5 * time.Second})
	topic := openTopic(t, "servicebus://"+q)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ms []*bus.Message
	for i := range 30 {
		ms = append(ms, &bus.Message{Key: fmt.Sprint(i), Body: bytes.Repeat([]byte{byte(i)}, 100<<10)})
	}
	if err := topic.PublishBatch(ctx, ms); err != nil {
		t.Fatalf("PublishBatch of 3 MB: %v", err)
	}
	waitCounts(t, ctx, q, func(c testkit.ServiceBusCounts) bool { return c.Active == 30 })

	err := topic.Publish(ctx, &bus.Message{Body: make([]byte, 2<<20)})
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Publish of 2 MiB = %v, want a too-large error", err)
	}
	for _, name := range []string{servicebus.PropKey, servicebus.PropAttempts, "DeadLetterReason"} {
		err := topic.Publish(ctx, &bus.Message{Attributes: map[string]string{name: "x"}})
		if err == nil || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("Publish with attribute %q = %v, want a reserved-attribute error", name, err)
		}
	}
	if err := topic.Publish(ctx, &bus.Message{ID: strings.Repeat("x", 129)}); err == nil {
		t.Error("Publish with a 129-character ID succeeded")
	}
	waitCounts(t, ctx, q, func(c testkit.ServiceBusCounts) bool { return c.Active == 30 })
}

// TestAs reaches the SDK's client, sender and receiver.
func TestAs(t *testing.T) {
	q := newQueue(t, testkit.ServiceBusEntity{})
	topic := openTopic(t, "servicebus://"+q)
	sub := openSub(t, "servicebus://"+q)
	var c1, c2 *azservicebus.Client
	var snd *azservicebus.Sender
	var rcv *azservicebus.Receiver
	if !topic.As(&c1) || !topic.As(&snd) || !sub.As(&c2) || !sub.As(&rcv) {
		t.Fatal("As failed")
	}
	if c1 != c2 {
		t.Error("a topic and a subscription with the same credentials do not share their client")
	}
	var wrong *azservicebus.SessionReceiver
	if topic.As(&wrong) || sub.As(&wrong) {
		t.Error("As accepted an unsupported type")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := snd.SendMessage(ctx, &azservicebus.Message{Body: []byte("native")}, nil); err != nil {
		t.Fatal(err)
	}
	ms, err := rcv.PeekMessages(ctx, 1, nil)
	if err != nil || len(ms) != 1 || string(ms[0].Body) != "native" {
		t.Fatalf("PeekMessages = %v, %v", ms, err)
	}
}

// TestDeletedEntity: once the queue is gone, Ping and Publish fail with
// ErrNotFound.
func TestDeletedEntity(t *testing.T) {
	q := newQueue(t, testkit.ServiceBusEntity{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	topic := openTopic(t, "servicebus://"+q)
	sub := openSub(t, "servicebus://"+q)
	if err := topic.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := peer.Delete(ctx, q); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.OpenSubscription(ctx, "servicebus://"+q); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("OpenSubscription of a deleted queue = %v, want ErrNotFound", err)
	}
	err := topic.Publish(ctx, &bus.Message{Body: []byte("x")})
	if !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("Publish to a deleted queue = %v, want ErrNotFound", err)
	}
	if err := sub.Receive(ctx, func(context.Context, *bus.Message) error { return nil }); !errors.Is(err, bus.ErrNotFound) {
		t.Errorf("Receive from a deleted queue = %v, want ErrNotFound", err)
	}
}

// TestConnectionLoss: the service closes every connection (an update, a
// gateway failover). The SDK reconnects; publishing and receiving go on,
// and closing handles whose links died with the connection is not an
// error (nothing is left to flush: sends are synchronous).
func TestConnectionLoss(t *testing.T) {
	q := newQueue(t, testkit.ServiceBusEntity{LockDuration: 2 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic, err := bus.OpenTopic(ctx, "servicebus://"+q)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := bus.OpenSubscription(ctx, "servicebus://"+q)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 8)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- sub.Receive(rctx, func(_ context.Context, m *bus.Message) error {
			got <- string(m.Body)
			return nil
		})
	}()
	next := func(want string) {
		t.Helper()
		select {
		case b := <-got:
			if b != want {
				t.Fatalf("received %q, want %q", b, want)
			}
		case <-ctx.Done():
			t.Fatalf("%q was not received", want)
		}
	}
	if err := topic.Publish(ctx, &bus.Message{Body: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	next("before")

	n, err := peer.DropConnections(ctx)
	if err != nil || n == 0 {
		t.Fatalf("DropConnections = %d, %v", n, err)
	}
	t0 := time.Now()
	if err := topic.Publish(ctx, &bus.Message{Body: []byte("after")}); err != nil {
		t.Fatalf("Publish after the connection was lost: %v", err)
	}
	t.Logf("published %v after the connection was lost", time.Since(t0).Round(time.Millisecond))
	next("after")
	t.Logf("received %v after", time.Since(t0).Round(time.Millisecond))

	// Lose it again, then close: the handles' links are already gone.
	if _, err := peer.DropConnections(ctx); err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	stop()
	if err := <-done; err != nil {
		t.Errorf("Receive = %v", err)
	}
	t.Logf("Receive returned %v after its context ended", time.Since(t0).Round(time.Millisecond))
	if err := sub.Close(); err != nil {
		t.Errorf("Subscription.Close after the connection was lost = %v, want nil", err)
	}
	if err := topic.Shutdown(ctx); err != nil {
		t.Errorf("Topic.Shutdown after the connection was lost = %v, want nil", err)
	}
}
