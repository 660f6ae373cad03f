package inmemory

import (
	"bytes"
	"context"
	"net/url"
	"runtime"
	"testing"
	"time"
	"weak"

	"github.com/payrail/payrail/bus/driver"
)

// TestDeadLetterReleasesItsBatch publishes a batch (whose messages, bodies
// and entries share allocations), dead-letters one message and acks the
// others: once they are acked the batch's allocations are freed, although
// the dead letter stays, intact, in the dead-letter queue.
func TestDeadLetterReleasesItsBatch(t *testing.T) {
	ctx := context.Background()
	b := NewBroker()
	u, _ := url.Parse("inmemory://slab")
	dt, err := b.OpenTopic(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := b.OpenSubscription(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	sub := ds.(*subHandle)

	const n = 64
	ms := make([]*driver.Message, n)
	for i := range ms {
		ms[i] = &driver.Message{ID: "m" + string(rune('A'+i)), Key: "k", Body: bytes.Repeat([]byte{byte(i)}, 1024), Attributes: map[string]string{"i": string(rune('A' + i))}}
	}
	if err := dt.SendBatch(ctx, ms); err != nil {
		t.Fatal(err)
	}
	_ = dt.Close()
	// Weak pointers to the batch's slabs: its first message, whose body
	// starts the bodies' buffer, and its first entry.
	sub.s.mu.Lock()
	first := sub.s.ready.at(0)
	wEntry, wMsg, wBody := weak.Make(first), weak.Make(first.msg), weak.Make(&first.msg.body[0])
	sub.s.mu.Unlock()
	first = nil

	// Ordered by key: one message at a time. Dead-letter the 10th.
	for i := range n {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		got, err := ds.ReceiveBatch(ctx, 1)
		cancel()
		if err != nil || len(got) != 1 {
			t.Fatalf("ReceiveBatch %d: %v, %v", i, got, err)
		}
		if i == 10 {
			err = ds.DeadLetter(ctx, got[0], "poison")
		} else {
			err = ds.Ack(ctx, got[0])
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.GC()
	if wEntry.Value() != nil || wMsg.Value() != nil || wBody.Value() != nil {
		t.Errorf("the batch's allocations are still alive with only its dead letter kept (entries %v, messages %v, bodies %v)",
			wEntry.Value() != nil, wMsg.Value() != nil, wBody.Value() != nil)
	}
	dls, err := sub.PeekDeadLetters(ctx, 0)
	if err != nil || len(dls) != 1 {
		t.Fatalf("PeekDeadLetters = %v, %v; want the one dead letter", dls, err)
	}
	dl := dls[0].Message
	if dl.ID != ms[10].ID || dl.Key != "k" || !bytes.Equal(dl.Body, ms[10].Body) || dl.Attributes["i"] != ms[10].Attributes["i"] || dl.DeliveryAttempt != 1 {
		t.Errorf("dead letter %q key %q attrs %v attempt %d: body equal %v; want %q intact", dl.ID, dl.Key, dl.Attributes, dl.DeliveryAttempt, bytes.Equal(dl.Body, ms[10].Body), ms[10].ID)
	}
	if got, err := sub.Redrive(ctx, 0); err != nil || got != 1 {
		t.Fatalf("Redrive = %d, %v", got, err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	again, err := ds.ReceiveBatch(rctx, 1)
	if err != nil || len(again) != 1 || again[0].ID != ms[10].ID || !bytes.Equal(again[0].Body, ms[10].Body) {
		t.Fatalf("after Redrive, ReceiveBatch = %v, %v; want %q again", again, err, ms[10].ID)
	}
}
