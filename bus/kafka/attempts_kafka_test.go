package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/driver"
)

// committedOffset reads a group's committed offset and metadata for
// partition 0 of topic.
func committedOffset(t *testing.T, group, topic string) (int64, string) {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(strings.Split(brokers, ","), sarama.NewConfig())
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	defer admin.Close()
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: {0}})
	if err != nil {
		t.Fatalf("ListConsumerGroupOffsets: %v", err)
	}
	b := resp.GetBlock(topic, 0)
	if b == nil {
		t.Fatalf("no committed offset block for %s/0", topic)
	}
	return b.Offset, b.Metadata
}

// TestNackAttemptsSurviveRestartAndRebalance nacks a record three times on
// member A and closes A: member B continues at attempt 4. B nacks it with a
// long delay and member C joins the group: the rebalance drops the waiting
// record and the partition's new owner (B or C) continues at attempt 5.
func TestNackAttemptsSurviveRestartAndRebalance(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	name, topic := newTopic(t, 1)
	if err := topic.Publish(ctx, &bus.Message{ID: "poison", Key: "k", Body: []byte("p")}); err != nil {
		t.Fatal(err)
	}
	u := subURL(name, name+"-g")

	a := openDriverSub(t, u)
	for want := 1; want <= 3; want++ {
		m := receiveN(t, a, 1)[0]
		if m.ID != "poison" || m.DeliveryAttempt != want {
			t.Fatalf("member A: delivery %q at attempt %d, want poison at %d", m.ID, m.DeliveryAttempt, want)
		}
		if err := a.Nack(ctx, m, 0); err != nil {
			t.Fatalf("Nack: %v", err)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatalf("Close A: %v", err)
	}

	b := openDriverSub(t, u)
	defer b.Close()
	m := receiveN(t, b, 1)[0]
	if m.ID != "poison" || m.DeliveryAttempt != 4 {
		t.Fatalf("member B after A closed: %q at attempt %d, want poison at attempt 4", m.ID, m.DeliveryAttempt)
	}
	if err := b.Nack(ctx, m, time.Hour); err != nil {
		t.Fatalf("Nack: %v", err)
	}

	c := openDriverSub(t, u)
	defer c.Close()
	got := make(chan *driver.Message, 2)
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	for _, s := range []driver.Subscription{b, c} {
		go func() {
			for rctx.Err() == nil {
				ms, err := s.ReceiveBatch(rctx, 1)
				if err != nil {
					return
				}
				for _, m := range ms {
					got <- m
					_ = s.Ack(ctx, m)
				}
			}
		}()
	}
	select {
	case m := <-got:
		if m.ID != "poison" || m.DeliveryAttempt != 5 {
			t.Fatalf("after the rebalance: %q at attempt %d, want poison at attempt 5", m.ID, m.DeliveryAttempt)
		}
	case <-ctx.Done():
		t.Fatal("the nacked record was not delivered again after the rebalance")
	}
	rcancel()

	// Acked: the commit moves past it and drops the attempts metadata.
	deadline := time.Now().Add(10 * time.Second)
	for {
		off, meta := committedOffset(t, name+"-g", name)
		if off == 1 && meta == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("committed offset %d with metadata %q; want 1 and none", off, meta)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMaxAttemptsAcrossMembers runs a handler that always fails with
// bus.WithMaxAttempts(5) on three members in turn: A (closed after two
// deliveries), then B, then C joining B's group while the message waits for
// its retry. The message is delivered exactly five times in all, at
// attempts 1..5, then dead-lettered with payrail.dlq.attempts 5, and never
// delivered again.
func TestMaxAttemptsAcrossMembers(t *testing.T) {
	const maxAttempts = 5
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	name, topic := newTopic(t, 1)
	if err := topic.Publish(ctx, &bus.Message{ID: "poison", Key: "card-1", Body: []byte("charge")}); err != nil {
		t.Fatal(err)
	}
	u := subURL(name, name+"-g")

	type delivery struct {
		member  string
		attempt int
	}
	deliveries := make(chan delivery, 64)
	// A quick first retry; then long enough for member A to be closed,
	// and for the third member's join to rebalance the group, while the
	// message waits.
	backoff := bus.WithRetryBackoff(func(attempt int) time.Duration {
		if attempt == 1 {
			return 200 * time.Millisecond
		}
		return 3 * time.Second
	})
	start := func(member string) (stop func()) {
		sub, err := bus.OpenSubscription(ctx, u, bus.WithMaxAttempts(maxAttempts), backoff)
		if err != nil {
			t.Fatalf("open %s: %v", member, err)
		}
		rctx, rcancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- sub.Receive(rctx, func(_ context.Context, m *bus.Message) error {
				deliveries <- delivery{member, m.DeliveryAttempt}
				return fmt.Errorf("gateway declined attempt %d", m.DeliveryAttempt)
			})
		}()
		return func() {
			rcancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("%s Receive: %v", member, err)
			}
			if err := sub.Close(); err != nil {
				t.Errorf("close %s: %v", member, err)
			}
		}
	}
	next := func(what string) delivery {
		t.Helper()
		select {
		case d := <-deliveries:
			return d
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
			return delivery{}
		}
	}
	var seen []delivery

	stopA := start("A")
	for len(seen) < 2 {
		seen = append(seen, next("member A's deliveries"))
	}
	stopA()

	stopB := start("B")
	defer func() { stopB() }()
	seen = append(seen, next("member B's first delivery"))
	stopC := start("C")
	defer func() { stopC() }()

	for len(seen) < maxAttempts {
		seen = append(seen, next(fmt.Sprintf("delivery %d", len(seen)+1)))
	}
	for i, d := range seen {
		if d.attempt != i+1 {
			t.Fatalf("deliveries %v: delivery %d at attempt %d", seen, i+1, d.attempt)
		}
	}
	t.Logf("deliveries (member, attempt): %v", seen)
	if seen[0].member != "A" || seen[1].member != "A" || seen[2].member != "B" {
		t.Fatalf("deliveries %v: want the first two on A, the third on B", seen)
	}

	var dls []*bus.DeadLetter
	sub, err := bus.OpenSubscription(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for deadline := time.Now().Add(20 * time.Second); len(dls) == 0; {
		if dls, err = sub.DeadLetters(ctx, 0); err != nil {
			t.Fatalf("DeadLetters: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dead letter after %d deliveries %v", maxAttempts, seen)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(dls) != 1 || dls[0].Message.ID != "poison" || dls[0].Message.DeliveryAttempt != maxAttempts {
		t.Fatalf("dead letters %+v; want poison once, with %s=%d", dls, "payrail.dlq.attempts", maxAttempts)
	}
	// Never delivered again, whatever the members do next.
	select {
	case d := <-deliveries:
		t.Fatalf("delivered again after being dead-lettered: %v (before: %v)", d, seen)
	case <-time.After(4 * time.Second):
	}
}
