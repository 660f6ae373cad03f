package bus

import (
	"context"
	"errors"
	"time"

	"github.com/payrail/payrail/bus/driver"
)

// ErrNoDriver is returned by every call on a Topic or Subscription that
// NewTopic or NewSubscription was given a nil driver for: constructors do
// not panic on nil, and the mistake surfaces at the first call.
var ErrNoDriver = errors.New("bus: topic or subscription created with a nil driver")

// noDriver stands in for a nil driver.
type noDriver struct{}

func (noDriver) SendBatch(context.Context, []*driver.Message) error { return ErrNoDriver }
func (noDriver) ReceiveBatch(context.Context, int) ([]*driver.Message, error) {
	return nil, ErrNoDriver
}
func (noDriver) Ack(context.Context, *driver.Message) error                 { return ErrNoDriver }
func (noDriver) Nack(context.Context, *driver.Message, time.Duration) error { return ErrNoDriver }
func (noDriver) DeadLetter(context.Context, *driver.Message, string) error  { return ErrNoDriver }
func (noDriver) Capabilities() driver.Capabilities                          { return driver.Capabilities{} }
func (noDriver) Close() error                                               { return nil }
func (noDriver) As(any) bool                                                { return false }
