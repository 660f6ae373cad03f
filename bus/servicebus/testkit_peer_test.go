package servicebus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/payrail/payrail/internal/testkit"
)

// TestServiceBusPeer checks internal/testkit's Service Bus test peer: its
// admin channel and a few of its Service Bus behaviours through the real
// SDK; the driver's other tests exercise the rest. It lives in this module
// rather than in internal/testkit so that the SDK core module does not
// require azservicebus.
func TestServiceBusPeer(t *testing.T) {
	p, err := testkit.StartServiceBusPeer()
	testkit.StoreRequirePeer(t, "the Service Bus test peer (python3-qpid-proton)", err)
	defer p.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if err := p.CreateQueue(ctx, "Orders", testkit.ServiceBusEntity{LockDuration: time.Second, MaxDeliveryCount: 2}); err != nil {
		t.Fatal(err)
	}
	if err := p.CreateQueue(ctx, "orders", testkit.ServiceBusEntity{}); err == nil {
		t.Error("creating a queue twice (names are case-insensitive) succeeded")
	}
	if err := p.CreateSubscription(ctx, "no-such-topic", "s", testkit.ServiceBusEntity{}); err == nil {
		t.Error("creating a subscription of a missing topic succeeded")
	}
	if _, err := p.Counts(ctx, "missing"); err == nil {
		t.Error("counts of a missing queue succeeded")
	}

	c, err := azservicebus.NewClientFromConnectionString(p.ConnectionString, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	s, err := c.NewSender("orders", nil)
	if err != nil {
		t.Fatal(err)
	}
	id := "m1"
	if err := s.SendMessage(ctx, &azservicebus.Message{MessageID: &id, Body: []byte("hello"),
		ApplicationProperties: map[string]any{"a": "b"}}, nil); err != nil {
		t.Fatal(err)
	}
	seqs, err := s.ScheduleMessages(ctx, []*azservicebus.Message{{Body: []byte("later")}}, time.Now().Add(time.Hour), nil)
	if err != nil || len(seqs) != 1 {
		t.Fatalf("ScheduleMessages = %v, %v", seqs, err)
	}
	if got, err := p.Counts(ctx, "ORDERS"); err != nil || got != (testkit.ServiceBusCounts{Active: 1, Scheduled: 1}) {
		t.Fatalf("counts = %+v, %v; want 1 active, 1 scheduled", got, err)
	}
	if err := s.CancelScheduledMessages(ctx, seqs, nil); err != nil {
		t.Fatal(err)
	}

	r, err := c.NewReceiverForQueue("orders", nil)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := r.ReceiveMessages(ctx, 1, nil)
	if err != nil || len(ms) != 1 {
		t.Fatalf("ReceiveMessages = %v, %v", ms, err)
	}
	m := ms[0]
	if m.MessageID != "m1" || string(m.Body) != "hello" || m.ApplicationProperties["a"] != "b" ||
		m.DeliveryCount != 1 || m.LockedUntil == nil || m.SequenceNumber == nil || m.EnqueuedTime == nil {
		t.Fatalf("received %+v", m)
	}
	before := *m.LockedUntil
	time.Sleep(10 * time.Millisecond)
	if err := r.RenewMessageLock(ctx, m, nil); err != nil || !m.LockedUntil.After(before) {
		t.Fatalf("RenewMessageLock = %v; locked until %v, was %v", err, m.LockedUntil, before)
	}
	if err := r.AbandonMessage(ctx, m, nil); err != nil {
		t.Fatal(err)
	}
	// Second delivery; let its 1s lock lapse: MaxDeliveryCount 2 is reached.
	ms, err = r.ReceiveMessages(ctx, 1, nil)
	if err != nil || len(ms) != 1 || ms[0].DeliveryCount != 2 {
		t.Fatalf("redelivery = %v, %v", ms, err)
	}
	time.Sleep(1500 * time.Millisecond)
	var sbe *azservicebus.Error
	if err := r.CompleteMessage(ctx, ms[0], nil); !errors.As(err, &sbe) || sbe.Code != azservicebus.CodeLockLost {
		t.Fatalf("Complete after the lock lapsed = %v, want a lock-lost error", err)
	}
	dlq, err := c.NewReceiverForQueue("orders", &azservicebus.ReceiverOptions{SubQueue: azservicebus.SubQueueDeadLetter})
	if err != nil {
		t.Fatal(err)
	}
	dls, err := dlq.PeekMessages(ctx, 10, nil)
	if err != nil || len(dls) != 1 {
		t.Fatalf("dead letters = %v, %v", dls, err)
	}
	if dl := dls[0]; dl.DeadLetterReason == nil || *dl.DeadLetterReason != "MaxDeliveryCountExceeded" ||
		dl.DeadLetterSource == nil || dl.MessageID != "m1" {
		t.Fatalf("dead letter %+v", dl)
	}
	if got, err := p.Counts(ctx, "orders"); err != nil || got != (testkit.ServiceBusCounts{DeadLetters: 1}) {
		t.Fatalf("counts = %+v, %v; want only 1 dead letter", got, err)
	}

	// A missing entity: the attach is refused with amqp:not-found.
	missing, err := c.NewSender("missing", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := missing.SendMessage(ctx, &azservicebus.Message{Body: []byte("x")}, nil); err == nil {
		t.Fatal("send to a missing queue succeeded")
	}

	p.Stop()
	if err := p.CreateTopic(ctx, "after-stop"); err == nil {
		t.Error("admin command after Stop succeeded")
	}
}
