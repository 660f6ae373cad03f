package inmemory_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
	"github.com/payrail/payrail/bus/driver"
	"github.com/payrail/payrail/bus/inmemory"
)

// WithMaxAttempts(0) retries a failing message past the default limit of
// 10 and never dead-letters it; a broker-side limit (max_attempts in the
// URL) still applies and is reported.
func TestUnlimitedAttempts(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := uniqueName(t)
	topic := openTopic(t, "inmemory://"+name)
	sub := openSub(t, "inmemory://"+name, bus.WithMaxAttempts(0), fastRetry())
	if got := sub.Capabilities().MaxAttempts; got != 0 {
		t.Fatalf("Capabilities().MaxAttempts = %d, want 0 (unlimited)", got)
	}
	publish(t, topic, &bus.Message{ID: "m", Body: []byte("x")})
	const succeedAt = 15
	acked := make(chan int, 1)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		_ = sub.Receive(rctx, func(_ context.Context, m *bus.Message) error {
			if m.DeliveryAttempt < succeedAt {
				return errors.New("not yet")
			}
			acked <- m.DeliveryAttempt
			return nil
		})
	}()
	select {
	case n := <-acked:
		if n != succeedAt {
			t.Errorf("acked on attempt %d, want %d", n, succeedAt)
		}
	case <-ctx.Done():
		t.Fatal("the message was not redelivered until it succeeded")
	}
	dls, err := sub.DeadLetters(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 0 {
		t.Errorf("dead letters = %d, want 0", len(dls))
	}

	limited := openSub(t, "inmemory://"+name+"?subscription=limited&max_attempts=3", bus.WithMaxAttempts(0))
	if got := limited.Capabilities().MaxAttempts; got != 3 {
		t.Errorf("with the broker's max_attempts=3, Capabilities().MaxAttempts = %d, want 3", got)
	}
}

// Subscription-only options are not topic options (OpenTopic with one does
// not compile); the shared telemetry options are both.
func TestOptionTypes(t *testing.T) {
	topicOpt := reflect.TypeFor[bus.TopicOption]()
	subOpt := reflect.TypeFor[bus.SubscriptionOption]()
	for name, o := range map[string]bus.SubscriptionOption{
		"WithConcurrency":  bus.WithConcurrency(1),
		"WithMaxAttempts":  bus.WithMaxAttempts(1),
		"WithRetryBackoff": bus.WithRetryBackoff(bus.DefaultBackoff),
		"WithMaxExtension": bus.WithMaxExtension(time.Second),
		"WithLogger":       bus.WithLogger(nil),
	} {
		if reflect.TypeOf(o).Implements(topicOpt) {
			t.Errorf("%s is a TopicOption; OpenTopic would accept and ignore it", name)
		}
	}
	if subOpt.Implements(topicOpt) {
		t.Error("SubscriptionOption implements TopicOption")
	}
	shared := reflect.TypeOf(bus.WithName("x"))
	if !shared.Implements(topicOpt) || !shared.Implements(subOpt) {
		t.Errorf("bus.Option (%v) must be both a TopicOption and a SubscriptionOption", shared)
	}
}

// Return makes deliveries ready again at once without counting an attempt,
// and settles them.
func TestReturnKeepsAttempt(t *testing.T) {
	t.Parallel()
	b := inmemory.NewBroker()
	name := uniqueName(t)
	tp := driverTopic(t, b, "inmemory://"+name)
	if err := tp.SendBatch(context.Background(), []*driver.Message{{ID: "m", Body: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	s := driverSub(t, b, "inmemory://"+name+"?ack_deadline=1h")
	first := receiveBatch(t, s, 1)
	if len(first) != 1 || first[0].DeliveryAttempt != 1 {
		t.Fatalf("first delivery %v", ids(first))
	}
	r, ok := s.(driver.Returner)
	if !ok {
		t.Fatal("the inmemory subscription does not implement driver.Returner")
	}
	if err := r.Return(context.Background(), first); err != nil {
		t.Fatalf("Return: %v", err)
	}
	if err := s.Ack(context.Background(), first[0]); !errors.Is(err, driver.ErrAlreadySettled) {
		t.Errorf("Ack after Return = %v, want ErrAlreadySettled", err)
	}
	again := receiveBatch(t, s, 1) // at once: the ack deadline is an hour
	if len(again) != 1 || again[0].ID != "m" || again[0].DeliveryAttempt != 1 {
		t.Errorf("after Return got %v, want m#1", ids(again))
	}
}
