package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/payrail/payrail/bus/driver"
	"github.com/payrail/payrail/internal/registry"
	"github.com/payrail/payrail/internal/retry"
)

// Handler processes one received message. If the handler returns without
// settling the message, the subscription settles it from the result:
//   - nil: Ack;
//   - an error marked with Permanent, or any error on the last allowed
//     attempt (see WithMaxAttempts): DeadLetter with the error as reason;
//   - any other error: Nack with the back-off of WithRetryBackoff.
//
// A panic in the handler is recovered and treated as an error.
type Handler func(ctx context.Context, m *Message) error

// Subscription receives messages. It is safe for concurrent use.
type Subscription struct {
	d    driver.Subscription
	caps driver.Capabilities
	opts subscriptionOptions

	mu      sync.Mutex
	closed  bool               // Shutdown or Close began
	stop    context.Context    // cancelled when shutdown begins: Receive loops stop fetching
	stopFn  context.CancelFunc //
	kill    context.Context    // cancelled when the grace ends: handlers' contexts are cancelled
	killFn  context.CancelFunc //
	running sync.WaitGroup     // Receive calls
	done    chan struct{}      // closed when shut down: handlers returned, driver released
	doneErr error              // the driver's Shutdown or Close error, set before done is closed

	tel *subTelemetry // telemetry.go
}

type subscriptionOptions struct {
	concurrency int
	maxAttempts int // 0: unlimited
	// maxAttemptsSet: WithMaxAttempts was given (0 then means unlimited).
	maxAttemptsSet bool
	backoff        func(attempt int) time.Duration
	maxExtension   time.Duration
	logger         *slog.Logger
	tel            telemetryConfig // telemetry.go
}

// SubscriptionOption configures a Subscription: the subscription-only
// options below and the shared Options (telemetry).
type SubscriptionOption interface {
	applySubscription(*subscriptionOptions)
}

// subOption is a subscription-only option: not a TopicOption.
type subOption func(*subscriptionOptions)

func (o subOption) applySubscription(so *subscriptionOptions) { o(so) }

// WithConcurrency bounds the number of handlers Receive runs at once
// (default 16).
func WithConcurrency(n int) SubscriptionOption {
	return subOption(func(o *subscriptionOptions) {
		if n > 0 {
			o.concurrency = n
		}
	})
}

// WithMaxAttempts sets the delivery attempt after which a failing message is
// dead-lettered instead of nacked. The default is the broker's own limit
// (Capabilities.MaxAttempts) or, if it has none, 10.
//
// WithMaxAttempts(0) means unlimited redelivery: a failing message is
// retried until it succeeds and dead-lettered only when its handler marks
// the error Permanent. Where the broker dead-letters on its own after a
// limit it cannot be told to drop (see "Unlimited redelivery" in the
// package documentation), that limit still applies and Capabilities
// reports it. A negative n is ignored.
func WithMaxAttempts(n int) SubscriptionOption {
	return subOption(func(o *subscriptionOptions) {
		if n >= 0 {
			o.maxAttempts, o.maxAttemptsSet = n, true
		}
	})
}

// WithRetryBackoff sets the redelivery delay used when a handler returns an
// error: f receives the failed delivery's attempt number (1-based). The
// default is exponential from 200ms, doubling up to 1m, with ±20% jitter.
func WithRetryBackoff(f func(attempt int) time.Duration) SubscriptionOption {
	return subOption(func(o *subscriptionOptions) {
		if f != nil {
			o.backoff = f
		}
	})
}

// WithMaxExtension bounds how long a running handler's message is kept
// invisible by automatic extension (default 1h).
func WithMaxExtension(d time.Duration) SubscriptionOption {
	return subOption(func(o *subscriptionOptions) {
		if d > 0 {
			o.maxExtension = d
		}
	})
}

// WithLogger sets where the receive loop reports errors it cannot return,
// such as a failed Ack (default: discarded).
func WithLogger(l *slog.Logger) SubscriptionOption {
	return subOption(func(o *subscriptionOptions) {
		if l != nil {
			o.logger = l
		}
	})
}

// DefaultBackoff is the default redelivery delay: 200ms·2^(attempt-1),
// capped at one minute, with ±20% jitter.
func DefaultBackoff(attempt int) time.Duration { return redelivery.Delay(attempt) }

// redelivery is DefaultBackoff's policy.
var redelivery = retry.Policy{Initial: 200 * time.Millisecond, Max: time.Minute, Multiplier: 2, Jitter: 0.2}

// receiveRetry spaces the receive loop's retries after a failed fetch:
// 200ms doubling up to 5s, reset by a successful fetch.
var receiveRetry = retry.Policy{Initial: 200 * time.Millisecond, Max: 5 * time.Second, Multiplier: 2}

// OpenSubscription opens the subscription named by urlstr; the scheme selects
// the driver.
func OpenSubscription(ctx context.Context, urlstr string, opts ...SubscriptionOption) (*Subscription, error) {
	d, u, err := drivers.Lookup(urlstr)
	if err != nil {
		return nil, err
	}
	ds, err := d.OpenSubscription(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("bus: open subscription %s: %w", registry.Redact(u), err)
	}
	return NewSubscription(ds, append([]SubscriptionOption{withURL(u, true)}, opts...)...), nil
}

// NewSubscription wraps a driver subscription. Drivers use it for
// constructors that take native clients instead of URLs. A nil d is not a
// panic: Receive fails with ErrNoDriver.
func NewSubscription(d driver.Subscription, opts ...SubscriptionOption) *Subscription {
	if d == nil {
		d = noDriver{} // every call fails with ErrNoDriver
	}
	o := subscriptionOptions{
		concurrency:  16,
		backoff:      DefaultBackoff,
		maxExtension: time.Hour,
		logger:       slog.New(slog.DiscardHandler),
	}
	for _, opt := range opts {
		if opt != nil {
			opt.applySubscription(&o)
		}
	}
	caps := d.Capabilities()
	switch {
	case !o.maxAttemptsSet && caps.MaxAttempts == 0:
		o.maxAttempts = 10
	case !o.maxAttemptsSet, o.maxAttempts == 0 && caps.MaxAttempts > 0:
		// The broker dead-letters after its limit whatever the portable
		// layer does: dead-letter on that last attempt, with the reason.
		o.maxAttempts = caps.MaxAttempts
	}
	caps.MaxAttempts = o.maxAttempts
	s := &Subscription{d: d, caps: caps, opts: o, done: make(chan struct{})}
	s.stop, s.stopFn = context.WithCancel(context.Background())
	s.kill, s.killFn = context.WithCancel(context.Background())
	s.tel = newSubTelemetry(s)
	return s
}

// Capabilities reports what the subscription supports. MaxAttempts is the
// effective limit after WithMaxAttempts (0: unlimited).
func (s *Subscription) Capabilities() Capabilities { return s.caps }

// Concurrency returns how many handlers Receive runs at once
// (WithConcurrency).
func (s *Subscription) Concurrency() int { return s.opts.concurrency }

// Receive receives messages and calls h for each, running at most the
// configured concurrency of handlers at once, until ctx is done or the
// subscription is closed. On drivers declaring Ordering, messages with the
// same non-empty Key are handled one at a time, in delivery order; when one
// of them is nacked, the messages queued behind it are nacked too, so the
// broker redelivers them in order.
//
// Handlers run with a context that is not cancelled with ctx, so that a
// shutdown lets in-flight messages finish: Receive returns only after every
// handler it started has returned and its message is settled. Messages
// fetched but not yet started when ctx is done are handed back at once
// (driver.Returner where the driver has it, else a Nack without delay,
// which on most brokers counts as a delivery attempt). Handlers' contexts
// are cancelled, with cause ErrClosed, when the grace of Shutdown ends or
// Close is called.
// While a handler runs, its message is kept invisible by extending its ack
// deadline on drivers declaring Extend.
//
// Receive returns nil when ctx is done, ErrClosed if the subscription was
// closed, and otherwise the first non-retryable driver error (such as
// ErrNotFound). Transient receive errors are retried with back-off.
func (s *Subscription) Receive(ctx context.Context, h Handler) error {
	if _, nilDriver := s.d.(noDriver); nilDriver {
		return ErrNoDriver
	}
	if h == nil {
		return errors.New("bus: Receive with a nil handler")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.running.Add(1)
	s.mu.Unlock()
	defer s.running.Done()

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.stop, cancel)()
	// Handlers outlive ctx but not the shutdown's grace.
	hctx, hcancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer hcancel(nil)
	defer context.AfterFunc(s.kill, func() { hcancel(ErrClosed) })()

	caps := s.d.Capabilities() // current settings, e.g. a changed ack deadline
	r := &receiver{s: s, h: h, rctx: rctx, hctx: hctx, sem: make(chan struct{}, s.opts.concurrency),
		work: make(chan *Message), quit: make(chan struct{})}
	if caps.Ordering {
		r.keys = map[string][]*Message{}
	}
	if ext, ok := s.d.(driver.Extender); ok && caps.Extend && caps.AckDeadline > 0 {
		r.ext = newExtender(ext, caps.AckDeadline, s.opts.maxExtension, s.opts.logger)
		go r.ext.run(rctx)
	}
	err := r.loop(rctx)
	r.wg.Wait()
	close(r.quit) // the idle handler goroutines exit
	r.workers.Wait()
	if r.ext != nil {
		r.ext.stop()
	}
	if s.stop.Err() != nil && ctx.Err() == nil {
		return ErrClosed
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

type receiver struct {
	s    *Subscription
	h    Handler
	rctx context.Context // the receive loop's context
	hctx context.Context // handlers' context: not cancelled with rctx, but when the shutdown grace ends
	sem  chan struct{}
	wg   sync.WaitGroup // messages dispatched and not yet handled
	ext  *extender

	// Handler goroutines are kept, not started per message: an idle one
	// waits on work for the next message until quit is closed (once every
	// handler returned). A goroutine per message cost a stack grown anew
	// for every handler (5% of an async server's CPU in runtime.newstack),
	// and on a saturated one-core server the goroutine churn starved the
	// HTTP connections the runtime found ready (p99 of async POST
	// /payments 131 ms under wrk).
	work    chan *Message
	quit    chan struct{}
	workers sync.WaitGroup

	mu   sync.Mutex
	keys map[string][]*Message // per-key queues of messages waiting behind a running one
}

func (r *receiver) loop(ctx context.Context) error {
	failures := 0
	wait := receiveRetry.New()
	for {
		// Wait for one free slot, then take every other free slot.
		select {
		case r.sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		n := 1
	fill:
		for n < cap(r.sem) {
			select {
			case r.sem <- struct{}{}:
				n++
			default:
				break fill
			}
		}
		t0 := r.s.tel.receiveStart(ctx)
		dms, err := r.s.d.ReceiveBatch(ctx, n)
		if len(dms) > n { // a misbehaving driver: hand back the excess
			r.s.handBack(ctx, dms[n:])
			dms = dms[:n]
		}
		for range n - len(dms) {
			<-r.sem
		}
		if ctx.Err() != nil || (err != nil && isFatal(err)) {
			// Hand back what was fetched but not started.
			r.s.handBack(ctx, dms)
			for range dms {
				<-r.sem
			}
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		// Messages returned alongside a transient error are valid deliveries.
		r.s.tel.received(ctx, t0, dms)
		for _, dm := range dms {
			r.dispatch(r.s.wrap(dm))
		}
		if err != nil {
			failures++
			r.s.opts.logger.WarnContext(ctx, "bus: receive failed; retrying", "error", err, "failures", failures)
			select {
			case <-time.After(wait.NextBackOff()):
			case <-ctx.Done():
			}
			continue
		}
		if failures > 0 {
			failures = 0
			wait.Reset()
		}
	}
}

func isFatal(err error) bool {
	return errors.Is(err, ErrClosed) || errors.Is(err, ErrNotFound) ||
		errors.Is(err, ErrPermission) || errors.Is(err, ErrInvalidURL)
}

// dispatch starts a handler for m, or queues m behind a running handler for
// the same key. The caller holds one semaphore slot for m.
func (r *receiver) dispatch(m *Message) {
	if r.keys != nil && m.Key != "" {
		r.mu.Lock()
		if q, busy := r.keys[m.Key]; busy {
			r.keys[m.Key] = append(q, m)
			r.mu.Unlock()
			if r.ext != nil {
				r.ext.add(m) // keep it invisible while it waits its turn
			}
			return
		}
		r.keys[m.Key] = nil // mark busy
		r.mu.Unlock()
	}
	r.wg.Add(1)
	select {
	case r.work <- m: // an idle handler goroutine takes it
	default:
		r.workers.Add(1)
		go r.worker(m)
	}
}

// worker runs m, then every message dispatched to it, until quit.
// dispatch starts one only when none is idle, so there are about as many
// as the subscription's concurrency at most (a worker between its last
// message and its wait for the next is not yet idle).
func (r *receiver) worker(m *Message) {
	defer r.workers.Done()
	for {
		r.run(m)
		select {
		case m = <-r.work:
		case <-r.quit:
			return
		}
	}
}

// run handles m and then, for ordered keys, every message queued behind it.
// If a message is not acked (nacked, or failed to settle) or the receive
// loop is stopping, the rest of the key's queue is handed back in order
// (except a redelivery of the nacked message itself, which runs next).
func (r *receiver) run(m *Message) {
	defer r.wg.Done()
	for m != nil {
		r.handle(m)
		<-r.sem
		if m.Key != "" && r.keys != nil && (m.outcome.Load() != outcomeAcked && m.outcome.Load() != outcomeDeadLettered || r.rctx.Err() != nil) {
			m = r.handBack(m)
			continue
		}
		m = r.next(m.Key)
	}
}

// handBack nacks, without delay, every message queued behind m's key (or,
// when the receive loop is stopping, hands them back: they never started). A
// redelivery of m itself already queued there (a broker that redelivers a
// nacked message at once can deliver it while m's handler is still
// returning) is not nacked, which would cost it a delivery attempt, but
// returned to run next, in order, with the key kept busy. Otherwise, and
// whenever the receive loop is stopping, the key is freed and nil returned.
func (r *receiver) handBack(m *Message) *Message {
	r.mu.Lock()
	q := r.keys[m.Key]
	var again *Message
	if r.rctx.Err() == nil {
		for i, qm := range q {
			if qm.ID == m.ID && qm.DeliveryAttempt > m.DeliveryAttempt {
				again = qm
				q = append(q[:i:i], q[i+1:]...)
				break
			}
		}
	}
	if again != nil {
		r.keys[m.Key] = nil // still busy: again runs next
	} else {
		delete(r.keys, m.Key)
	}
	stopping := r.rctx.Err() != nil
	r.mu.Unlock()
	ctx := context.WithoutCancel(r.hctx)
	var back []*driver.Message
	for _, qm := range q {
		if r.ext != nil {
			r.ext.remove(qm)
		}
		switch {
		case stopping && qm.settled.CompareAndSwap(false, true):
			back = append(back, qm.dm)
		case !stopping:
			if err := qm.Nack(ctx, 0); err != nil {
				r.settle(ctx, qm, err)
			}
		}
		<-r.sem
	}
	r.s.handBack(ctx, back)
	return again
}

func (r *receiver) next(key string) *Message {
	if r.keys == nil || key == "" {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.keys[key]
	if len(q) == 0 {
		delete(r.keys, key)
		return nil
	}
	r.keys[key] = q[1:]
	return q[0]
}

// handle runs the handler for m under a process span when telemetry is on
// (telemetry.go): its context carries the span, a child of the trace
// context in m's attributes.
func (r *receiver) handle(m *Message) {
	if !r.s.tel.processing(r.hctx, m) {
		r.handleIn(r.hctx, m)
		return
	}
	ctx, proc := r.s.tel.process(r.hctx, m)
	r.s.tel.end(ctx, proc, m, r.handleIn(ctx, m))
}

// handleIn calls the handler and settles m; it returns the handler's error.
func (r *receiver) handleIn(ctx context.Context, m *Message) (err error) {
	s := r.s
	if s.opts.maxAttempts > 0 && m.DeliveryAttempt > s.opts.maxAttempts {
		r.settle(ctx, m, m.DeadLetter(ctx, fmt.Sprintf("max delivery attempts exceeded (%d > %d)", m.DeliveryAttempt, s.opts.maxAttempts)))
		return nil
	}
	if r.ext != nil {
		r.ext.add(m)
	}
	err = callHandler(ctx, r.h, m)
	if r.ext != nil {
		r.ext.remove(m)
	}
	if m.Settled() {
		return err
	}
	if ctx.Err() != nil { // the shutdown's grace ended: settle all the same
		ctx = context.WithoutCancel(ctx)
	}
	switch {
	case err == nil:
		r.settle(ctx, m, m.Ack(ctx))
	case IsPermanent(err):
		r.settle(ctx, m, m.DeadLetter(ctx, err.Error()))
	case s.opts.maxAttempts > 0 && m.DeliveryAttempt >= s.opts.maxAttempts:
		r.settle(ctx, m, m.DeadLetter(ctx, fmt.Sprintf("failed on final attempt %d: %v", m.DeliveryAttempt, err)))
	default:
		r.settle(ctx, m, m.Nack(ctx, s.opts.backoff(m.DeliveryAttempt)))
	}
	return err
}

func (r *receiver) settle(ctx context.Context, m *Message, err error) {
	if err != nil {
		r.s.opts.logger.ErrorContext(ctx, "bus: settling message failed; it will be redelivered",
			"message_id", m.ID, "attempt", m.DeliveryAttempt, "error", err)
	}
}

func callHandler(ctx context.Context, h Handler, m *Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("bus: handler panic: %v", p)
		}
	}()
	return h(ctx, m)
}

// extender keeps the messages of running handlers, and of messages queued
// behind a running handler of their key, invisible: one goroutine per
// Receive extends every message whose deadline is a third away.
type extender struct {
	d        driver.Extender
	deadline time.Duration
	maxExt   time.Duration
	log      *slog.Logger
	done     chan struct{}

	mu      sync.Mutex
	running map[*Message]*extension
}

type extension struct {
	started, extended time.Time
}

func newExtender(d driver.Extender, deadline, maxExt time.Duration, log *slog.Logger) *extender {
	return &extender{d: d, deadline: deadline, maxExt: maxExt, log: log, done: make(chan struct{}), running: map[*Message]*extension{}}
}

// add starts extending m; a message already tracked (queued behind its
// key, then started) keeps its original start time.
func (e *extender) add(m *Message) {
	now := time.Now()
	e.mu.Lock()
	if _, ok := e.running[m]; !ok {
		e.running[m] = &extension{started: now, extended: now}
	}
	e.mu.Unlock()
}

func (e *extender) remove(m *Message) {
	e.mu.Lock()
	delete(e.running, m)
	e.mu.Unlock()
}

func (e *extender) stop() { close(e.done) }

func (e *extender) run(ctx context.Context) {
	t := time.NewTicker(max(e.deadline/6, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-e.done:
			return
		case <-t.C:
		}
		now := time.Now()
		var due []*Message
		e.mu.Lock()
		for m, x := range e.running {
			if now.Sub(x.extended) >= e.deadline/3 && now.Sub(x.started) < e.maxExt {
				x.extended = now
				due = append(due, m)
			}
		}
		e.mu.Unlock()
		for _, m := range due {
			if m.Settled() {
				continue
			}
			if err := e.d.Extend(context.WithoutCancel(ctx), m.dm, e.deadline); err != nil {
				e.log.WarnContext(ctx, "bus: extending ack deadline failed", "message_id", m.ID, "error", err)
			}
		}
	}
}

func (s *Subscription) wrap(dm *driver.Message) *Message {
	return &Message{
		ID:              dm.ID,
		Key:             dm.Key,
		Body:            dm.Body,
		Attributes:      dm.Attributes,
		DeliveryAttempt: dm.DeliveryAttempt,
		PublishTime:     dm.PublishTime,
		sub:             s,
		dm:              dm,
	}
}

func (s *Subscription) ack(ctx context.Context, m *Message) error {
	if s.tel.measuring(ctx) {
		return s.tel.settle(ctx, settleAck, func() error { return s.d.Ack(ctx, m.dm) })
	}
	return s.d.Ack(ctx, m.dm)
}

func (s *Subscription) nack(ctx context.Context, m *Message, delay time.Duration) error {
	if s.tel.measuring(ctx) {
		return s.tel.settle(ctx, settleNack, func() error { return s.d.Nack(ctx, m.dm, delay) })
	}
	return s.d.Nack(ctx, m.dm, delay)
}

func (s *Subscription) deadLetter(ctx context.Context, m *Message, reason string) error {
	if s.tel.measuring(ctx) {
		return s.tel.settle(ctx, settleDeadLetter, func() error { return s.d.DeadLetter(ctx, m.dm, reason) })
	}
	return s.d.DeadLetter(ctx, m.dm, reason)
}

func (s *Subscription) extend(ctx context.Context, m *Message, d time.Duration) error {
	if d <= 0 {
		return errors.New("bus: Extend with a non-positive duration")
	}
	ext, ok := s.d.(driver.Extender)
	if !ok || !s.caps.Extend {
		return ErrUnsupported
	}
	return ext.Extend(ctx, m.dm, d)
}

// DeadLetters returns up to max messages from the dead-letter queue without
// removing them. It returns ErrUnsupported unless the subscription declares
// the DeadLetterQueue capability.
func (s *Subscription) DeadLetters(ctx context.Context, max int) ([]*DeadLetter, error) {
	q, err := s.dlq()
	if err != nil {
		return nil, err
	}
	dls, err := q.PeekDeadLetters(ctx, max)
	if err != nil {
		return nil, err
	}
	out := make([]*DeadLetter, len(dls))
	for i, dl := range dls {
		m := dl.Message
		out[i] = &DeadLetter{
			Message:        &Message{ID: m.ID, Key: m.Key, Body: m.Body, Attributes: m.Attributes, DeliveryAttempt: m.DeliveryAttempt, PublishTime: m.PublishTime},
			Reason:         dl.Reason,
			DeadLetteredAt: dl.DeadLetteredAt,
		}
	}
	return out, nil
}

// Redrive moves up to max dead letters (all if max <= 0) back for
// redelivery and returns how many were moved. It returns ErrUnsupported
// unless the subscription declares the DeadLetterQueue capability.
func (s *Subscription) Redrive(ctx context.Context, max int) (int, error) {
	q, err := s.dlq()
	if err != nil {
		return 0, err
	}
	n, err := q.Redrive(ctx, max)
	s.tel.redriven(ctx, n)
	return n, err
}

func (s *Subscription) dlq() (driver.DeadLetterQueue, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	q, ok := s.d.(driver.DeadLetterQueue)
	if !ok || !s.caps.DeadLetterQueue {
		return nil, ErrUnsupported
	}
	return q, nil
}

// Stats reads the subscription's backlog, in-flight and dead-letter counts.
// It returns ErrUnsupported unless the subscription declares Stats.
func (s *Subscription) Stats(ctx context.Context) (Stats, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return Stats{}, ErrClosed
	}
	st, ok := s.d.(driver.Stater)
	if !ok || !s.caps.Stats {
		return Stats{}, ErrUnsupported
	}
	return st.Stats(ctx)
}

// Ping checks that the broker is reachable, for readiness probes. Drivers
// that cannot check report nil.
func (s *Subscription) Ping(ctx context.Context) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if p, ok := s.d.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

// handBackTimeout bounds handing back the messages of one fetch.
const handBackTimeout = 5 * time.Second

// handBack returns deliveries that were fetched but never given to a
// handler, so that the broker delivers them again at once.
func (s *Subscription) handBack(ctx context.Context, dms []*driver.Message) {
	if len(dms) == 0 {
		return
	}
	// Best effort, bounded: a slow broker must not hold Receive (or
	// Shutdown) past its caller's cancellation for long; what is not
	// handed back in time comes back after its ack deadline.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), handBackTimeout)
	defer cancel()
	if r, ok := s.d.(driver.Returner); ok {
		if err := r.Return(ctx, dms); err != nil {
			s.opts.logger.WarnContext(ctx, "bus: handing back unstarted messages failed; they are redelivered after their ack deadline", "messages", len(dms), "error", err)
		}
		return
	}
	for _, dm := range dms {
		if err := s.d.Nack(ctx, dm, 0); err != nil {
			s.opts.logger.WarnContext(ctx, "bus: handing back an unstarted message failed; it is redelivered after its ack deadline", "message_id", dm.ID, "error", err)
		}
	}
}

// Shutdown stops the subscription gracefully. Every Receive loop stops
// fetching at once; messages fetched but not started are handed back so
// that another consumer can take them without waiting for an ack deadline
// (see Receive); handlers already running go on until they return, and
// their messages are settled as usual. Then the driver is released, after
// the broker requests still under way (such as an SQS long poll) have
// finished, so that what they bring is handed back too.
//
// Shutdown returns when all that is done, with the driver's error if
// releasing it failed, or when ctx is done, with ctx.Err(). In the second
// case the grace has ended: the handlers' contexts are cancelled (with
// cause ErrClosed) and the driver's requests under way are aborted; the
// handlers still running may settle their messages when they return, and
// the driver is released after the last one did. Call Close to wait for
// that.
//
// Shutdown and Close may be called several times and concurrently: a call
// after shutdown has completed does nothing and returns nil; a call during
// it waits for it (Close also ends the grace). Receive returns ErrClosed
// once shutdown has begun, and the other methods return ErrClosed.
//
// Call order for a graceful stop: cancel the contexts of the Receive
// calls, or call Shutdown, which stops them; wait for Receive to return;
// then shut down the topics that handlers publish to (Topic.Shutdown), as
// handlers may publish until they return.
func (s *Subscription) Shutdown(ctx context.Context) error {
	first := s.begin()
	select {
	case <-s.done:
		if first {
			return s.doneErr
		}
		return nil
	case <-ctx.Done():
		s.killFn()
		return ctx.Err()
	}
}

// Close is Shutdown without grace: Receive loops stop, unstarted messages
// are handed back, running handlers' contexts are cancelled at once, and
// Close waits for those handlers to return and settle their messages
// before it releases the driver. A handler that ignores its context's
// cancellation delays Close. Later calls do nothing and return nil.
func (s *Subscription) Close() error {
	first := s.begin()
	s.killFn()
	<-s.done
	if first {
		return s.doneErr
	}
	return nil
}

// begin starts the shutdown if it has not started and reports whether
// this call started it.
func (s *Subscription) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.closed = true
	s.stopFn()
	if rs, ok := s.d.(driver.ReceiveStopper); ok {
		rs.StopReceiving() // what a stream pushes from now on goes to other consumers
	}
	go s.finish()
	return true
}

// finish waits for the Receive calls, whose handlers have then returned
// and settled, and releases the driver.
func (s *Subscription) finish() {
	s.running.Wait()
	s.tel.close()
	if sd, ok := s.d.(driver.Shutdowner); ok {
		s.doneErr = sd.Shutdown(s.kill)
	} else {
		s.doneErr = s.d.Close()
	}
	s.killFn() // release the context's resources
	s.stopFn()
	close(s.done)
}

// As converts the subscription to the driver's native type; see each
// driver's documentation for the types it supports.
func (s *Subscription) As(i any) bool { return s.d.As(i) }
