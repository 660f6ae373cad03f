package servicebus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/payrail/payrail/bus/driver"
)

// acceptTimeout bounds one wait for a session to become available; the SDK
// passes it to the service, which answers com.microsoft:timeout when it
// passes, and the driver waits again.
const acceptTimeout = 30 * time.Second

// sessions receives from a sessionful queue or subscription: up to
// cfg.maxSessions workers each accept the next available session, receive
// its messages one at a time (the service delivers a session's messages in
// order) and hand them to ReceiveBatch through out. A worker releases its
// session once it has had no message for cfg.sessionIdle and none of its
// deliveries is unsettled, and accepts another.
type sessions struct {
	s      *subscription
	out    chan *driver.Message
	ctx    context.Context
	cancel context.CancelFunc
	start  sync.Once
	wg     sync.WaitGroup

	mu    sync.Mutex
	held  map[*heldSession]struct{}
	fatal error         // a non-retryable accept error, such as a missing entity
	died  chan struct{} // closed when fatal is set
}

// heldSession is a session locked by this handle.
type heldSession struct {
	sr *azservicebus.SessionReceiver
	id string

	mu       sync.Mutex
	waiting  int            // fetched, waiting for ReceiveBatch
	inflight int            // handed out and not settled (or held by a delayed nack)
	paused   int            // delayed nacks waiting: nothing is received meanwhile
	resume   chan struct{}  // closed and replaced when paused drops to zero
	expect   map[int64]bool // sequence numbers of nacked messages being abandoned: let through while paused
	lost     bool           // the session lock was lost
}

// seqOf returns a received message's sequence number (-1 if unknown).
func seqOf(rm *azservicebus.ReceivedMessage) int64 {
	if rm.SequenceNumber == nil {
		return -1
	}
	return *rm.SequenceNumber
}

func newSessions(s *subscription) *sessions {
	ctx, cancel := context.WithCancel(context.Background())
	return &sessions{s: s, out: make(chan *driver.Message), ctx: ctx, cancel: cancel,
		held: map[*heldSession]struct{}{}, died: make(chan struct{})}
}

// receive returns up to n messages from the held sessions, blocking for the
// first.
func (ss *sessions) receive(ctx context.Context, n int) ([]*driver.Message, error) {
	ss.start.Do(func() {
		for range ss.s.cfg.maxSessions {
			ss.wg.Add(1)
			go ss.worker()
		}
	})
	var out []*driver.Message
	take := func(dm *driver.Message) {
		d := dm.AckID.(*delivery)
		hs := d.session
		hs.mu.Lock()
		hs.waiting--
		paused := hs.lost || (hs.paused > 0 && !hs.expect[seqOf(d.rm)])
		if !paused {
			hs.inflight++
			delete(hs.expect, seqOf(d.rm))
		}
		hs.mu.Unlock()
		if paused {
			// A message fetched behind a delayed nack: give it back, to be
			// received after the nacked one.
			actx, cancel := context.WithTimeout(context.Background(), closeTimeout)
			_ = hs.sr.AbandonMessage(actx, d.rm, nil)
			cancel()
			return
		}
		out = append(out, dm)
	}
	select {
	case dm := <-ss.out:
		take(dm)
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-ss.died:
		return nil, ss.fatal
	case <-ss.s.done:
		return nil, driver.ErrClosed
	}
	for len(out) < n {
		select {
		case dm := <-ss.out:
			take(dm)
			continue
		default:
		}
		break
	}
	return out, nil
}

// worker holds one session at a time.
func (ss *sessions) worker() {
	defer ss.wg.Done()
	failures := 0
	for ss.ctx.Err() == nil {
		sr, err := ss.accept()
		if err != nil {
			if ss.ctx.Err() != nil {
				return
			}
			var sbe *azservicebus.Error
			if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &sbe) && sbe.Code == azservicebus.CodeTimeout) {
				failures = 0
				continue // no session available yet
			}
			mapped := mapErr("accept a session of", ss.s.cfg.path(), err)
			if errors.Is(mapped, driver.ErrNotFound) || errors.Is(mapped, driver.ErrPermission) {
				ss.die(mapped)
				return
			}
			failures++
			select {
			case <-time.After(min(100*time.Millisecond<<min(failures, 6), 5*time.Second)):
			case <-ss.ctx.Done():
				return
			}
			continue
		}
		failures = 0
		ss.hold(sr)
	}
}

// accept waits for the next available session, for up to acceptTimeout.
//
// The wait is not cancelled when the subscription closes: accepting opens
// AMQP sessions, and go-amqp (v1.7.0) handles a context cancelled while it
// begins one badly, later ending a session whose begin it never sent, which
// a strict peer answers by closing the whole (shared) connection. accept
// returns at once on Close instead, and a session accepted after that is
// released.
func (ss *sessions) accept() (*azservicebus.SessionReceiver, error) {
	type result struct {
		sr  *azservicebus.SessionReceiver
		err error
	}
	ch := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), acceptTimeout)
		defer cancel()
		c := ss.s.client.client
		var r result
		if ss.s.cfg.subscription != "" {
			r.sr, r.err = c.AcceptNextSessionForSubscription(ctx, ss.s.cfg.entity, ss.s.cfg.subscription, nil)
		} else {
			r.sr, r.err = c.AcceptNextSessionForQueue(ctx, ss.s.cfg.entity, nil)
		}
		ch <- r
	}()
	select {
	case r := <-ch:
		return r.sr, r.err
	case <-ss.ctx.Done():
		go func() {
			if r := <-ch; r.sr != nil {
				ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
				_ = r.sr.Close(ctx)
				cancel()
			}
		}()
		return nil, ss.ctx.Err()
	}
}

func (ss *sessions) die(err error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.fatal == nil {
		ss.fatal = err
		close(ss.died)
	}
}

// hold receives the session's messages until it is idle, lost or closed.
func (ss *sessions) hold(sr *azservicebus.SessionReceiver) {
	hs := &heldSession{sr: sr, id: sr.SessionID(), resume: make(chan struct{})}
	ss.mu.Lock()
	ss.held[hs] = struct{}{}
	ss.mu.Unlock()
	renewDone := make(chan struct{})
	renewCtx, stopRenew := context.WithCancel(ss.ctx)
	go ss.keepLocked(renewCtx, hs, renewDone)
	defer func() {
		stopRenew()
		<-renewDone
		ss.mu.Lock()
		delete(ss.held, hs)
		ss.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		_ = sr.Close(ctx)
		cancel()
	}()
	lastMessage := time.Now()
	for {
		// Wait while a delayed nack holds the session back.
		hs.mu.Lock()
		paused, resume, lost := hs.paused > 0, hs.resume, hs.lost
		hs.mu.Unlock()
		if lost {
			return
		}
		if paused {
			select {
			case <-resume:
				continue
			case <-ss.ctx.Done():
				return
			}
		}
		rctx, cancel := context.WithTimeout(ss.ctx, ss.s.cfg.sessionIdle)
		rms, err := sr.ReceiveMessages(rctx, 1, nil)
		cancel()
		if ss.ctx.Err() != nil {
			for _, rm := range rms {
				actx, acancel := context.WithTimeout(context.Background(), closeTimeout)
				_ = sr.AbandonMessage(actx, rm, nil)
				acancel()
			}
			return
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return // the session lock was lost, or the link failed: accept again
		}
		if len(rms) == 0 {
			hs.mu.Lock()
			idle := hs.inflight == 0 && hs.waiting == 0 && hs.paused == 0 && time.Since(lastMessage) >= ss.s.cfg.sessionIdle
			hs.mu.Unlock()
			if !idle {
				continue
			}
			// A message the service sent as the receive timed out is in
			// the link's prefetch buffer (or on its way): closing the link
			// now would return it with a delivery counted. Take it first.
			if rms = ss.lastLook(sr); len(rms) == 0 {
				return
			}
		}
		lastMessage = time.Now()
		for _, rm := range rms {
			dm := ss.s.incoming(ss.ctx, rm, sr, hs)
			if dm == nil {
				continue
			}
			// Counted from now, so that the session is not released while
			// the message waits for ReceiveBatch (its lock is renewed
			// meanwhile: see keepLocked).
			hs.mu.Lock()
			hs.waiting++
			hs.mu.Unlock()
			select {
			case ss.out <- dm:
			case <-ss.ctx.Done():
				hs.mu.Lock()
				hs.waiting--
				hs.mu.Unlock()
				actx, acancel := context.WithTimeout(context.Background(), closeTimeout)
				_ = sr.AbandonMessage(actx, rm, nil)
				acancel()
				return
			}
		}
	}
}

// lastLookWait is how long an idle session's last receive waits before its
// link is closed.
const lastLookWait = 5 * time.Millisecond

// lastLook receives what reached the session's link after its last receive
// timed out, so that releasing an idle session does not count a delivery
// for a message the service had just sent.
func (ss *sessions) lastLook(sr *azservicebus.SessionReceiver) []*azservicebus.ReceivedMessage {
	ctx, cancel := context.WithTimeout(ss.ctx, lastLookWait)
	defer cancel()
	rms, _ := sr.ReceiveMessages(ctx, 1, nil)
	return rms
}

// keepLocked renews the session lock at a third of the lock duration while
// the handle holds the session with no delivery out (receiving, or
// waiting for ReceiveBatch), or while a delayed nack holds it back. While
// deliveries are being handled, their Extend calls (package bus's automatic
// extension) renew it instead, so that a handler that runs past its
// extension limit loses the session and its messages are delivered again.
func (ss *sessions) keepLocked(ctx context.Context, hs *heldSession, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(max(ss.s.cfg.lockDuration/3, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hs.mu.Lock()
		needed := hs.inflight == 0 || hs.paused > 0
		hs.mu.Unlock()
		if !needed {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, ss.s.cfg.lockDuration/3+time.Second)
		err := hs.sr.RenewSessionLock(rctx, nil)
		cancel()
		if err != nil && ctx.Err() == nil {
			var sbe *azservicebus.Error
			if errors.As(err, &sbe) && (sbe.Code == azservicebus.CodeLockLost || sbe.Code == azservicebus.CodeNotFound) {
				hs.mu.Lock()
				hs.lost = true
				hs.mu.Unlock()
				return
			}
		}
	}
}

// renew renews the session lock now (Extend of a session's message).
func (ss *sessions) renew(ctx context.Context, hs *heldSession) error {
	return mapErr("renew the lock of session "+hs.id+" on", ss.s.cfg.path(), hs.sr.RenewSessionLock(ctx, nil))
}

// settled records that one of hs's deliveries was settled.
func (hs *heldSession) settled() {
	hs.mu.Lock()
	if hs.inflight > 0 {
		hs.inflight--
	}
	hs.mu.Unlock()
}

// nackLater holds d and its session for delay, then abandons d and lets the
// session be received again: d is then the session's first available
// message, so it is delivered again before the ones behind it.
func (ss *sessions) nackLater(_ context.Context, d *delivery, delay time.Duration) error {
	hs := d.session
	hs.mu.Lock()
	if hs.lost {
		hs.mu.Unlock()
		return fmt.Errorf("servicebus: nack message %s on %s: session %s: %w", d.id, ss.s.cfg.path(), hs.id, ErrLockLost)
	}
	hs.paused++
	hs.inflight++ // held until abandoned; end() counts the nack itself
	hs.mu.Unlock()
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		select {
		case <-time.After(delay):
		case <-ss.ctx.Done():
		}
		// A receive already waiting when the nack came may get the message
		// back before the session resumes: let it through.
		hs.mu.Lock()
		if hs.expect == nil {
			hs.expect = map[int64]bool{}
		}
		hs.expect[seqOf(d.rm)] = true
		hs.mu.Unlock()
		actx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		_ = hs.sr.AbandonMessage(actx, d.rm, nil) // if it fails, the session lock lapses and the service redelivers it
		cancel()
		hs.mu.Lock()
		hs.inflight--
		hs.paused--
		if hs.paused == 0 {
			close(hs.resume)
			hs.resume = make(chan struct{})
		}
		hs.mu.Unlock()
	}()
	return nil
}

func (ss *sessions) close() error {
	ss.cancel()
	ss.wg.Wait()
	return nil
}
