package servicebus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"
	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus/admin"

	"github.com/payrail/payrail/bus/driver"
)

// settler is what settles a delivery: a *azservicebus.Receiver or a
// *azservicebus.SessionReceiver.
type settler interface {
	CompleteMessage(ctx context.Context, m *azservicebus.ReceivedMessage, o *azservicebus.CompleteMessageOptions) error
	AbandonMessage(ctx context.Context, m *azservicebus.ReceivedMessage, o *azservicebus.AbandonMessageOptions) error
	DeadLetterMessage(ctx context.Context, m *azservicebus.ReceivedMessage, o *azservicebus.DeadLetterOptions) error
}

// subscription receives from a queue or topic subscription.
type subscription struct {
	cfg     *config
	client  *sharedClient
	recv    *azservicebus.Receiver // without sessions
	sess    *sessions              // with sessions
	busy    chan struct{}          // serialises ReceiveMessages, which the SDK forbids running concurrently
	dlqBusy chan struct{}          // the same for the dead-letter receiver
	done    chan struct{}          // closed by Close

	mu       sync.Mutex
	closed   bool
	resender *azservicebus.Sender   // to the queue or topic, for delayed nacks and redrives
	dlqRecv  *azservicebus.Receiver // the dead-letter sub-queue
	pending  map[*delivery]struct{} // deliveries whose lock renewal timer is armed
	admin    *admin.Client          // for Stats, created on first use
	// statsDenied is when the administration API last refused the
	// credentials (zero: never).
	statsDenied time.Time
}

var (
	_ driver.Subscription    = (*subscription)(nil)
	_ driver.Extender        = (*subscription)(nil)
	_ driver.DeadLetterQueue = (*subscription)(nil)
	_ driver.Pinger          = (*subscription)(nil)
	_ driver.Stater          = (*subscription)(nil)
)

// delivery is a received message's AckID.
type delivery struct {
	rm      *azservicebus.ReceivedMessage
	by      settler
	attempt int
	id, key string
	session *heldSession // with sessions

	mu       sync.Mutex
	settled  bool
	released bool        // no longer counted in its session's in-flight deliveries
	until    time.Time   // Extend was asked to cover until then
	timer    *time.Timer // renews the lock again before it lapses
}

func openSubscription(ctx context.Context, cfg *config) (*subscription, error) {
	c, err := acquireClient(cfg)
	if err != nil {
		return nil, err
	}
	s := &subscription{cfg: cfg, client: c, busy: make(chan struct{}, 1), dlqBusy: make(chan struct{}, 1), done: make(chan struct{}), pending: map[*delivery]struct{}{}}
	if cfg.sessions {
		s.sess = newSessions(s)
	} else {
		s.recv, err = s.newReceiver(nil)
		if err != nil {
			_ = releaseClient(c)
			return nil, err
		}
	}
	if err := s.Ping(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

func (s *subscription) newReceiver(o *azservicebus.ReceiverOptions) (*azservicebus.Receiver, error) {
	var r *azservicebus.Receiver
	var err error
	if s.cfg.subscription != "" {
		r, err = s.client.client.NewReceiverForSubscription(s.cfg.entity, s.cfg.subscription, o)
	} else {
		r, err = s.client.client.NewReceiverForQueue(s.cfg.entity, o)
	}
	if err != nil {
		return nil, fmt.Errorf("servicebus: receiver for %s: %w", s.cfg.path(), err)
	}
	return r, nil
}

func (s *subscription) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Capabilities reports what the subscription supports.
func (s *subscription) Capabilities() driver.Capabilities {
	return driver.Capabilities{
		Ordering:        s.cfg.sessions,
		FanOut:          s.cfg.subscription != "",
		NackDelay:       true,
		Extend:          true,
		DeadLetterQueue: true,
		Stats:           true,
		AckDeadline:     s.cfg.lockDuration,
		MaxAttempts:     s.cfg.maxDeliveryCount,
	}
}

// ReceiveBatch receives up to max messages, blocking until at least one
// arrives or ctx is done.
func (s *subscription) ReceiveBatch(ctx context.Context, n int) ([]*driver.Message, error) {
	if s.isClosed() {
		return nil, driver.ErrClosed
	}
	n = min(max(n, 1), maxReceiveBatch)
	if s.sess != nil {
		return s.sess.receive(ctx, n)
	}
	select {
	case s.busy <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.done:
		return nil, driver.ErrClosed
	}
	defer func() { <-s.busy }()
	rms, err := s.recv.ReceiveMessages(ctx, n, nil)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case s.isClosed():
			return nil, driver.ErrClosed
		}
		return nil, mapErr("receive from", s.cfg.path(), err)
	}
	out := make([]*driver.Message, 0, len(rms))
	for _, rm := range rms {
		if dm := s.incoming(ctx, rm, s.recv, nil); dm != nil {
			out = append(out, dm)
		}
	}
	return out, nil
}

// incoming converts a received message, or completes and drops it if it is
// a copy meant for another subscription of the topic.
func (s *subscription) incoming(ctx context.Context, rm *azservicebus.ReceivedMessage, by settler, hs *heldSession) *driver.Message {
	if t, ok := rm.ApplicationProperties[PropTarget]; ok && s.cfg.subscription != "" && !strings.EqualFold(propString(t), s.cfg.subscription) {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		_ = by.CompleteMessage(cctx, rm, nil) // if it fails, the lock lapses and it comes back to be dropped again
		cancel()
		return nil
	}
	f := fieldsOf(rm)
	d := &delivery{rm: rm, by: by, session: hs, id: f.id, key: f.key, attempt: f.carried + int(rm.DeliveryCount)}
	dm := &driver.Message{ID: d.id, Key: d.key, Body: rm.Body, Attributes: f.attrs, DeliveryAttempt: d.attempt, AckID: d}
	if rm.EnqueuedTime != nil {
		dm.PublishTime = *rm.EnqueuedTime
	}
	return dm
}

func deliveryOf(m *driver.Message) (*delivery, error) {
	d, ok := m.AckID.(*delivery)
	if !ok || d == nil {
		return nil, errors.New("servicebus: message was not received from this driver")
	}
	return d, nil
}

// begin claims d for settling; end records the result.
func (d *delivery) begin() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled {
		return driver.ErrAlreadySettled
	}
	return nil
}

func (s *subscription) end(d *delivery, err error) error {
	if err == nil || errors.Is(err, ErrLockLost) {
		d.mu.Lock()
		if d.session != nil && !d.released {
			d.released = true
			d.session.settled()
		}
		d.settled = err == nil
		if d.timer != nil {
			d.timer.Stop()
			d.timer = nil
		}
		d.mu.Unlock()
		s.mu.Lock()
		delete(s.pending, d)
		s.mu.Unlock()
	}
	return err
}

// Ack completes the message.
func (s *subscription) Ack(ctx context.Context, m *driver.Message) error {
	d, err := deliveryOf(m)
	if err != nil {
		return err
	}
	if err := d.begin(); err != nil {
		return err
	}
	return s.end(d, mapErr("complete message "+d.id+" on", s.cfg.path(), d.by.CompleteMessage(ctx, d.rm, nil)))
}

// Nack abandons the message, or with a delay sends a scheduled copy and
// completes the original (see the package documentation).
func (s *subscription) Nack(ctx context.Context, m *driver.Message, delay time.Duration) error {
	d, err := deliveryOf(m)
	if err != nil {
		return err
	}
	if err := d.begin(); err != nil {
		return err
	}
	if delay <= 0 {
		return s.end(d, mapErr("abandon message "+d.id+" on", s.cfg.path(), d.by.AbandonMessage(ctx, d.rm, nil)))
	}
	if d.session != nil {
		return s.end(d, s.sess.nackLater(ctx, d, delay))
	}
	sender, err := s.sender()
	if err != nil {
		return err
	}
	cp := s.copyOf(d.rm, d.id, fmt.Sprintf("retry%d", d.attempt), d.attempt)
	seqs, err := sender.ScheduleMessages(ctx, []*azservicebus.Message{cp}, time.Now().Add(delay), nil)
	if err != nil {
		return mapErr("schedule the redelivery of message "+d.id+" to", s.cfg.entity, err)
	}
	if err := d.by.CompleteMessage(ctx, d.rm, nil); err != nil {
		// The original stays (or comes back): withdraw the copy.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		if cerr := sender.CancelScheduledMessages(cctx, seqs, nil); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cancelling its scheduled copy (it will be delivered twice): %w", cerr))
		}
		return s.end(d, mapErr("complete message "+d.id+" after scheduling its redelivery on", s.cfg.path(), err))
	}
	return s.end(d, nil)
}

// copyOf makes the message re-sent for a delayed nack (attempts > 0) or a
// redrive (attempts == 0): the same body, key and attributes, a MessageID
// derived from the original, tagged for this subscription on a topic.
func (s *subscription) copyOf(rm *azservicebus.ReceivedMessage, id, suffix string, attempts int) *azservicebus.Message {
	props := make(map[string]any, len(rm.ApplicationProperties)+3)
	for k, v := range rm.ApplicationProperties {
		switch k {
		case PropAttempts, PropTarget, PropDeadLetterAttempt, propDeadLetterReason, propDeadLetterDescription:
		default:
			props[k] = v
		}
	}
	props[PropID] = id
	if attempts > 0 {
		props[PropAttempts] = int64(attempts)
	}
	if s.cfg.subscription != "" {
		props[PropTarget] = s.cfg.subscription
	}
	newID := copyID(id, suffix)
	return &azservicebus.Message{
		MessageID:             &newID,
		Body:                  rm.Body,
		ApplicationProperties: props,
		SessionID:             rm.SessionID,
		ContentType:           rm.ContentType,
		CorrelationID:         rm.CorrelationID,
		Subject:               rm.Subject,
	}
}

// sender returns the sender to the queue or topic, creating it on first use.
func (s *subscription) sender() (*azservicebus.Sender, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, driver.ErrClosed
	}
	if s.resender == nil {
		snd, err := s.client.client.NewSender(s.cfg.entity, nil)
		if err != nil {
			return nil, fmt.Errorf("servicebus: sender for %s: %w", s.cfg.entity, err)
		}
		s.resender = snd
	}
	return s.resender, nil
}

// DeadLetter moves the message to the dead-letter sub-queue.
func (s *subscription) DeadLetter(ctx context.Context, m *driver.Message, reason string) error {
	d, err := deliveryOf(m)
	if err != nil {
		return err
	}
	if err := d.begin(); err != nil {
		return err
	}
	r := truncate(reason, maxReasonBytes)
	err = d.by.DeadLetterMessage(ctx, d.rm, &azservicebus.DeadLetterOptions{
		Reason:             &r,
		PropertiesToModify: map[string]any{PropDeadLetterAttempt: int64(d.attempt)},
	})
	return s.end(d, mapErr("dead-letter message "+d.id+" on", s.cfg.path(), err))
}

// Extend renews the message's lock, and keeps renewing it until d from now
// if that is longer than a lock duration.
func (s *subscription) Extend(ctx context.Context, m *driver.Message, d time.Duration) error {
	dl, err := deliveryOf(m)
	if err != nil {
		return err
	}
	if err := dl.begin(); err != nil {
		return err
	}
	if err := s.renew(ctx, dl); err != nil {
		return err
	}
	until := time.Now().Add(d)
	dl.mu.Lock()
	defer dl.mu.Unlock()
	if dl.settled {
		return nil
	}
	if until.After(dl.until) {
		dl.until = until
	}
	s.scheduleRenewal(dl)
	return nil
}

// renew renews the lock once: the message's, or its session's.
func (s *subscription) renew(ctx context.Context, dl *delivery) error {
	if dl.session != nil {
		return s.sess.renew(ctx, dl.session)
	}
	err := s.recv.RenewMessageLock(ctx, dl.rm, nil)
	return mapErr("renew the lock of message "+dl.id+" on", s.cfg.path(), err)
}

// scheduleRenewal arms dl's timer to renew the lock a third of a lock
// duration before it lapses, if the lock does not cover dl.until. The
// caller holds dl.mu.
func (s *subscription) scheduleRenewal(dl *delivery) {
	if dl.timer != nil {
		dl.timer.Stop()
		dl.timer = nil
	}
	lockedUntil := time.Now().Add(s.cfg.lockDuration)
	if dl.session == nil && dl.rm.LockedUntil != nil {
		lockedUntil = *dl.rm.LockedUntil
	}
	if !dl.until.After(lockedUntil) {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.pending[dl] = struct{}{}
	s.mu.Unlock()
	wait := max(time.Until(lockedUntil)-s.cfg.lockDuration/3, 0)
	dl.timer = time.AfterFunc(wait, func() {
		dl.mu.Lock()
		settled := dl.settled
		dl.mu.Unlock()
		if settled || s.isClosed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.lockDuration/3)
		err := s.renew(ctx, dl)
		cancel()
		dl.mu.Lock()
		defer dl.mu.Unlock()
		if err == nil && !dl.settled {
			s.scheduleRenewal(dl)
		}
	})
}

// Ping peeks one message, which fails if the entity is missing or the
// credentials may not receive from it.
func (s *subscription) Ping(ctx context.Context) error {
	r := s.recv
	if r == nil { // sessions: a plain receiver cannot attach to a sessionful entity
		var err error
		if r, err = s.deadLetterReceiver(); err != nil {
			return err
		}
	}
	from := int64(0)
	if _, err := r.PeekMessages(ctx, 1, &azservicebus.PeekMessagesOptions{FromSequenceNumber: &from}); err != nil {
		return mapErr("open", s.cfg.path(), err)
	}
	return nil
}

// Close closes the receivers and sender and releases the client. Deliveries
// still locked are delivered again once their locks lapse.
func (s *subscription) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	return s.Shutdown(ctx)
}

var _ driver.Shutdowner = (*subscription)(nil)

// Shutdown closes the receivers and sender (each detach bounded by
// closeTimeout) and releases the client.
func (s *subscription) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return driver.ErrClosed
	}
	s.closed = true
	close(s.done)
	pending := s.pending
	s.pending = nil
	closers := []interface{ Close(context.Context) error }{}
	if s.recv != nil {
		closers = append(closers, s.recv)
	}
	if s.dlqRecv != nil {
		closers = append(closers, s.dlqRecv)
	}
	if s.resender != nil {
		closers = append(closers, s.resender)
	}
	s.mu.Unlock()
	// Outside s.mu: scheduleRenewal takes a delivery's lock, then s.mu.
	for d := range pending {
		d.mu.Lock()
		if d.timer != nil {
			d.timer.Stop()
			d.timer = nil
		}
		d.mu.Unlock()
	}
	var errs []error
	if s.sess != nil {
		errs = append(errs, s.sess.close())
	}
	// The links' detach is bounded by closeTimeout, not by ctx: the
	// portable layer cancels ctx when the grace ends (Close cancels it at
	// once, possibly while this runs), and a detach cut short would fail
	// Close and leave the locks to lapse instead of being released now.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancel()
	for _, c := range closers {
		errs = append(errs, closeErr(c.Close(ctx)))
	}
	errs = append(errs, releaseClient(s.client))
	return errors.Join(errs...)
}

// As converts to **azservicebus.Client or, without sessions,
// **azservicebus.Receiver.
func (s *subscription) As(i any) bool {
	switch p := i.(type) {
	case **azservicebus.Client:
		*p = s.client.client
	case **azservicebus.Receiver:
		if s.recv == nil {
			return false
		}
		*p = s.recv
	default:
		return false
	}
	return true
}
