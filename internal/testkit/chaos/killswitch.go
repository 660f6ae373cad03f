package chaos

import (
	"context"
	"errors"
	"sync"
	"time"

	busdriver "github.com/payrail/payrail/bus/driver"
	gwdriver "github.com/payrail/payrail/gateway/driver"
	idemdriver "github.com/payrail/payrail/idempotency/driver"
	"github.com/payrail/payrail/payments"
)

// ErrKilled is returned by every wrapped call of a killed instance.
var ErrKilled = errors.New("chaos: instance killed (kill -9)")

// Switch is an instance's kill switch. Once Kill is called, every wrapper
// holding it refuses to act: the instance makes no further store,
// idempotency or bus call, and answers from the gateway are lost.
type Switch struct {
	once sync.Once
	dead chan struct{}
}

// NewSwitch returns a live switch.
func NewSwitch() *Switch { return &Switch{dead: make(chan struct{})} }

// Kill flips the switch; later calls do nothing.
func (s *Switch) Kill() { s.once.Do(func() { close(s.dead) }) }

// Dead reports whether Kill was called.
func (s *Switch) Dead() bool {
	select {
	case <-s.dead:
		return true
	default:
		return false
	}
}

func (s *Switch) check() error {
	if s.Dead() {
		return ErrKilled
	}
	return nil
}

// KillStore wraps a payment store with a switch: no call reaches the store
// after the kill, and an answer that arrives after it is lost.
type KillStore struct {
	payments.Store
	sw *Switch
}

// NewKillStore wraps s.
func NewKillStore(s payments.Store, sw *Switch) *KillStore { return &KillStore{Store: s, sw: sw} }

// Create implements payments.Store.
func (k *KillStore) Create(ctx context.Context, p *payments.Payment) error {
	if err := k.sw.check(); err != nil {
		return err
	}
	err := k.Store.Create(ctx, p)
	return errors.Join(err, k.sw.check())
}

// Get implements payments.Store.
func (k *KillStore) Get(ctx context.Context, merchant, id string) (*payments.Payment, error) {
	if err := k.sw.check(); err != nil {
		return nil, err
	}
	p, err := k.Store.Get(ctx, merchant, id)
	if kerr := k.sw.check(); kerr != nil {
		return nil, kerr
	}
	return p, err
}

// Update implements payments.Store.
func (k *KillStore) Update(ctx context.Context, p *payments.Payment) error {
	if err := k.sw.check(); err != nil {
		return err
	}
	err := k.Store.Update(ctx, p)
	return errors.Join(err, k.sw.check())
}

// ListStale implements payments.Store.
func (k *KillStore) ListStale(ctx context.Context, st []payments.Status, before time.Time, limit int) ([]*payments.Payment, error) {
	if err := k.sw.check(); err != nil {
		return nil, err
	}
	ps, err := k.Store.ListStale(ctx, st, before, limit)
	if kerr := k.sw.check(); kerr != nil {
		return nil, kerr
	}
	return ps, err
}

// KillIdempotency wraps an idempotency driver store with a switch.
type KillIdempotency struct {
	idemdriver.Store
	sw *Switch
}

// NewKillIdempotency wraps s.
func NewKillIdempotency(s idemdriver.Store, sw *Switch) *KillIdempotency {
	return &KillIdempotency{Store: s, sw: sw}
}

// Begin implements idempotency/driver.Store.
func (k *KillIdempotency) Begin(ctx context.Context, r *idemdriver.BeginRequest) (*idemdriver.BeginResult, error) {
	if err := k.sw.check(); err != nil {
		return nil, err
	}
	res, err := k.Store.Begin(ctx, r)
	if kerr := k.sw.check(); kerr != nil {
		return nil, kerr
	}
	return res, err
}

// Complete implements idempotency/driver.Store.
func (k *KillIdempotency) Complete(ctx context.Context, r idemdriver.CompleteRequest) error {
	if err := k.sw.check(); err != nil {
		return err
	}
	return errors.Join(k.Store.Complete(ctx, r), k.sw.check())
}

// Release implements idempotency/driver.Store.
func (k *KillIdempotency) Release(ctx context.Context, merchant, key, token string) error {
	if err := k.sw.check(); err != nil {
		return err
	}
	return errors.Join(k.Store.Release(ctx, merchant, key, token), k.sw.check())
}

// Extend implements idempotency/driver.Store.
func (k *KillIdempotency) Extend(ctx context.Context, r idemdriver.ExtendRequest) error {
	if err := k.sw.check(); err != nil {
		return err
	}
	return errors.Join(k.Store.Extend(ctx, r), k.sw.check())
}

// KillTopic wraps a bus driver topic with a switch, and publishes a
// message a second time with the Dice's DuplicatePublish probability.
type KillTopic struct {
	busdriver.Topic
	sw   *Switch
	dice *Dice
	dup  float64
}

// NewKillTopic wraps t.
func NewKillTopic(t busdriver.Topic, sw *Switch, dice *Dice, dup float64) *KillTopic {
	return &KillTopic{Topic: t, sw: sw, dice: dice, dup: dup}
}

// SendBatch implements bus/driver.Topic.
func (k *KillTopic) SendBatch(ctx context.Context, ms []*busdriver.Message) error {
	if err := k.sw.check(); err != nil {
		return err
	}
	if err := k.Topic.SendBatch(ctx, ms); err != nil {
		return errors.Join(err, k.sw.check())
	}
	if k.dice.Roll(k.dup, FaultDuplicatePub) && k.sw.check() == nil {
		// A duplicate the broker does not deduplicate (a producer retry
		// after a lost ack): a copy of every message, same ID.
		cp := make([]*busdriver.Message, len(ms))
		for i, m := range ms {
			c := *m
			cp[i] = &c
		}
		_ = k.Topic.SendBatch(ctx, cp)
	}
	return k.sw.check()
}

// KillSubscription wraps a bus driver subscription with a switch: a killed
// instance receives nothing more and settles nothing (its deliveries are
// redelivered to the survivors when their lease lapses or the consumer
// group rebalances).
type KillSubscription struct {
	busdriver.Subscription
	sw *Switch
}

// NewKillSubscription wraps s.
func NewKillSubscription(s busdriver.Subscription, sw *Switch) *KillSubscription {
	return &KillSubscription{Subscription: s, sw: sw}
}

// Stats forwards to the wrapped subscription when it reports stats (the
// worker's shutdown drains the in-memory queue by them); the capabilities
// come from the wrapped subscription too.
func (k *KillSubscription) Stats(ctx context.Context) (busdriver.Stats, error) {
	st, ok := k.Subscription.(busdriver.Stater)
	if !ok || k.sw.Dead() {
		return busdriver.Stats{}, busdriver.ErrClosed
	}
	return st.Stats(ctx)
}

// ReceiveBatch implements bus/driver.Subscription; after the kill it
// blocks until ctx ends.
func (k *KillSubscription) ReceiveBatch(ctx context.Context, max int) ([]*busdriver.Message, error) {
	if k.sw.Dead() {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
			return nil, nil
		}
	}
	ms, err := k.Subscription.ReceiveBatch(ctx, max)
	if k.sw.Dead() {
		return nil, nil // received by a dead process: never handled
	}
	return ms, err
}

// Ack implements bus/driver.Subscription.
func (k *KillSubscription) Ack(ctx context.Context, m *busdriver.Message) error {
	if err := k.sw.check(); err != nil {
		return err
	}
	return k.Subscription.Ack(ctx, m)
}

// Nack implements bus/driver.Subscription.
func (k *KillSubscription) Nack(ctx context.Context, m *busdriver.Message, d time.Duration) error {
	if err := k.sw.check(); err != nil {
		return err
	}
	return k.Subscription.Nack(ctx, m, d)
}

// DeadLetter implements bus/driver.Subscription.
func (k *KillSubscription) DeadLetter(ctx context.Context, m *busdriver.Message, reason string) error {
	if err := k.sw.check(); err != nil {
		return err
	}
	return k.Subscription.DeadLetter(ctx, m, reason)
}

// Extend implements bus/driver.Extender when the wrapped subscription does.
func (k *KillSubscription) Extend(ctx context.Context, m *busdriver.Message, d time.Duration) error {
	if err := k.sw.check(); err != nil {
		return err
	}
	if e, ok := k.Subscription.(busdriver.Extender); ok {
		return e.Extend(ctx, m, d)
	}
	return busdriver.ErrUnsupported
}

// KillGateway wraps the shared gateway (the provider as seen from one
// instance) with a switch: no call leaves a killed instance, and a call in
// flight at the kill reaches the provider, which may charge, but its
// answer is lost.
type KillGateway struct {
	gwdriver.Gateway
	sw   *Switch
	dice *Dice
}

// NewKillGateway wraps g.
func NewKillGateway(g gwdriver.Gateway, sw *Switch, dice *Dice) *KillGateway {
	return &KillGateway{Gateway: g, sw: sw, dice: dice}
}

func killed(sw *Switch, dice *Dice) error {
	if sw.Dead() {
		dice.Count(FaultLostAnswer)
		return &gwdriver.Error{Kind: gwdriver.KindUnknown, Code: "killed", Message: "chaos: answer lost, the instance was killed", Err: ErrKilled}
	}
	return nil
}

func guard[R any](sw *Switch, dice *Dice, call func() (R, error)) (R, error) {
	var zero R
	if sw.Dead() {
		return zero, &gwdriver.Error{Kind: gwdriver.KindTransient, Code: "killed", NotProcessed: true, Err: ErrKilled}
	}
	r, err := call()
	if kerr := killed(sw, dice); kerr != nil {
		return zero, kerr
	}
	return r, err
}

// Authorize implements gateway/driver.Gateway.
func (k *KillGateway) Authorize(ctx context.Context, r *gwdriver.AuthorizeRequest) (*gwdriver.Transaction, error) {
	return guard(k.sw, k.dice, func() (*gwdriver.Transaction, error) { return k.Gateway.Authorize(ctx, r) })
}

// Capture implements gateway/driver.Gateway.
func (k *KillGateway) Capture(ctx context.Context, r *gwdriver.CaptureRequest) (*gwdriver.Transaction, error) {
	return guard(k.sw, k.dice, func() (*gwdriver.Transaction, error) { return k.Gateway.Capture(ctx, r) })
}

// Void implements gateway/driver.Gateway.
func (k *KillGateway) Void(ctx context.Context, r *gwdriver.VoidRequest) (*gwdriver.Transaction, error) {
	return guard(k.sw, k.dice, func() (*gwdriver.Transaction, error) { return k.Gateway.Void(ctx, r) })
}

// Refund implements gateway/driver.Gateway.
func (k *KillGateway) Refund(ctx context.Context, r *gwdriver.RefundRequest) (*gwdriver.Transaction, error) {
	return guard(k.sw, k.dice, func() (*gwdriver.Transaction, error) { return k.Gateway.Refund(ctx, r) })
}

// Lookup implements gateway/driver.Gateway.
func (k *KillGateway) Lookup(ctx context.Context, key string) (*gwdriver.Transaction, error) {
	return guard(k.sw, k.dice, func() (*gwdriver.Transaction, error) { return k.Gateway.Lookup(ctx, key) })
}

// Close implements gateway/driver.Gateway; the shared provider stays open.
func (k *KillGateway) Close() error { return nil }
