package bus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/payrail/payrail/bus"
)

// Wrapping a nil driver is not a panic: the first call says what is wrong.
func TestNilDriver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	topic := bus.NewTopic(nil)
	if err := topic.Publish(ctx, &bus.Message{Body: []byte("x")}); !errors.Is(err, bus.ErrNoDriver) {
		t.Errorf("Publish: %v", err)
	}
	if err := topic.Close(); err != nil {
		t.Errorf("topic Close: %v", err)
	}
	sub := bus.NewSubscription(nil)
	err := sub.Receive(ctx, func(context.Context, *bus.Message) error { return nil })
	if !errors.Is(err, bus.ErrNoDriver) {
		t.Errorf("Receive: %v", err)
	}
	if err := sub.Close(); err != nil {
		t.Errorf("subscription Close: %v", err)
	}
}
