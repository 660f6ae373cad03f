package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/driver"
	"github.com/payrail/payrail/bus/kafka"
)

// Return hands a record back without counting an attempt or committing
// it: the same member delivers it again as attempt 1, and after the member
// closes, the group's next member does too.
func TestReturnKeepsAttemptAndCommitsNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	name := uniqueName(t)
	if err := kafka.EnsureTopic(ctx, topicURL(name), kafka.WithPartitions(1)); err != nil {
		t.Fatal(err)
	}
	topic, err := bus.OpenTopic(ctx, topicURL(name))
	if err != nil {
		t.Fatal(err)
	}
	defer topic.Close()
	if err := topic.Publish(ctx, &bus.Message{ID: "m", Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	a := openDriverSub(t, subURL(name, "g"))
	r, ok := a.(driver.Returner)
	if !ok {
		t.Fatal("the kafka subscription does not implement driver.Returner")
	}
	for i := range 2 {
		got := receiveN(t, a, 1)
		if got[0].ID != "m" || got[0].DeliveryAttempt != 1 {
			t.Fatalf("delivery %d: %s attempt %d, want m attempt 1", i+1, got[0].ID, got[0].DeliveryAttempt)
		}
		if err := r.Return(ctx, got); err != nil {
			t.Fatalf("Return: %v", err)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := openDriverSub(t, subURL(name, "g"))
	defer b.Close()
	got := receiveN(t, b, 1)
	if got[0].ID != "m" || got[0].DeliveryAttempt != 1 {
		t.Errorf("the group's next member got %s attempt %d, want m attempt 1", got[0].ID, got[0].DeliveryAttempt)
	}
}
