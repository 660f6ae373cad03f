package pubsub

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc/codes"

	"github.com/payrail/payrail/bus/driver"
)

const (
	// idleStop is how long Receive keeps streaming with no ReceiveBatch
	// waiting and no delivery being handled before it is stopped, handing
	// back the messages it holds.
	idleStop = 3 * time.Second
	// runStopTimeout bounds how long Close waits for the library's Receive
	// to flush its acks and nacks and return.
	runStopTimeout = 30 * time.Second
	// defaultAckDeadline is used when the subscription's configuration
	// cannot be read and the URL sets no ack_deadline.
	defaultAckDeadline = 10 * time.Second
)

// Delivery states.
const (
	stateWaiting  = iota // in a callback, offered to ReceiveBatch
	stateHanded          // returned by ReceiveBatch, not settled
	stateSettling        // being dead-lettered
	stateSettled         // acked, nacked or dead-lettered
	stateExpired         // its ack deadline passed: nacked by the driver
)

// delivery is one received message; it is the driver.Message's AckID.
type delivery struct {
	msg      *pubsub.Message
	dm       *driver.Message
	pubsubID string
	received time.Time
	done     chan struct{} // closed when the callback may return

	// guarded by subscription.mu
	state    int
	deadline time.Time   // while handed out: nacked by the watchdog after it
	timer    *time.Timer // pending delayed nack
}

// run is one invocation of the library's Subscriber.Receive.
type run struct {
	sub    *pubsub.Subscriber
	cancel context.CancelFunc
	stop   chan struct{} // closed when the run stops: waiting callbacks nack
	done   chan struct{} // closed when Receive returned
	err    error         // Receive's result, set before done is closed
}

type subscription struct {
	cfg         *config
	client      *pubsub.Client
	name        string // projects/<project>/subscriptions/<subscription>
	topicName   string
	dlqTopic    string // full name
	dlqSub      string // full name; "" when there is none to read
	ordered     bool
	maxAttempts int
	ackDeadline time.Duration

	// dlqCount caches the dead-letter count: counting pulls up to 1001
	// messages, too costly for every metrics scrape (see Stats).
	dlqMu    sync.Mutex
	dlqCount int64
	dlqAt    time.Time

	gate    *streamGate   // ends the library's streams on StopReceiving
	stopCh  chan struct{} // closed by StopReceiving
	drained chan struct{} // closed when StopReceiving ended the streams and handed back

	handoff chan *delivery
	closing chan struct{}
	tick    time.Duration
	bg      sync.WaitGroup // watchdog

	mu          sync.Mutex
	closed      bool
	stopping    bool              // StopReceiving was called
	drainDone   bool              // the streams are over: hand back at once
	pending     []*pubsub.Message // arrived while the streams were ending
	run         *run
	runs        []*run // every run not yet returned, for Close
	concurrency int    // largest ReceiveBatch max seen
	receivers   int    // ReceiveBatch calls in progress
	lastActive  time.Time
	waiting     int                    // deliveries offered to ReceiveBatch
	handed      map[*delivery]struct{} // handed out, unsettled
	delayed     map[*delivery]struct{} // nacked with a delay, not yet nacked
	poison      map[string]*poison     // ordering keys with a nacked message pending
	dlqPub      *pubsub.Publisher
	topicPub    *pubsub.Publisher
	nextSub     *pubsub.Subscriber // the Subscriber the next run uses (As)
}

var (
	_ driver.Subscription    = (*subscription)(nil)
	_ driver.Extender        = (*subscription)(nil)
	_ driver.DeadLetterQueue = (*subscription)(nil)
	_ driver.Stater          = (*subscription)(nil)
	_ driver.Pinger          = (*subscription)(nil)
	_ driver.ReceiveStopper  = (*subscription)(nil)
)

func openSubscription(ctx context.Context, cfg *config) (*subscription, error) {
	gate := newStreamGate()
	client, err := newClient(ctx, cfg.project, option.WithGRPCDialOption(gate.dialOption()))
	if err != nil {
		return nil, err
	}
	s := &subscription{
		cfg:       cfg,
		client:    client,
		gate:      gate,
		stopCh:    make(chan struct{}),
		drained:   make(chan struct{}),
		name:      cfg.subName(),
		topicName: cfg.topicName(),
		handoff:   make(chan *delivery),
		closing:   make(chan struct{}),
		handed:    map[*delivery]struct{}{},
		delayed:   map[*delivery]struct{}{},
		poison:    map[string]*poison{},
	}
	if err := s.configure(ctx); err != nil {
		_ = client.Close()
		return nil, err
	}
	s.tick = min(max(s.ackDeadline/10, 10*time.Millisecond), time.Second)
	s.nextSub = client.Subscriber(s.name)
	s.lastActive = time.Now()
	s.bg.Add(1)
	go s.watchdog()
	return s, nil
}

// configure reads the subscription's configuration, checks it against the
// URL and fills the subscription's settings.
func (s *subscription) configure(ctx context.Context) error {
	cfg := s.cfg
	ps, err := s.client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: s.name})
	switch {
	case isCode(err, codes.NotFound):
		return fmt.Errorf("pubsub: subscription %s does not exist (create it, e.g. with pubsub.Provision or opsctl bus provision): %w", s.name, driver.ErrNotFound)
	case isCode(err, codes.PermissionDenied):
		// May consume but not read the configuration: the URL must say it.
		if cfg.dlqTopic == "" || cfg.maxAttempts == 0 || !cfg.orderedSet {
			return invalidURL("the credentials may not read subscription %s (pubsub.subscriptions.get); give its dead_letter_topic, max_attempts and ordered in the URL", s.name)
		}
		s.dlqTopic = topicName(cfg.project, cfg.dlqTopic)
		s.maxAttempts = cfg.maxAttempts
		s.ordered = cfg.ordered
		s.ackDeadline = cfg.ackDeadline
		if s.ackDeadline == 0 {
			s.ackDeadline = defaultAckDeadline
		}
	case err != nil:
		return classify("get subscription "+s.name, err)
	default:
		if ps.Topic != s.topicName {
			return invalidURL("subscription %s is attached to topic %q, not %s", s.name, ps.Topic, s.topicName)
		}
		dlp := ps.GetDeadLetterPolicy()
		if dlp == nil || dlp.DeadLetterTopic == "" {
			return invalidURL("subscription %s has no dead-letter policy: Pub/Sub counts delivery attempts only with one; add it (pubsub.Provision or opsctl bus provision)", s.name)
		}
		s.dlqTopic = dlp.DeadLetterTopic
		s.maxAttempts = int(dlp.MaxDeliveryAttempts)
		if s.maxAttempts == 0 {
			s.maxAttempts = MinMaxDeliveryAttempts // the service's default
		}
		if s.maxAttempts < MinMaxDeliveryAttempts || s.maxAttempts > MaxMaxDeliveryAttempts {
			// Emulators accept any value; the service only 5 to 100.
			return invalidURL("subscription %s has MaxDeliveryAttempts %d; Pub/Sub allows %d to %d", s.name, s.maxAttempts, MinMaxDeliveryAttempts, MaxMaxDeliveryAttempts)
		}
		s.ordered = ps.EnableMessageOrdering
		s.ackDeadline = time.Duration(ps.AckDeadlineSeconds) * time.Second
		if s.ackDeadline <= 0 {
			s.ackDeadline = defaultAckDeadline
		}
		if cfg.ackDeadline > 0 {
			s.ackDeadline = cfg.ackDeadline
		}
		if cfg.dlqTopic != "" && topicName(cfg.project, cfg.dlqTopic) != s.dlqTopic {
			return invalidURL("dead_letter_topic=%s but subscription %s dead-letters to %s", cfg.dlqTopic, s.name, s.dlqTopic)
		}
		if cfg.maxAttempts != 0 && cfg.maxAttempts != s.maxAttempts {
			return invalidURL("max_attempts=%d but subscription %s has MaxDeliveryAttempts %d", cfg.maxAttempts, s.name, s.maxAttempts)
		}
		if cfg.orderedSet && cfg.ordered != s.ordered {
			return invalidURL("ordered=%t but subscription %s has message ordering %t", cfg.ordered, s.name, s.ordered)
		}
	}
	// The dead-letter subscription DeadLetters and Redrive read.
	dlqSubID := cfg.dlqSubscription
	if dlqSubID == "" {
		dlqSubID = lastSegment(s.dlqTopic)
	}
	dlqSub := subName(cfg.project, dlqSubID)
	ds, err := s.client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: dlqSub})
	switch {
	case err == nil:
		if ds.Topic != s.dlqTopic {
			return invalidURL("dead-letter subscription %s is attached to %q, not the dead-letter topic %s", dlqSub, ds.Topic, s.dlqTopic)
		}
		s.dlqSub = dlqSub
	case isCode(err, codes.NotFound):
		if cfg.dlqSubscription != "" {
			return fmt.Errorf("pubsub: dead-letter subscription %s does not exist: %w", dlqSub, driver.ErrNotFound)
		}
		// No DLQ to read: DeadLetter still publishes to the topic, but the
		// DeadLetterQueue capability is not advertised.
	case isCode(err, codes.PermissionDenied):
		s.dlqSub = dlqSub
	default:
		return classify("get subscription "+dlqSub, err)
	}
	return nil
}

func lastSegment(name string) string {
	for i := len(name) - 1; i >= 0; i-- {
		if name[i] == '/' {
			return name[i+1:]
		}
	}
	return name
}

// Capabilities reports what the subscription supports.
func (s *subscription) Capabilities() driver.Capabilities {
	return driver.Capabilities{
		Ordering:        s.ordered,
		FanOut:          true,
		NackDelay:       s.cfg.maxNackDelay > 0,
		Extend:          true,
		DeadLetterQueue: s.dlqSub != "",
		Stats:           true,
		AckDeadline:     s.ackDeadline,
		MaxAttempts:     s.maxAttempts,
	}
}

// ReceiveBatch returns up to max messages, starting the library's Receive
// if it is not running.
func (s *subscription) ReceiveBatch(ctx context.Context, max int) ([]*driver.Message, error) {
	if max <= 0 {
		return nil, nil
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, driver.ErrClosed
	}
	if s.stopping {
		s.mu.Unlock()
		select {
		case <-ctx.Done(): // the portable layer stops its receive loops first
			return nil, ctx.Err()
		case <-s.closing:
			return nil, driver.ErrClosed
		}
	}
	s.concurrency = maxInt(s.concurrency, max)
	r := s.run
	if r == nil {
		r = s.startRun()
	}
	s.receivers++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.receivers--
		s.lastActive = time.Now()
		s.mu.Unlock()
	}()

	var ds []*delivery
	select {
	case d := <-s.handoff:
		ds = append(ds, d)
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.closing:
		return nil, driver.ErrClosed
	case <-r.done:
		s.mu.Lock()
		if s.run == r {
			s.run = nil
		}
		s.mu.Unlock()
		if r.err != nil {
			return nil, classify("receive from "+s.name, r.err)
		}
		return nil, nil // stopped while idle; the next call starts another run
	}
more:
	for len(ds) < max {
		select {
		case d := <-s.handoff:
			ds = append(ds, d)
		default:
			break more
		}
	}
	now := time.Now()
	out := make([]*driver.Message, len(ds))
	s.mu.Lock()
	for i, d := range ds {
		s.waiting--
		d.state = stateHanded
		d.deadline = now.Add(s.ackDeadline)
		s.handed[d] = struct{}{}
		out[i] = d.dm
	}
	s.mu.Unlock()
	return out, nil
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// startRun starts the library's Receive. Called with s.mu held.
func (s *subscription) startRun() *run {
	sub := s.nextSub
	s.nextSub = s.client.Subscriber(s.name)
	n := s.concurrency
	if s.cfg.maxOutstanding > 0 {
		n = min(n, s.cfg.maxOutstanding)
	}
	sub.ReceiveSettings = pubsub.ReceiveSettings{
		MaxOutstandingMessages:     n,
		MaxOutstandingBytes:        s.cfg.maxOutstandingBytes,
		NumGoroutines:              s.cfg.streams,
		MaxExtension:               s.cfg.maxExtension,
		MaxDurationPerAckExtension: s.cfg.maxLease,
		// The default graceful shutdown: Receive returns once every callback
		// returned and the final acks and nacks were sent. Stopping a run
		// hands back what waits for a ReceiveBatch; Close also nacks what is
		// handed out or delayed, so a run always drains.
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{sub: sub, cancel: cancel, stop: make(chan struct{}), done: make(chan struct{})}
	s.run = r
	s.runs = append(s.runs, r)
	go func() {
		r.err = sub.Receive(ctx, func(_ context.Context, m *pubsub.Message) { s.callback(r, m) })
		close(r.done)
		s.mu.Lock()
		if s.run == r && r.err == nil {
			s.run = nil
		}
		for i, x := range s.runs {
			if x == r {
				s.runs = append(s.runs[:i], s.runs[i+1:]...)
				break
			}
		}
		s.mu.Unlock()
	}()
	return r
}

// stopRun stops r: callbacks still waiting for a ReceiveBatch nack their
// message, and the library stops streaming. Called with s.mu held.
func (s *subscription) stopRun(r *run) {
	select {
	case <-r.stop:
		return
	default:
	}
	close(r.stop)
	r.cancel()
	if s.run == r {
		s.run = nil
	}
}

// callback is the library's Receive callback: it offers the message to a
// ReceiveBatch and blocks until the message is settled, so that the
// library's flow control and ordering see the whole delivery.
func (s *subscription) callback(r *run, m *pubsub.Message) {
	dec := decode(m)
	if dec.redrive != "" && dec.redrive != s.cfg.subscription {
		m.Ack() // redriven for another subscription of the topic
		return
	}
	now := time.Now()
	s.mu.Lock()
	if s.stopping {
		s.holdForHandBack(m) // unlocks
		return
	}
	if s.ordered && dec.dm.Key != "" && s.poisoned(dec.dm.Key, m.ID, now) {
		s.mu.Unlock()
		m.Nack() // a nacked message of its key must be redelivered first
		return
	}
	d := &delivery{msg: m, pubsubID: m.ID, received: now, done: make(chan struct{})}
	dm := dec.dm
	dm.AckID = d
	d.dm = &dm
	s.waiting++
	s.mu.Unlock()

	select {
	case s.handoff <- d:
	case <-s.stopCh:
		s.mu.Lock()
		s.waiting--
		d.state = stateSettled
		s.holdForHandBack(m) // unlocks
		return
	case <-r.stop:
		s.mu.Lock()
		s.waiting--
		d.state = stateSettled
		s.mu.Unlock()
		m.Nack()
		return
	}
	<-d.done
}

// holdForHandBack hands m back once this consumer's streams are over, so
// that the server does not send it straight back to the stopping consumer;
// the callback returns at once, freeing the library's flow control to read
// what the server already sent. Called with s.mu held; unlocks it.
func (s *subscription) holdForHandBack(m *pubsub.Message) {
	if s.drainDone {
		s.mu.Unlock()
		m.Nack()
		return
	}
	s.pending = append(s.pending, m)
	s.mu.Unlock()
}

// StopReceiving stops fetching when a shutdown begins: the library's
// streams are half-closed (see streamGate), so that the server sends
// nothing more to this consumer; what it had already sent, and what no
// ReceiveBatch took, is nacked once the streams are over, so that it goes
// to other consumers at once. Handed-out deliveries can still be settled.
// It returns at once; Shutdown waits for the hand-back.
func (s *subscription) StopReceiving() {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return
	}
	s.stopping = true
	close(s.stopCh)
	s.mu.Unlock()
	go func() {
		defer close(s.drained)
		s.gate.close(streamDrainTimeout)
		s.mu.Lock()
		s.drainDone = true
		held := s.pending
		s.pending = nil
		s.mu.Unlock()
		for _, m := range held {
			m.Nack()
		}
	}()
}

// take moves a handed-out delivery to state to, failing if it is not handed
// out. It returns the delivery.
func (s *subscription) take(m *driver.Message, to int) (*delivery, error) {
	d, ok := m.AckID.(*delivery)
	if !ok || d == nil {
		return nil, errors.New("pubsub: message was not received from this driver")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch d.state {
	case stateHanded:
		d.state = to
		if to != stateSettling {
			s.release(d)
		}
		return d, nil
	case stateExpired:
		return nil, ErrLeaseExpired
	case stateSettling:
		return nil, errors.New("pubsub: message is being dead-lettered")
	}
	return nil, driver.ErrAlreadySettled
}

// release removes d from the handed-out set and lets its callback return.
// Called with s.mu held.
func (s *subscription) release(d *delivery) {
	delete(s.handed, d)
	select {
	case <-d.done:
	default:
		close(d.done)
	}
}

// Ack acknowledges the delivery.
func (s *subscription) Ack(ctx context.Context, m *driver.Message) error {
	d, err := s.take(m, stateSettled)
	if err != nil {
		return err
	}
	if _, err := d.msg.AckWithResult().Get(ctx); err != nil {
		return classify("ack", err)
	}
	return nil
}

// Nack hands the delivery back; with a delay, the delivery stays leased in
// memory and is nacked once the delay (at most max_nack_delay) has passed.
func (s *subscription) Nack(ctx context.Context, m *driver.Message, delay time.Duration) error {
	d, err := s.take(m, stateSettled)
	if err != nil {
		return err
	}
	now := time.Now()
	delay = min(delay, s.cfg.maxNackDelay)
	// The library stops extending the lease at max_extension from receipt.
	delay = min(delay, d.received.Add(s.cfg.maxExtension).Sub(now)-s.ackDeadline)
	s.mu.Lock()
	if s.ordered && d.dm.Key != "" {
		s.poisonKey(d.dm.Key, d.pubsubID, now.Add(max(delay, 0)))
	}
	if delay > 0 && !s.closed {
		s.delayed[d] = struct{}{}
		d.timer = time.AfterFunc(delay, func() { s.fireDelayed(d) })
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	_, err = d.msg.NackWithResult().Get(ctx)
	return classify("nack", err)
}

func (s *subscription) fireDelayed(d *delivery) {
	s.mu.Lock()
	_, pending := s.delayed[d]
	delete(s.delayed, d)
	s.mu.Unlock()
	if pending {
		d.msg.Nack()
	}
}

// Extend moves the delivery's ack deadline to d from now. The library keeps
// the lease until max_extension from receipt; Extend refuses to go beyond.
func (s *subscription) Extend(_ context.Context, m *driver.Message, d time.Duration) error {
	dl, ok := m.AckID.(*delivery)
	if !ok || dl == nil {
		return errors.New("pubsub: message was not received from this driver")
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch dl.state {
	case stateHanded, stateSettling:
	case stateExpired:
		return ErrLeaseExpired
	default:
		return driver.ErrAlreadySettled
	}
	until := now.Add(d)
	if limit := dl.received.Add(s.cfg.maxExtension); until.After(limit) {
		return fmt.Errorf("pubsub: cannot extend past max_extension (%v after receipt); raise it in the URL", s.cfg.maxExtension)
	}
	if until.After(dl.deadline) {
		dl.deadline = until
	}
	return nil
}

// watchdog nacks handed-out deliveries whose ack deadline passed and stops
// an idle run.
func (s *subscription) watchdog() {
	defer s.bg.Done()
	t := time.NewTicker(s.tick)
	defer t.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-t.C:
		}
		now := time.Now()
		var expired []*delivery
		s.mu.Lock()
		for d := range s.handed {
			if d.state == stateHanded && now.After(d.deadline) {
				d.state = stateExpired
				s.release(d)
				expired = append(expired, d)
				if s.ordered && d.dm.Key != "" {
					s.poisonKey(d.dm.Key, d.pubsubID, now)
				}
			}
		}
		if r := s.run; r != nil && s.receivers == 0 && len(s.handed) == 0 && now.Sub(s.lastActive) > idleStop {
			s.stopRun(r)
		}
		s.prunePoison(now)
		s.mu.Unlock()
		for _, d := range expired {
			d.msg.Nack()
		}
	}
}

// Close stops receiving: messages waiting for a ReceiveBatch, deliveries
// still handed out and delayed nacks are nacked at once. It waits for the
// library to flush its acks (at most runStopTimeout and a little).
func (s *subscription) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return s.Shutdown(ctx)
}

var _ driver.Shutdowner = (*subscription)(nil)

// Shutdown is Close waiting for the library to flush its acks and nacks
// until ctx is done; with ctx already done, it waits as Close does. Its
// Receive calls, cancelled, are waited for up to runStopTimeout whatever
// ctx says.
func (s *subscription) Shutdown(ctx context.Context) error {
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.Background(), runStopTimeout+5*time.Second)
		defer cancel()
	}
	s.StopReceiving()
	select {
	case <-s.drained:
	case <-ctx.Done():
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return driver.ErrClosed
	}
	s.closed = true
	close(s.closing)
	for _, r := range s.runs {
		s.stopRun(r)
	}
	var nack []*delivery
	for d := range s.handed {
		if d.state != stateHanded {
			continue // being dead-lettered: DeadLetter settles it
		}
		d.state = stateExpired
		s.release(d)
		nack = append(nack, d)
	}
	for d := range s.delayed {
		d.timer.Stop()
		nack = append(nack, d)
	}
	clear(s.delayed)
	runs := append([]*run(nil), s.runs...)
	pubs := []*pubsub.Publisher{s.dlqPub, s.topicPub}
	s.mu.Unlock()
	for _, d := range nack {
		d.msg.Nack()
	}
	s.bg.Wait()
	// The runs were cancelled above: the library returns from Receive once
	// their callbacks have (they were all let go). That wait is bounded by
	// runStopTimeout, not by ctx, which only bounds the grace: the portable
	// layer cancels ctx when the grace ends (Close cancels it at once,
	// possibly while this runs), and that is no reason to fail the close
	// of a Receive about to return.
	stopped := time.NewTimer(runStopTimeout)
	defer stopped.Stop()
	var errs []error
	for _, r := range runs {
		select {
		case <-r.done:
			if r.err != nil && !isCode(r.err, codes.Canceled) && !errors.Is(r.err, context.Canceled) {
				errs = append(errs, classify("receive from "+s.name, r.err))
			}
		case <-stopped.C:
			errs = append(errs, fmt.Errorf("pubsub: Receive on %s did not stop within %v", s.name, runStopTimeout))
		}
	}
	for _, p := range pubs {
		if p != nil {
			p.Stop()
		}
	}
	if err := s.client.Close(); err != nil {
		errs = append(errs, fmt.Errorf("pubsub: close: %w", err))
	}
	return errors.Join(errs...)
}

// Ping checks that the subscription exists. Credentials that may consume
// but not read the subscription's configuration pass.
func (s *subscription) Ping(ctx context.Context) error {
	_, err := s.client.SubscriptionAdminClient.GetSubscription(ctx, &pubsubpb.GetSubscriptionRequest{Subscription: s.name})
	switch {
	case err == nil, isCode(err, codes.PermissionDenied):
		return nil
	case isCode(err, codes.NotFound):
		return fmt.Errorf("pubsub: subscription %s does not exist: %w", s.name, driver.ErrNotFound)
	}
	return classify("get subscription "+s.name, err)
}

// Stats reports InFlight (this handle's deliveries being handled or
// waiting for a ReceiveBatch) and DeadLetters (exact up to 1000, -1
// beyond or without a dead-letter subscription). Backlog is -1: Pub/Sub's
// API does not report it.
func (s *subscription) Stats(ctx context.Context) (driver.Stats, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return driver.Stats{}, driver.ErrClosed
	}
	st := driver.Stats{Backlog: -1, InFlight: int64(s.waiting + len(s.handed)), DeadLetters: -1, OldestAge: -1}
	s.mu.Unlock()
	if s.dlqSub == "" {
		return st, nil
	}
	s.dlqMu.Lock()
	defer s.dlqMu.Unlock()
	if time.Since(s.dlqAt) < dlqCountTTL {
		st.DeadLetters = s.dlqCount
		return st, nil
	}
	const limit = 1000
	n := 0
	err := s.pullDLQ(ctx, limit+1, func(*pubsubpb.ReceivedMessage) { n++ })
	if err != nil {
		return driver.Stats{}, err
	}
	s.dlqCount = -1 // more than limit: unknown
	if n <= limit {
		s.dlqCount = int64(n)
	}
	s.dlqAt = time.Now()
	st.DeadLetters = s.dlqCount
	return st, nil
}

// dlqCountTTL is how long Stats reuses a dead-letter count: counting pulls
// the dead-letter subscription, which metrics exporters would otherwise do
// on every collection.
const dlqCountTTL = 15 * time.Second

// As converts to *pubsub.Client or *pubsub.Subscriber.
func (s *subscription) As(i any) bool {
	switch p := i.(type) {
	case **pubsub.Client:
		*p = s.client
	case **pubsub.Subscriber:
		s.mu.Lock()
		*p = s.nextSub
		if s.run != nil {
			*p = s.run.sub
		}
		s.mu.Unlock()
	default:
		return false
	}
	return true
}

// poison marks an ordering key whose message was nacked: later messages of
// the key that arrive before it comes back are nacked, each at most once.
type poison struct {
	msgID  string          // the nacked message's Pub/Sub ID
	until  time.Time       // forget the mark after this
	nacked map[string]bool // later messages already nacked under this mark
}

// poisonKey marks key after the nack of msgID, redelivered from at. Called
// with s.mu held.
func (s *subscription) poisonKey(key, msgID string, at time.Time) {
	s.poison[key] = &poison{msgID: msgID, until: at.Add(s.ackDeadline + 10*time.Second), nacked: map[string]bool{}}
}

// poisoned reports whether the message msgID of key must be nacked without
// being handed out. Called with s.mu held.
func (s *subscription) poisoned(key, msgID string, now time.Time) bool {
	p := s.poison[key]
	switch {
	case p == nil:
		return false
	case msgID == p.msgID, now.After(p.until), p.nacked[msgID]:
		// The nacked message is back; or the mark is stale; or Pub/Sub
		// sends this one again: it now heads its key (the nacked one went
		// elsewhere or to the dead-letter topic).
		delete(s.poison, key)
		return false
	}
	p.nacked[msgID] = true
	return true
}

func (s *subscription) prunePoison(now time.Time) {
	for k, p := range s.poison {
		if now.After(p.until) {
			delete(s.poison, k)
		}
	}
}
