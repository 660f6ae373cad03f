package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/IBM/sarama"

	"github.com/payrail/payrail/bus/driver"
)

// recState is where a record is in its handle.
type recState uint8

const (
	stReady    recState = iota + 1 // in the ready queue
	stHeld                         // waiting behind an earlier record with its key
	stDelayed                      // nacked with a delay; a timer makes it ready
	stInFlight                     // handed to a receiver, not settled
	stGone                         // settled or dropped; no longer owned
)

// record is one consumed Kafka record owned by a subscription handle.
// Fields other than immutable ones are guarded by the subscription's mutex.
type record struct {
	claim    *claim
	offset   int64
	id, key  string
	body     []byte
	attrs    map[string]string
	headers  []*sarama.RecordHeader
	ts       time.Time
	attempts int // deliveries so far
	state    recState
	cur      *delivery
	timer    *time.Timer
}

// delivery is the receipt of one delivery of a record.
type delivery struct {
	rec      *record
	msg      driver.Message
	settled  bool
	settling bool // a dead-letter produce is under way
}

// claim is this handle's state for one claimed partition.
type claim struct {
	partition int32
	sess      sarama.ConsumerGroupSession
	tracker   *offsetTracker
	owned     map[*record]struct{}
	revoked   bool          // the claim is ending: nothing new is handed out
	gone      bool          // the claim ended: settles no longer commit
	changed   chan struct{} // closed and replaced when a record leaves

	// Delivery attempts kept in the committed offset metadata (see
	// attempts.go): attempts maps the offsets at or after the commit point
	// that were nacked (or seeded from the metadata at the claim's start)
	// to their deliveries so far; meta is their encoding, sent with every
	// commit of the partition, and metaMax the highest offset it names.
	attempts map[int64]int
	meta     string
	metaMax  int64
}

// keyQueue serialises one key on an ordered subscription.
type keyQueue struct {
	active *record   // the record with the key that is ready, delayed or in flight
	held   []*record // later records with the key, in offset order
}

// subscription is the driver.Subscription: one member of a consumer group.
type subscription struct {
	cfg    *config
	client sarama.Client
	group  sarama.ConsumerGroup
	cancel context.CancelFunc
	loop   chan struct{} // closed when the consume loop returned
	slots  chan struct{} // one per owned record, up to prefetch
	dlq    *dlq

	mu       sync.Mutex
	closed   bool
	closing  chan struct{}
	ready    []*record
	keys     map[string]*keyQueue // nil unless ordered
	claims   map[int32]*claim
	inFlight int
	wake     chan struct{} // closed when records become ready; nil if none waits
	fatal    error         // a non-retryable consume error, reported by ReceiveBatch
}

var (
	_ driver.Subscription    = (*subscription)(nil)
	_ driver.DeadLetterQueue = (*subscription)(nil)
	_ driver.Stater          = (*subscription)(nil)
	_ driver.Pinger          = (*subscription)(nil)
)

func openSubscription(ctx context.Context, cfg *config) (*subscription, error) {
	client, err := newClient(ctx, cfg, cfg.topic, cfg.dlqTopic)
	if err != nil {
		return nil, err
	}
	group, err := sarama.NewConsumerGroupFromClient(cfg.group, client)
	if err != nil {
		_ = client.Close()
		return nil, classify("consumer group "+cfg.group, err)
	}
	s := &subscription{
		cfg:     cfg,
		client:  client,
		group:   group,
		loop:    make(chan struct{}),
		slots:   make(chan struct{}, cfg.prefetch),
		closing: make(chan struct{}),
		claims:  map[int32]*claim{},
	}
	s.dlq = newDLQ(s)
	if cfg.ordered {
		s.keys = map[string]*keyQueue{}
	}
	lctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.consume(lctx)
	return s, nil
}

// consume runs the group session loop until the handle closes.
func (s *subscription) consume(ctx context.Context) {
	defer close(s.loop)
	failures := 0
	for {
		err := s.group.Consume(ctx, []string{s.cfg.topic}, (*groupHandler)(s))
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			failures = 0
			continue // a rebalance ended the session; join again
		}
		failures++
		err = classify("consume "+s.cfg.topic, err)
		if errors.Is(err, driver.ErrNotFound) || errors.Is(err, driver.ErrPermission) || errors.Is(err, driver.ErrInvalidURL) {
			s.mu.Lock()
			s.fatal = err
			s.wakeLocked()
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(100*time.Millisecond<<min(failures, 6), 5*time.Second)):
		}
	}
}

// groupHandler is the sarama.ConsumerGroupHandler of a subscription.
type groupHandler subscription

func (h *groupHandler) Setup(sarama.ConsumerGroupSession) error {
	s := (*subscription)(h)
	s.mu.Lock()
	s.fatal = nil
	s.mu.Unlock()
	return nil
}

func (h *groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim feeds the partition's records to the handle until the claim
// ends, then drains it: see endClaim.
func (h *groupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, cl sarama.ConsumerGroupClaim) error {
	s := (*subscription)(h)
	done := sess.Context().Done()
	attempts, meta, ok := s.loadAttempts(cl.Partition(), cl.InitialOffset(), done)
	if !ok {
		return nil // the session ended first
	}
	c := &claim{
		partition: cl.Partition(),
		sess:      sess,
		tracker:   newOffsetTracker(cl.InitialOffset()),
		owned:     map[*record]struct{}{},
		changed:   make(chan struct{}),
		attempts:  attempts,
		meta:      meta,
		metaMax:   -1,
	}
	for o := range attempts {
		c.metaMax = max(c.metaMax, o)
	}
	s.mu.Lock()
	s.claims[c.partition] = c
	s.mu.Unlock()
	defer s.endClaim(c)
	for {
		var msg *sarama.ConsumerMessage
		var ok bool
		select {
		case msg, ok = <-cl.Messages():
			if !ok {
				return nil
			}
		case <-done:
			return nil
		}
		select {
		case s.slots <- struct{}{}:
		case <-done:
			return nil
		}
		s.admit(c, msg)
	}
}

// admit takes ownership of a fetched record (the caller holds a slot for it).
func (s *subscription) admit(c *claim, msg *sarama.ConsumerMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.revoked {
		<-s.slots
		return
	}
	if err := c.tracker.add(msg.Offset); err != nil {
		<-s.slots // a duplicate fetch: already owned
		return
	}
	r := &record{claim: c, offset: msg.Offset, key: string(msg.Key), body: msg.Value, ts: msg.Timestamp}
	if c.attempts != nil {
		r.attempts = c.attempts[msg.Offset] // deliveries before this claim
	}
	r.attrs = make(map[string]string, len(msg.Headers))
	redrive := ""
	for _, h := range msg.Headers {
		if h == nil {
			continue
		}
		k := string(h.Key)
		switch {
		case k == HeaderID:
			r.id = string(h.Value)
		case k == HeaderRedriveGroup:
			redrive = string(h.Value)
		case reservedHeader(k):
		default:
			r.attrs[k] = string(h.Value)
		}
	}
	r.headers = msg.Headers
	if r.id == "" {
		r.id = fmt.Sprintf("%s-%d-%d", msg.Topic, msg.Partition, msg.Offset)
	}
	if redrive != "" && redrive != s.cfg.group {
		// Redriven for another group: not ours to handle.
		s.commitLocked(c, r.offset)
		<-s.slots
		return
	}
	c.owned[r] = struct{}{}
	if s.keys != nil && r.key != "" {
		if kq := s.keys[r.key]; kq != nil {
			r.state = stHeld
			kq.held = append(kq.held, r)
			return
		}
		s.keys[r.key] = &keyQueue{active: r}
	}
	s.pushReadyLocked(r)
}

// endClaim drops the claim's records not being handled, waits up to
// drain_timeout for the ones being handled, and commits.
func (s *subscription) endClaim(c *claim) {
	s.mu.Lock()
	c.revoked = true
	for r := range c.owned {
		if r.state != stInFlight {
			s.releaseLocked(r)
		}
	}
	deadline := time.NewTimer(s.cfg.drainTimeout)
	defer deadline.Stop()
wait:
	for c.hasInFlight() && !s.closed {
		ch := c.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			s.mu.Lock()
			break wait
		case <-s.closing:
		}
		s.mu.Lock()
	}
	c.gone = true
	if s.claims[c.partition] == c {
		delete(s.claims, c.partition)
	}
	s.mu.Unlock()
	c.sess.Commit()
}

func (c *claim) hasInFlight() bool {
	for r := range c.owned {
		if r.state == stInFlight {
			return true
		}
	}
	return false
}

func (s *subscription) wakeLocked() {
	if s.wake != nil {
		close(s.wake)
		s.wake = nil
	}
}

func (s *subscription) pushReadyLocked(r *record) {
	// The state first: a record promoted from its key's held list (see
	// releaseLocked) is its key's active record from here on, so that
	// releasing it below, when its claim is ending, lets the next record
	// with the key go instead of looking for it among the held ones (which
	// left the key blocked for as long as the handle lived).
	r.state = stReady
	if r.claim.revoked {
		s.releaseLocked(r)
		return
	}
	s.ready = append(s.ready, r)
	s.wakeLocked()
}

// releaseLocked ends the handle's ownership of r (settled or dropped) and
// lets the next record with its key go.
func (s *subscription) releaseLocked(r *record) {
	if r.state == stGone {
		return
	}
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	if r.state == stInFlight {
		s.inFlight--
	}
	wasHeld := r.state == stHeld
	r.state = stGone
	c := r.claim
	delete(c.owned, r)
	close(c.changed)
	c.changed = make(chan struct{})
	<-s.slots
	if s.keys == nil || r.key == "" {
		return
	}
	kq := s.keys[r.key]
	if kq == nil {
		return
	}
	if wasHeld {
		kq.held = deleteRecord(kq.held, r)
		return
	}
	if kq.active != r {
		return
	}
	if len(kq.held) == 0 {
		delete(s.keys, r.key)
		return
	}
	next := kq.held[0]
	kq.held = kq.held[1:]
	kq.active = next
	s.pushReadyLocked(next)
}

func deleteRecord(rs []*record, r *record) []*record {
	for i, x := range rs {
		if x == r {
			return append(rs[:i], rs[i+1:]...)
		}
	}
	return rs
}

// commitLocked marks offset settled and, if the commit point advanced,
// marks it in the session (sarama commits marked offsets every
// commit_interval, and on endClaim), with the attempts metadata as last
// encoded (by a nack); it is dropped once the commit point passed every
// offset it names.
func (s *subscription) commitLocked(c *claim, offset int64) {
	commit, advanced, err := c.tracker.settle(offset)
	if err == nil && advanced && !c.gone {
		if c.meta != "" && commit > c.metaMax {
			c.meta = ""
		}
		c.sess.MarkOffset(s.cfg.topic, c.partition, commit, c.meta)
	}
}

// keepAttemptsLocked records r's deliveries in its claim's offset metadata,
// re-marking the current commit point with it, and reports whether it did
// (not if attempts_metadata_max=0 or the claim ended).
func (s *subscription) keepAttemptsLocked(r *record) bool {
	c := r.claim
	if s.cfg.attemptsMetadataMax <= 0 || c.gone {
		return false
	}
	commit := c.tracker.commitPoint()
	if commit < 0 {
		return false // cannot happen: r is unsettled, so the commit point is an offset
	}
	if c.attempts == nil {
		c.attempts = map[int64]int{}
	}
	c.attempts[r.offset] = r.attempts
	for o := range c.attempts {
		if o < commit {
			delete(c.attempts, o)
		}
	}
	c.meta, c.metaMax = encodeAttempts(c.attempts, s.cfg.attemptsMetadataMax)
	// MarkOffset moves sarama's offset up to the commit point if it is
	// not there yet (no commit so far); ResetOffset replaces the metadata
	// at an unchanged offset.
	c.sess.MarkOffset(s.cfg.topic, c.partition, commit, c.meta)
	c.sess.ResetOffset(s.cfg.topic, c.partition, commit, c.meta)
	return true
}

// ReceiveBatch hands out up to max ready records, blocking until one is
// ready, ctx is done or the handle closes.
func (s *subscription) ReceiveBatch(ctx context.Context, max int) ([]*driver.Message, error) {
	if max < 1 {
		return nil, fmt.Errorf("kafka: ReceiveBatch of %d messages; want at least 1", max)
	}
	s.mu.Lock()
	for {
		if s.closed {
			s.mu.Unlock()
			return nil, fmt.Errorf("kafka: receive: %w", driver.ErrClosed)
		}
		if err := ctx.Err(); err != nil {
			s.mu.Unlock()
			return nil, err
		}
		var out []*driver.Message
		for len(out) < max && len(s.ready) > 0 {
			r := s.ready[0]
			s.ready[0] = nil
			s.ready = s.ready[1:]
			if r.state != stReady {
				continue
			}
			r.attempts++
			d := &delivery{rec: r}
			d.msg = driver.Message{
				ID:              r.id,
				Key:             r.key,
				Body:            bytes.Clone(r.body),
				Attributes:      maps.Clone(r.attrs),
				DeliveryAttempt: r.attempts,
				PublishTime:     r.ts,
				AckID:           d,
			}
			r.cur = d
			r.state = stInFlight
			s.inFlight++
			out = append(out, &d.msg)
		}
		if len(s.ready) == 0 {
			s.ready = nil // let the backing array go
		}
		if len(out) > 0 {
			s.mu.Unlock()
			return out, nil
		}
		if s.fatal != nil {
			err := s.fatal
			s.mu.Unlock()
			return nil, err
		}
		if s.wake == nil {
			s.wake = make(chan struct{})
		}
		wake := s.wake
		s.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
		case <-s.closing:
		}
		s.mu.Lock()
	}
}

// current locks s.mu and returns the delivery m is a receipt of; on error
// the lock is not held.
func (s *subscription) current(op string, m *driver.Message) (*delivery, error) {
	if m == nil {
		return nil, fmt.Errorf("kafka: %s of a nil message", op)
	}
	d, ok := m.AckID.(*delivery)
	if !ok || d == nil || d.rec.claim == nil {
		return nil, fmt.Errorf("kafka: %s of message %q, which was not received from this subscription", op, m.ID)
	}
	s.mu.Lock()
	var err error
	switch {
	case s.closed:
		err = driver.ErrClosed
	case d.settled || d.settling || d.rec.cur != d:
		err = driver.ErrAlreadySettled
	}
	if err == nil {
		if _, mine := d.rec.claim.owned[d.rec]; !mine && d.rec.state != stGone {
			err = fmt.Errorf("not received from this subscription")
		}
	}
	if err != nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("kafka: %s of message %q (attempt %d): %w", op, m.ID, m.DeliveryAttempt, err)
	}
	return d, nil
}

// Ack settles the record; its offset becomes committable once every earlier
// one is settled too.
func (s *subscription) Ack(_ context.Context, m *driver.Message) error {
	d, err := s.current("ack", m)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	return s.settleLocked(d, "ack")
}

func (s *subscription) settleLocked(d *delivery, op string) error {
	r := d.rec
	c := r.claim
	d.settled = true
	r.cur = nil
	if r.state != stInFlight || c.gone {
		s.releaseLocked(r)
		return fmt.Errorf("kafka: %s of message %q: %w", op, r.id, ErrRevoked)
	}
	s.releaseLocked(r)
	s.commitLocked(c, r.offset)
	return nil
}

// Nack keeps the record and delivers it again after delay, with its
// attempt count incremented. The count is first committed in the
// partition's offset metadata, so that the next delivery, by this handle or
// another, continues from it. If its partition is being revoked, the record
// is let go instead: the partition's next owner delivers it again (the
// count is committed when the claim ends).
func (s *subscription) Nack(_ context.Context, m *driver.Message, delay time.Duration) error {
	d, err := s.current("nack", m)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	r := d.rec
	d.settled = true
	r.cur = nil
	if r.state != stInFlight {
		return nil // dropped with its claim: redelivered by the new owner
	}
	s.inFlight--
	r.state = stDelayed // not in flight any more
	kept := s.keepAttemptsLocked(r)
	if r.claim.revoked {
		s.releaseLocked(r)
		return nil
	}
	if kept {
		// Commit before the record can be delivered again: a crash after
		// this point does not lose the count (sarama retries a failed
		// commit on its next one).
		s.mu.Unlock()
		r.claim.sess.Commit()
		s.mu.Lock()
		if r.state != stDelayed {
			return nil // the claim ended meanwhile
		}
	}
	if delay <= 0 {
		s.pushReadyLocked(r)
		return nil
	}
	r.state = stDelayed
	r.timer = time.AfterFunc(delay, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if r.state == stDelayed {
			r.timer = nil
			s.pushReadyLocked(r)
		}
	})
	// If the claim ends meanwhile, releaseLocked stops the timer.
	return nil
}

// DeadLetter produces the record to the dead-letter topic with reason and
// then settles it like Ack.
func (s *subscription) DeadLetter(ctx context.Context, m *driver.Message, reason string) error {
	d, err := s.current("dead-letter", m)
	if err != nil {
		return err
	}
	r := d.rec
	if r.claim.gone {
		s.settleLocked(d, "dead-letter") //nolint:errcheck // reported below
		s.mu.Unlock()
		return fmt.Errorf("kafka: dead-letter of message %q: %w", r.id, ErrRevoked)
	}
	d.settling = true
	attempts := r.attempts
	s.mu.Unlock()

	err = s.dlq.produce(ctx, r, reason, attempts)

	s.mu.Lock()
	defer s.mu.Unlock()
	d.settling = false
	if err != nil {
		return err
	}
	return s.settleLocked(d, "dead-letter")
}

// Capabilities: per-key ordering (unless ordered=false), fan-out across
// groups, nack delays, a dead-letter queue and stats. No ack deadline.
func (s *subscription) Capabilities() driver.Capabilities {
	return driver.Capabilities{
		Ordering:        s.cfg.ordered,
		FanOut:          true,
		NackDelay:       true,
		DeadLetterQueue: true,
		Stats:           true,
	}
}

// Ping refreshes the topic's metadata, which needs a live broker.
func (s *subscription) Ping(ctx context.Context) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return fmt.Errorf("kafka: ping: %w", driver.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return classify("ping", s.client.RefreshMetadata(s.cfg.topic))
}

// Stats reads the group's backlog (see the package documentation), this
// handle's in-flight count and this group's dead letters.
func (s *subscription) Stats(ctx context.Context) (driver.Stats, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return driver.Stats{}, fmt.Errorf("kafka: stats: %w", driver.ErrClosed)
	}
	client, err := s.dlq.sideClient()
	if err != nil {
		return driver.Stats{}, err
	}
	parts, err := client.Partitions(s.cfg.topic)
	if err != nil {
		return driver.Stats{}, classify("stats", err)
	}
	committed, err := s.committed(client, parts)
	if err != nil {
		return driver.Stats{}, err
	}
	hwm := make(map[int32]int64, len(parts))
	for _, p := range parts {
		if err := ctx.Err(); err != nil {
			return driver.Stats{}, err
		}
		if hwm[p], err = client.GetOffset(s.cfg.topic, p, sarama.OffsetNewest); err != nil {
			return driver.Stats{}, classify("stats", err)
		}
	}
	oldest := func(p int32) (int64, error) {
		o, err := client.GetOffset(s.cfg.topic, p, sarama.OffsetOldest)
		return o, classify("stats", err)
	}
	var st driver.Stats
	s.mu.Lock()
	local := map[int32]int64{} // owned partitions: next offset to fetch and records waiting
	start := map[int32]int64{} // owned partitions: the lowest unsettled offset
	for p, c := range s.claims {
		if c.revoked || c.tracker.last < 0 {
			continue
		}
		start[p] = c.tracker.commit
		waiting := int64(0)
		for r := range c.owned {
			if r.state != stInFlight {
				waiting++
			}
		}
		local[p] = max(0, hwm[p]-(c.tracker.last+1)) + waiting
	}
	st.InFlight = int64(s.inFlight)
	s.mu.Unlock()
	pending := map[int32]int64{} // partitions holding unsettled records: the first one's offset
	for _, p := range parts {
		if n, ok := local[p]; ok {
			st.Backlog += n
			if off := start[p]; off >= 0 && off < hwm[p] {
				pending[p] = off
			}
			continue
		}
		off := committed[p]
		if off < 0 {
			if off, err = oldest(p); err != nil {
				return driver.Stats{}, err
			}
		}
		st.Backlog += max(0, hwm[p]-off)
		if off < hwm[p] {
			pending[p] = off
		}
	}
	times, err := s.dlq.recordTimes(ctx, s.cfg.topic, pending)
	if err != nil {
		return driver.Stats{}, err
	}
	for _, t := range times {
		st.OldestAge = max(st.OldestAge, time.Since(t))
	}
	if st.DeadLetters, err = s.dlq.count(ctx); err != nil {
		return driver.Stats{}, err
	}
	return st, nil
}

// fetchCommitted reads the group's committed offsets and their metadata.
func (s *subscription) fetchCommitted(client sarama.Client, parts []int32) (*sarama.OffsetFetchResponse, error) {
	coord, err := client.Coordinator(s.cfg.group)
	if err != nil {
		return nil, classify("coordinator", err)
	}
	resp, err := coord.FetchOffset(sarama.NewOffsetFetchRequest(s.cfg.sarama.Version, s.cfg.group, map[string][]int32{s.cfg.topic: parts}))
	if err != nil {
		return nil, classify("fetch offsets", err)
	}
	return resp, nil
}

// committed reads the group's committed offsets (-1 where none).
func (s *subscription) committed(client sarama.Client, parts []int32) (map[int32]int64, error) {
	resp, err := s.fetchCommitted(client, parts)
	if err != nil {
		return nil, err
	}
	out := make(map[int32]int64, len(parts))
	for _, p := range parts {
		out[p] = -1
		if b := resp.GetBlock(s.cfg.topic, p); b != nil && errors.Is(b.Err, sarama.ErrNoError) {
			out[p] = b.Offset
		}
	}
	return out, nil
}

// PeekDeadLetters returns up to max of this group's dead letters (all if
// max <= 0) without removing them.
func (s *subscription) PeekDeadLetters(ctx context.Context, max int) ([]*driver.DeadLetter, error) {
	if err := s.usable("peek dead letters"); err != nil {
		return nil, err
	}
	return s.dlq.peek(ctx, max)
}

// Redrive produces up to max of this group's dead letters (all if max <= 0)
// back to the topic and moves the group's redrive cursor past them.
func (s *subscription) Redrive(ctx context.Context, max int) (int, error) {
	if err := s.usable("redrive"); err != nil {
		return 0, err
	}
	return s.dlq.redrive(ctx, max)
}

func (s *subscription) usable(op string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("kafka: %s: %w", op, driver.ErrClosed)
	}
	return nil
}

// Close leaves the group: records not settled are delivered again to the
// group (their offsets are not committed); settled ones are committed.
func (s *subscription) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("kafka: close: %w", driver.ErrClosed)
	}
	s.closed = true
	close(s.closing)
	s.wakeLocked()
	s.mu.Unlock()
	s.cancel()
	<-s.loop
	err := s.group.Close()
	s.dlq.close()
	if cerr := s.client.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return classify("close", err)
	}
	return nil
}

// As supports *sarama.Client and *sarama.ConsumerGroup.
func (s *subscription) As(i any) bool {
	switch p := i.(type) {
	case *sarama.Client:
		*p = s.client
	case *sarama.ConsumerGroup:
		*p = s.group
	default:
		return false
	}
	return true
}

var _ driver.Returner = (*subscription)(nil)

// Return hands back records that were never given to a handler, without
// counting the delivery as an attempt or committing them: they are ready
// again for this member, and if it is closing, its claims end with their
// offsets uncommitted, so the group's next owner of the partition
// delivers them.
func (s *subscription) Return(_ context.Context, ms []*driver.Message) error {
	var first error
	for _, m := range ms {
		d, err := s.current("return", m)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		r := d.rec
		d.settled = true
		r.cur = nil
		if r.state == stInFlight {
			s.inFlight--
			r.state = stDelayed // not in flight any more
			r.attempts--
			s.pushReadyLocked(r)
		}
		s.mu.Unlock()
	}
	return first
}
