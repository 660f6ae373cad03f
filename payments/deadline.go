package payments

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// deadlineCtx bounds one gateway attempt like context.WithDeadline, without
// what WithDeadline allocates up front (its context, a timer, the timer's
// closure, the cancel function: four objects and a timer-heap insert and
// delete per attempt). Most gateway calls end long before their deadline,
// and many drivers never ask for Done (an in-process gateway, a driver
// that checks Err): for them deadlineCtx is one object, and its Err compares
// the clock with the deadline.
//
// The first Done, or anything that needs its cancellation (a context
// derived from it, context.AfterFunc, context.Cause), materialises a real
// context.WithDeadline of the same parent and deadline, to which every
// later call is delegated: from then on it behaves exactly as one. Until
// then Err agrees with what that context would report, so that no caller
// can tell the difference: Canceled after stop, DeadlineExceeded past the
// deadline, the parent's error once the parent is done.
type deadlineCtx struct {
	context.Context // the parent
	deadline        time.Time
	real            atomic.Pointer[materialised]
	mu              sync.Mutex // serialises materialise and stop
	stopped         bool       // stop ran (under mu)
}

type materialised struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// withDeadline returns parent bounded by d (or by parent's own deadline,
// if earlier). Call stop when the attempt is over, as a CancelFunc.
func withDeadline(parent context.Context, d time.Time) *deadlineCtx {
	return withDeadlineIn(nil, parent, d)
}

// withDeadlineIn is withDeadline in storage c, which must never have been
// used (nil: a new one): per-request storage saves the allocation of a
// request's first attempt.
func withDeadlineIn(c *deadlineCtx, parent context.Context, d time.Time) *deadlineCtx {
	if pd, ok := parent.Deadline(); ok && pd.Before(d) {
		d = pd
	}
	if c == nil {
		return &deadlineCtx{Context: parent, deadline: d}
	}
	c.Context, c.deadline = parent, d
	return c
}

// Deadline implements context.Context.
func (c *deadlineCtx) Deadline() (time.Time, bool) { return c.deadline, true }

// Done implements context.Context; it materialises the context.
func (c *deadlineCtx) Done() <-chan struct{} { return c.materialise().Done() }

// Err implements context.Context.
func (c *deadlineCtx) Err() error {
	if m := c.real.Load(); m != nil {
		return m.ctx.Err()
	}
	c.mu.Lock()
	stopped := c.stopped
	c.mu.Unlock()
	if m := c.real.Load(); m != nil { // materialised in between
		return m.ctx.Err()
	}
	if err := c.Context.Err(); err != nil {
		return err
	}
	if stopped {
		return context.Canceled
	}
	if time.Until(c.deadline) <= 0 { // one clock read (monotonic) rather than two
		return context.DeadlineExceeded
	}
	return nil
}

// Value implements context.Context. The context package finds a context's
// cancellation state through Value with a private key (cancelCtxKey):
// asked for it, deadlineCtx materialises and answers with the real one's,
// so that contexts derived from it and context.Cause work as with
// context.WithDeadline, without a goroutine per derived context.
func (c *deadlineCtx) Value(key any) any {
	if m := c.real.Load(); m != nil {
		return m.ctx.Value(key)
	}
	if key == cancelCtxKey {
		return c.materialise().Value(key)
	}
	return c.Context.Value(key)
}

// String names the context for debugging, like the context package's.
func (c *deadlineCtx) String() string { return "payments.deadlineCtx(" + c.deadline.String() + ")" }

// materialise returns the real context.WithDeadline behind c, creating it
// (already cancelled if c was stopped) on first use.
func (c *deadlineCtx) materialise() context.Context {
	if m := c.real.Load(); m != nil {
		return m.ctx
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.real.Load(); m != nil {
		return m.ctx
	}
	ctx, cancel := context.WithDeadline(c.Context, c.deadline)
	if c.stopped {
		cancel()
	}
	c.real.Store(&materialised{ctx: ctx, cancel: cancel})
	return ctx
}

// stop ends the attempt: like a CancelFunc, it releases the timer of a
// materialised context and makes Err report Canceled (unless the context
// was already done). It is idempotent.
func (c *deadlineCtx) stop() {
	c.mu.Lock()
	c.stopped = true
	m := c.real.Load()
	c.mu.Unlock()
	if m != nil {
		m.cancel()
	}
}

// cancelCtxKey is the context package's private key through which Value
// finds a context's cancellation state (context.Cause and every derived
// context ask for it). It is captured once by asking context.Cause about
// a context that records the key it is asked for.
var cancelCtxKey = func() any {
	var p keyProbe
	_ = context.Cause(&p)
	return p.key
}()

// keyProbe is a done context that records the last key Value was asked
// for.
type keyProbe struct {
	context.Context
	key any
}

func (p *keyProbe) Value(key any) any { p.key = key; return nil }
func (p *keyProbe) Err() error        { return context.Canceled }
