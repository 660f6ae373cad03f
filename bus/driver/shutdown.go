package driver

import "context"

// Shutdowner is implemented by topics and subscriptions whose release can
// wait for work already under way at the broker: long polls in flight,
// queued settlements, buffered publishes. Shutdown stops new work, lets
// what is under way finish until ctx is done, hands back anything the
// driver fetched but never returned from ReceiveBatch, and then releases
// the resources like Close. When ctx is done — already, or at any point
// while Shutdown runs (the portable layer's Close cancels it at once) — it
// gives up waiting and releases at once, as Close does: a grace cut short
// is not an error.
//
// The portable layer calls Shutdown instead of Close when a driver
// implements it, exactly once, after every ReceiveBatch, SendBatch and
// settlement call it made has returned. Drivers without it are closed
// with Close.
type Shutdowner interface {
	// Shutdown releases the topic or subscription, waiting until ctx is
	// done for requests under way to finish.
	Shutdown(ctx context.Context) error
}

// Returner is implemented by subscriptions that can hand back deliveries
// that were received but never given to a handler (fetched when the
// receiver was stopping) so that the broker delivers them again at once,
// to this or another consumer, without counting the undelivered delivery
// as a failed attempt where the broker allows it. Without Returner, the
// portable layer hands such deliveries back with Nack and no delay, which
// on most brokers counts as an attempt.
type Returner interface {
	// Return hands back the deliveries ms, which are settled by it. It
	// returns the first error; deliveries it could not return are
	// redelivered after their ack deadline.
	Return(ctx context.Context, ms []*Message) error
}

// ReceiveStopper is implemented by subscriptions that fetch ahead of
// ReceiveBatch: a stream the broker pushes into, a prefetch buffer. The
// portable layer calls StopReceiving once, as soon as a shutdown begins and
// before it waits for running handlers: the driver stops fetching at once
// (closes its streams, so the broker stops sending to this consumer) and
// hands back what it fetched but has not returned from ReceiveBatch, while
// deliveries already returned can still be acknowledged, nacked, extended
// and dead-lettered until Shutdown or Close. ReceiveBatch calls after
// StopReceiving return no messages. Drivers that fetch only inside
// ReceiveBatch need not implement it.
type ReceiveStopper interface {
	StopReceiving()
}
