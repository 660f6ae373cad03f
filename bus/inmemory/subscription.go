package inmemory

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"maps"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/payrail/payrail/bus/driver"
)

// entryState is where an entry is in its subscription.
type entryState uint8

const (
	stateReady    entryState = iota + 1 // in the ready queue
	stateHeld                           // waiting behind an earlier message with the same key
	stateDelayed                        // nacked with a delay; in the timed heap
	stateInFlight                       // delivered and unsettled; in the timed heap
	stateDead                           // in the dead-letter queue
	stateAcked                          // settled; gone
)

// entry is one message in one subscription. All fields except msg are
// guarded by the subscription's mutex.
type entry struct {
	msg        *message
	deliveries int // deliveries so far; the next one is attempt deliveries+1
	state      entryState
	idx        int   // index in the timed heap, -1 when not in it
	due        int64 // lease expiry or end of nack delay, in subscription clock ns
	cur        *delivery
	// kq is the queue of e's key on an ordered subscription when e was the
	// first of its key in circulation (s.keys points to it): embedded, so
	// that admitting a keyed message allocates nothing under the
	// subscription's lock. It lives on, with the entry's slab, until the
	// key's last entry is done.
	kq keyQueue
}

// delivery is the receipt of one delivery of an entry; the driver.Message
// handed to the receiver is embedded in it and its AckID points back to it.
// A delivery is current while its entry's cur points to it.
type delivery struct {
	msg     driver.Message
	e       *entry
	sub     *subscription
	h       *subHandle // the handle that received it
	settled bool       // guarded by sub.mu
}

// keyQueue tracks one ordering key of an ordered subscription.
type keyQueue struct {
	active int          // entries with the key that are ready, delayed or in flight
	held   ring[*entry] // later entries with the key, in publish order
}

// deadLetter is an entry in a dead-letter queue.
type deadLetter struct {
	e      *entry
	reason string
	at     time.Time
}

// subscription is a subscription's broker-side state; it outlives the
// handles opened on it. The lifecycle of an entry is
//
//	held -> ready -> in flight -> acked | dead
//	                  |  ^  -> ready (lease expired, nack without delay, handle closed)
//	                  v  |
//	                delayed (nack with delay)
//
// with dead-lettering instead of re-entering ready when max_attempts would
// be exceeded, and redrive taking dead entries back to ready (or held).
type subscription struct {
	topic *topic
	name  string
	epoch time.Time // origin of the monotonic clock used for due times

	mu          sync.Mutex
	ackDeadline time.Duration
	maxAttempts int
	ordered     bool

	ready ring[*entry]
	timed timedHeap
	keys  map[string]*keyQueue // non-nil iff ordered
	dead  ring[deadLetter]

	inFlight int
	delayed  int
	held     int

	// age holds the entries in circulation (not acked, not dead), in the
	// order they entered it, so that Stats reads OldestAge from its head
	// instead of scanning every queue under the lock (a scan per call made
	// Stats O(backlog), and the processor's async admission calls it on
	// every request: 7% of an async server's CPU, growing with its
	// backlog). Entries that left are taken off its head as they go, and
	// all at once when they outnumber those still in it (an entry that
	// stays at its head, in flight or held for long, would otherwise keep
	// them). Publish times follow the order of entry (to within concurrent
	// publishers' clock reads) except after a redrive, whose entries keep
	// their older publish time: ageUnsorted then makes OldestAge look at
	// all of them until the list is empty again.
	age         ring[*entry]
	ageLeft     int // entries in age that left circulation
	ageUnsorted bool

	waiters  int           // ReceiveBatch calls blocked on wake
	wakes    int           // times pushReady woke blocked ReceiveBatch calls
	wake     chan struct{} // closed when entries become ready; nil if nobody waits
	timer    *time.Timer   // wakes waiters when the earliest due time passes
	timerSet bool
	timerAt  int64
	handles  int // open handles
}

func newSubscription(t *topic, name string) *subscription {
	return &subscription{
		topic:       t,
		name:        name,
		epoch:       time.Now(),
		ackDeadline: DefaultAckDeadline,
		ordered:     true,
		keys:        map[string]*keyQueue{},
	}
}

// now reads the subscription's monotonic clock.
func (s *subscription) now() int64 { return int64(time.Since(s.epoch)) }

// after returns now+d, saturating instead of overflowing.
func after(now int64, d time.Duration) int64 {
	if int64(d) > math.MaxInt64-now {
		return math.MaxInt64
	}
	return now + int64(d)
}

// open applies st and returns a new handle.
func (s *subscription) open(st settings) *subHandle {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.applyLocked(st)
	s.handles++
	return &subHandle{s: s, done: make(chan struct{})}
}

// applyLocked sets the settings st gives. Called with s.mu held.
func (s *subscription) applyLocked(st settings) {
	if st.ackDeadline != nil {
		s.ackDeadline = *st.ackDeadline
	}
	if st.maxAttempts != nil {
		s.maxAttempts = *st.maxAttempts
	}
	if st.ordered != nil && *st.ordered != s.ordered {
		s.setOrdered(*st.ordered)
	}
}

// setOrdered switches per-key ordering on or off.
func (s *subscription) setOrdered(on bool) {
	s.ordered = on
	if !on {
		for _, kq := range s.keys {
			for {
				e, ok := kq.held.pop()
				if !ok {
					break
				}
				s.held--
				s.pushReady(e)
			}
		}
		s.keys = nil
		return
	}
	// Entries published while unordered may be circulating with the same
	// key; later messages with that key wait until all of them are done.
	s.keys = map[string]*keyQueue{}
	count := func(e *entry) {
		if k := e.msg.key; k != "" {
			kq := s.keys[k]
			if kq == nil {
				kq = &keyQueue{}
				s.keys[k] = kq
			}
			kq.active++
		}
	}
	s.ready.each(count)
	for _, e := range s.timed {
		count(e)
	}
}

// enqueueNew adds newly published messages.
func (s *subscription) enqueueNew(msgs []message) {
	es := make([]entry, len(msgs))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range es {
		e := &es[i]
		e.msg, e.idx = &msgs[i], -1
		s.age.push(e)
		s.admit(e)
	}
}

// left records that an entry of age, acked or dead-lettered, left
// circulation.
func (s *subscription) left() {
	s.ageLeft++
	for s.age.len() > 0 && gone(s.age.at(0)) {
		s.age.pop()
		s.ageLeft--
	}
	if s.ageLeft > 64 && s.ageLeft > s.age.len()/2 {
		var kept ring[*entry]
		s.age.each(func(e *entry) {
			if !gone(e) {
				kept.push(e)
			}
		})
		s.age, s.ageLeft = kept, 0
	}
}

// gone reports whether e left circulation.
func gone(e *entry) bool { return e.state == stateAcked || e.state == stateDead }

// admit adds a new or redriven entry: to the ready queue, or behind the
// circulating entry with the same key on an ordered subscription.
func (s *subscription) admit(e *entry) {
	if k := e.msg.key; s.keys != nil && k != "" {
		if kq := s.keys[k]; kq != nil {
			e.state = stateHeld
			kq.held.push(e)
			s.held++
			return
		}
		e.kq = keyQueue{active: 1}
		s.keys[k] = &e.kq
	}
	s.pushReady(e)
}

func (s *subscription) pushReady(e *entry) {
	e.state = stateReady
	s.ready.push(e)
	if s.wake != nil {
		close(s.wake)
		s.wake = nil
		s.wakes++
	}
}

// done records that e, acked or dead-lettered, left circulation, releasing
// the next entry with its key.
func (s *subscription) done(e *entry) {
	k := e.msg.key
	if s.keys == nil || k == "" {
		return
	}
	kq := s.keys[k]
	if kq == nil {
		return
	}
	if kq.active--; kq.active > 0 {
		return
	}
	next, ok := kq.held.pop()
	if !ok {
		delete(s.keys, k)
		return
	}
	s.held--
	kq.active = 1
	s.pushReady(next)
}

// requeue makes e, whose delivery ended unsettled, ready for redelivery, or
// dead-letters it if that delivery would exceed max_attempts.
func (s *subscription) requeue(e *entry) {
	if s.exhausted(e) {
		s.deadLetter(e, s.exhaustedReason())
		return
	}
	s.pushReady(e)
}

func (s *subscription) exhausted(e *entry) bool {
	return s.maxAttempts > 0 && e.deliveries >= s.maxAttempts
}

func (s *subscription) exhaustedReason() string {
	return fmt.Sprintf("max delivery attempts (%d) exceeded", s.maxAttempts)
}

// deadLetter moves e, which is in no queue, to the dead-letter queue. The
// queue keeps a copy of e and its message, body included: e and its
// message are parts of their publish call's slabs, which a dead letter
// would otherwise keep alive whole for as long as it stays.
func (s *subscription) deadLetter(e *entry, reason string) {
	e.state = stateDead
	e.cur = nil
	m := *e.msg
	m.body = bytes.Clone(m.body)
	kept := &entry{msg: &m, deliveries: e.deliveries, state: stateDead, idx: -1}
	s.dead.push(deadLetter{e: kept, reason: reason, at: time.Now()})
	s.left()
	s.done(e)
}

// advance moves every entry due at now out of the timed heap: delayed
// entries become ready and expired leases are redelivered.
func (s *subscription) advance(now int64) {
	for len(s.timed) > 0 && s.timed[0].due <= now {
		e := s.timed.popMin()
		if e.state == stateDelayed {
			s.delayed--
			s.pushReady(e)
			continue
		}
		s.inFlight--
		e.cur = nil
		s.requeue(e)
	}
}

// armTimer makes sure blocked receivers wake when the earliest due time
// passes. It is called whenever waiters may exist and the heap changed.
func (s *subscription) armTimer(now int64) {
	if s.waiters == 0 || len(s.timed) == 0 {
		return
	}
	due := s.timed[0].due
	if s.timerSet && s.timerAt <= due {
		return
	}
	d := time.Duration(due - now)
	if s.timer == nil {
		s.timer = time.AfterFunc(d, s.onTimer)
	} else {
		s.timer.Reset(d)
	}
	s.timerSet, s.timerAt = true, due
}

func (s *subscription) onTimer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.timerSet = false
	now := s.now()
	s.advance(now)
	s.armTimer(now)
}

// take delivers up to max ready entries to h.
func (s *subscription) take(h *subHandle, max int, now int64) []*delivery {
	ds := make([]*delivery, 0, min(max, s.ready.len()))
	due := after(now, s.ackDeadline)
	for len(ds) < max {
		e, ok := s.ready.pop()
		if !ok {
			break
		}
		if s.exhausted(e) { // max_attempts was lowered since e was queued
			s.deadLetter(e, s.exhaustedReason())
			continue
		}
		e.deliveries++
		d := &delivery{e: e, sub: s, h: h}
		d.msg.DeliveryAttempt = e.deliveries
		d.msg.AckID = d
		e.cur = d
		e.state = stateInFlight
		e.due = due
		s.timed.push(e)
		s.inFlight++
		ds = append(ds, d)
	}
	s.armTimer(now)
	return ds
}

// subHandle is the driver.Subscription returned by OpenSubscription.
type subHandle struct {
	s      *subscription
	done   chan struct{} // closed by Close to unblock ReceiveBatch
	closed bool          // guarded by s.mu
}

var (
	_ driver.Subscription    = (*subHandle)(nil)
	_ driver.Extender        = (*subHandle)(nil)
	_ driver.DeadLetterQueue = (*subHandle)(nil)
	_ driver.Stater          = (*subHandle)(nil)
	_ driver.Pinger          = (*subHandle)(nil)
)

// receiveSpins is how many times ReceiveBatch yields the processor
// (runtime.Gosched) when nothing is ready, before it blocks.
//
// A publisher wakes a blocked receiver, and the Go scheduler runs the
// goroutine it wakes next on the publisher's processor, in the one slot
// that goes before its run queue. Publishers here are HTTP handlers (an
// async POST /payments), and that slot held their connection's read
// goroutine, which net/http starts for every request and waits for before
// it reads the next one: woken by every publish, the receiver pushed it to
// the back of a run queue holding every other connection's, and on a
// saturated core connections stalled for tens of milliseconds (p99 of
// async POST /payments 55–172 ms under wrk, against 16–19 ms with this
// change). A receiver that yields instead of blocking is not waiting when
// the next message comes, so the publish wakes nobody; one that finds
// nothing ready after receiveSpins yields (an idle subscription: about
// 3 µs) blocks as before.
const receiveSpins = 32

// ReceiveBatch delivers up to max messages, blocking until at least one is
// ready, ctx is done (it returns ctx.Err()) or the handle is closed (it
// returns an error wrapping driver.ErrClosed).
func (h *subHandle) ReceiveBatch(ctx context.Context, max int) ([]*driver.Message, error) {
	if max < 1 {
		return nil, fmt.Errorf("inmemory: ReceiveBatch of %d messages; want at least 1", max)
	}
	s := h.s
	var ds []*delivery
	s.mu.Lock()
	waiting := false
	spins := 0
	for {
		if waiting {
			s.waiters--
			waiting = false
		}
		if h.closed {
			s.mu.Unlock()
			return nil, fmt.Errorf("inmemory: receive: %w", driver.ErrClosed)
		}
		if err := ctx.Err(); err != nil {
			s.mu.Unlock()
			return nil, err
		}
		now := s.now()
		s.advance(now)
		if s.ready.len() > 0 {
			if ds = s.take(h, max, now); len(ds) > 0 {
				break
			}
			continue // everything ready was dead-lettered; look again
		}
		if spins < receiveSpins {
			// Nothing ready: yield before blocking, so that a receiver
			// keeping up with its publishers is seldom parked when they
			// publish (see receiveSpins).
			spins++
			s.mu.Unlock()
			runtime.Gosched()
			s.mu.Lock()
			continue
		}
		if s.wake == nil {
			s.wake = make(chan struct{})
		}
		wake := s.wake
		s.waiters++
		waiting = true
		s.armTimer(now)
		s.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
		case <-h.done:
		}
		s.mu.Lock()
	}
	s.mu.Unlock()

	// Copy outside the lock: messages are immutable and ds is not shared yet.
	ms := make([]*driver.Message, len(ds))
	for i, d := range ds {
		m := d.e.msg
		d.msg.ID = m.id
		d.msg.Key = m.key
		d.msg.Body = bytes.Clone(m.body)
		d.msg.Attributes = maps.Clone(m.attrs)
		d.msg.PublishTime = m.published
		ms[i] = &d.msg
	}
	return ms, nil
}

// current locks s.mu and returns the current delivery m is a receipt of,
// with the clock reading used to check it. On error s.mu is not held.
func (h *subHandle) current(op string, m *driver.Message) (*delivery, int64, error) {
	if m == nil {
		return nil, 0, fmt.Errorf("inmemory: %s of a nil message", op)
	}
	d, ok := m.AckID.(*delivery)
	if !ok || d == nil || d.sub != h.s {
		return nil, 0, fmt.Errorf("inmemory: %s of message %q, which was not received from this subscription", op, m.ID)
	}
	s := h.s
	s.mu.Lock()
	now := s.now()
	var err error
	switch {
	case h.closed:
		err = driver.ErrClosed
	case d.settled:
		err = driver.ErrAlreadySettled
	default:
		s.advance(now)
		if d.e.cur != d {
			err = ErrLeaseExpired
		}
	}
	if err != nil {
		s.mu.Unlock()
		return nil, 0, fmt.Errorf("inmemory: %s of message %q (attempt %d): %w", op, m.ID, d.msg.DeliveryAttempt, err)
	}
	return d, now, nil
}

// settle ends the current delivery d, removing its entry from the timed
// heap. s.mu is held.
func (s *subscription) settle(d *delivery) *entry {
	e := d.e
	d.settled = true
	e.cur = nil
	s.timed.remove(e)
	s.inFlight--
	return e
}

// Ack settles the delivery as processed; the message is removed.
func (h *subHandle) Ack(_ context.Context, m *driver.Message) error {
	d, _, err := h.current("ack", m)
	if err != nil {
		return err
	}
	s := h.s
	defer s.mu.Unlock()
	e := s.settle(d)
	e.state = stateAcked
	s.left()
	s.done(e)
	return nil
}

// Nack settles the delivery as failed: the message is redelivered, with its
// attempt count incremented, once delay has passed, or dead-lettered if that
// would exceed max_attempts.
func (h *subHandle) Nack(_ context.Context, m *driver.Message, delay time.Duration) error {
	d, now, err := h.current("nack", m)
	if err != nil {
		return err
	}
	s := h.s
	defer s.mu.Unlock()
	e := s.settle(d)
	switch {
	case s.exhausted(e):
		s.deadLetter(e, s.exhaustedReason())
	case delay <= 0:
		s.pushReady(e)
	default:
		e.state = stateDelayed
		e.due = after(now, delay)
		s.timed.push(e)
		s.delayed++
		s.armTimer(now)
	}
	return nil
}

// DeadLetter settles the delivery by moving the message, unchanged, to the
// subscription's dead-letter queue with reason.
func (h *subHandle) DeadLetter(_ context.Context, m *driver.Message, reason string) error {
	d, _, err := h.current("dead-letter", m)
	if err != nil {
		return err
	}
	s := h.s
	defer s.mu.Unlock()
	s.deadLetter(s.settle(d), reason)
	return nil
}

// Extend keeps the delivery invisible to other receivers until d from now.
func (h *subHandle) Extend(_ context.Context, m *driver.Message, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("inmemory: extend by %v; want a positive duration", d)
	}
	dl, now, err := h.current("extend", m)
	if err != nil {
		return err
	}
	s := h.s
	defer s.mu.Unlock()
	e := dl.e
	e.due = after(now, d)
	s.timed.fix(e.idx)
	s.armTimer(now)
	return nil
}

// Capabilities reports the subscription's current settings.
func (h *subHandle) Capabilities() driver.Capabilities {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	return driver.Capabilities{
		Ordering:        s.ordered,
		FanOut:          true,
		NackDelay:       true,
		Extend:          true,
		DeadLetterQueue: true,
		Stats:           true,
		AckDeadline:     s.ackDeadline,
		MaxAttempts:     s.maxAttempts,
	}
}

// PeekDeadLetters returns copies of up to max dead letters (all if max <= 0),
// oldest first, without removing them.
func (h *subHandle) PeekDeadLetters(_ context.Context, max int) ([]*driver.DeadLetter, error) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.closed {
		return nil, fmt.Errorf("inmemory: peek dead letters: %w", driver.ErrClosed)
	}
	n := s.dead.len()
	if max > 0 {
		n = min(n, max)
	}
	out := make([]*driver.DeadLetter, n)
	for i := range n {
		dl := s.dead.at(i)
		m := dl.e.msg
		out[i] = &driver.DeadLetter{
			Message: driver.Message{
				ID:              m.id,
				Key:             m.key,
				Body:            bytes.Clone(m.body),
				Attributes:      maps.Clone(m.attrs),
				DeliveryAttempt: dl.e.deliveries,
				PublishTime:     m.published,
			},
			Reason:         dl.reason,
			DeadLetteredAt: dl.at,
		}
	}
	return out, nil
}

// Redrive moves up to max dead letters (all if max <= 0), oldest first, back
// to the subscription. They keep their ID, Key, Body, Attributes and publish
// time, start again at delivery attempt 1, and on an ordered subscription
// queue behind messages with the same key like newly published ones.
func (h *subHandle) Redrive(_ context.Context, max int) (int, error) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.closed {
		return 0, fmt.Errorf("inmemory: redrive: %w", driver.ErrClosed)
	}
	n := s.dead.len()
	if max > 0 {
		n = min(n, max)
	}
	for range n {
		dl, _ := s.dead.pop()
		dl.e.deliveries = 0
		s.age.push(dl.e)
		s.ageUnsorted = true
		s.admit(dl.e)
	}
	return n, nil
}

// Stats reports the subscription's counts: Backlog counts ready, delayed
// and key-blocked messages.
func (h *subHandle) Stats(_ context.Context) (driver.Stats, error) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.closed {
		return driver.Stats{}, fmt.Errorf("inmemory: stats: %w", driver.ErrClosed)
	}
	s.advance(s.now())
	return driver.Stats{
		Backlog:     int64(s.ready.len() + s.delayed + s.held),
		InFlight:    int64(s.inFlight),
		DeadLetters: int64(s.dead.len()),
		OldestAge:   s.oldestAge(),
	}, nil
}

// Ping reports whether the handle is usable; the broker is always reachable.
func (h *subHandle) Ping(ctx context.Context) error {
	s := h.s
	s.mu.Lock()
	closed := h.closed
	s.mu.Unlock()
	if closed {
		return fmt.Errorf("inmemory: ping: %w", driver.ErrClosed)
	}
	return ctx.Err()
}

// Close closes the handle: blocked and later calls fail with
// driver.ErrClosed, and the handle's unsettled deliveries are returned to
// the subscription for redelivery (counting as a delivery attempt). The
// subscription itself stays in the broker.
func (h *subHandle) Close() error {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.closed {
		return fmt.Errorf("inmemory: close: %w", driver.ErrClosed)
	}
	h.closed = true
	close(h.done)
	var mine []*entry
	for _, e := range s.timed {
		if e.state == stateInFlight && e.cur.h == h {
			mine = append(mine, e)
		}
	}
	// Return them in delivery order (all had the same lease length unless
	// extended, so due order approximates it).
	slices.SortFunc(mine, func(a, b *entry) int { return cmp.Compare(a.due, b.due) })
	for _, e := range mine {
		s.timed.remove(e)
		s.inFlight--
		e.cur = nil
		s.requeue(e)
	}
	if s.handles--; s.handles == 0 && s.timer != nil {
		s.timer.Stop()
		s.timerSet = false
	}
	return nil
}

// As supports **Broker.
func (h *subHandle) As(i any) bool { return asBroker(h.s.topic.broker, i) }

var _ driver.Returner = (*subHandle)(nil)

// Return hands back deliveries that were never given to a handler: each
// message is ready again at once and its next delivery keeps the attempt
// number of the returned one.
func (h *subHandle) Return(_ context.Context, ms []*driver.Message) error {
	var first error
	for _, m := range ms {
		d, _, err := h.current("return", m)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		s := h.s
		e := s.settle(d)
		e.deliveries--
		s.pushReady(e)
		s.mu.Unlock()
	}
	return first
}
