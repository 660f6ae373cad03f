// Package mock is a deterministic, stateful payment gateway for development
// and tests, registered as "mock".
//
// It behaves like a real provider: it keeps every payment it authorized so
// that Capture, Void, Refund and Lookup follow the provider's rules, and it
// honours idempotency keys (the same key with the same request returns the
// first result; with a different request it is refused). Outcomes depend on
// the payment method token, after Stripe's test tokens:
//
//	pm_card_visa, pm_card_mastercard, pm_card_amex and any other pm_ token: approved
//	pm_card_chargeDeclined      declined, decline code card_declined
//	pm_card_insufficientFunds   declined, decline code insufficient_funds
//	pm_card_expiredCard         declined, decline code expired_card
//	pm_card_incorrectCvc        declined, decline code incorrect_cvc
//	pm_card_processingError     transient error (not processed), every time
//	a token without the pm_ prefix: invalid request
//
// URL parameters inject faults:
//
//	mock://?latency=20ms&fail_rate=0.05&seed=42
//
//	latency    delay before every call answers (default 0)
//	fail_rate  probability in [0,1] that a call fails with a transient,
//	           not-processed error before doing anything (default 0)
//	seed       seed of the fault-injection random source (default 1), so a
//	           run is reproducible
package mock

import (
	"context"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/driver"
)

func init() { gateway.Register("mock", opener{}) }

type opener struct{}

func (opener) Open(_ context.Context, u *url.URL) (driver.Gateway, error) {
	var opts []Option
	for k, vs := range u.Query() {
		v := vs[len(vs)-1]
		switch k {
		case "latency":
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return nil, fmt.Errorf("mock: latency %q: want a non-negative duration such as 20ms", v)
			}
			opts = append(opts, WithLatency(d))
		case "fail_rate":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || f > 1 {
				return nil, fmt.Errorf("mock: fail_rate %q: want a number in [0,1]", v)
			}
			opts = append(opts, WithFailRate(f))
		case "seed":
			s, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("mock: seed %q: want an unsigned integer", v)
			}
			opts = append(opts, WithSeed(s))
		default:
			return nil, fmt.Errorf("mock: unknown URL parameter %q (want latency, fail_rate, seed)", k)
		}
	}
	return New(opts...), nil
}

// Option configures a Mock.
type Option func(*Mock)

// WithLatency delays every call by d.
func WithLatency(d time.Duration) Option { return func(m *Mock) { m.latency = d } }

// WithFailRate makes a fraction f of calls fail with a transient,
// not-processed error.
func WithFailRate(f float64) Option { return func(m *Mock) { m.failRate = f } }

// WithSeed seeds the fault-injection random source.
func WithSeed(seed uint64) Option {
	return func(m *Mock) { m.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }
}

// Mock is the mock gateway. Use New for a standalone one, or obtain the
// one behind a *gateway.Gateway with g.As(&m) where m is a *Mock.
type Mock struct {
	latency  time.Duration
	failRate float64

	rngMu sync.Mutex
	rng   *rand.Rand

	seq    atomic.Uint64
	calls  sync.Map // op -> *atomic.Int64
	shards [mockShards]shard
	pays   table // payments by the sequence number in their reference
}

// The mock's state is partitioned so that it does not serialise concurrent
// callers: idempotency keys live in shards chosen by hash, and payments in
// a table indexed by the sequence number of their reference, each with its
// own lock.
const mockShards = 16

type shard struct {
	mu   sync.Mutex
	keys map[string]*entry // by idempotency key
}

type payment struct {
	mu            sync.Mutex // guards tx
	tx            driver.Transaction
	paymentMethod string
}

const (
	chunkBits = 12
	maxChunks = 1 << 14 // room for 67M payments per mock
	refPrefix = "pi_mock_"
)

// table is an append-only two-level array of payments.
type table struct {
	chunks [maxChunks]atomic.Pointer[[1 << chunkBits]atomic.Pointer[payment]]
}

func (t *table) put(seq uint64, p *payment) bool {
	ci := seq >> chunkBits
	if ci >= maxChunks {
		return false
	}
	c := t.chunks[ci].Load()
	if c == nil {
		t.chunks[ci].CompareAndSwap(nil, new([1 << chunkBits]atomic.Pointer[payment]))
		c = t.chunks[ci].Load()
	}
	c[seq&(1<<chunkBits-1)].Store(p)
	return true
}

func (t *table) get(ref string) (*payment, bool) {
	if !strings.HasPrefix(ref, refPrefix) {
		return nil, false
	}
	seq, err := strconv.ParseUint(ref[len(refPrefix):], 10, 64)
	if err != nil || seq>>chunkBits >= maxChunks {
		return nil, false
	}
	c := t.chunks[seq>>chunkBits].Load()
	if c == nil {
		return nil, false
	}
	p := c[seq&(1<<chunkBits-1)].Load()
	return p, p != nil
}

type entry struct {
	fingerprint fingerprint
	tx          driver.Transaction // result (also for declines: Status declined)
	err         *driver.Error      // decline or invalid-request error returned
}

// New returns a mock gateway driver; wrap it with gateway.New to use it.
func New(opts ...Option) *Mock {
	m := &Mock{}
	for i := range m.shards {
		m.shards[i].keys = map[string]*entry{}
	}
	WithSeed(1)(m)
	for _, o := range opts {
		o(m)
	}
	return m
}

var seed = maphash.MakeSeed()

func (m *Mock) shard(k string) *shard { return &m.shards[maphash.String(seed, k)%mockShards] }

// lockKey locks the shard of an idempotency key and returns it.
func (m *Mock) lockKey(key string) *shard {
	sh := m.shard(key)
	sh.mu.Lock()
	return sh
}

// Calls returns how many times the operation ("authorize", "capture",
// "void", "refund", "lookup") was called, including replays and failures.
func (m *Mock) Calls(op string) int {
	if c, ok := m.calls.Load(op); ok {
		return int(c.(*atomic.Int64).Load())
	}
	return 0
}

// Processed returns how many distinct operations with the given prefix of
// idempotency key the mock has processed (not counting replays).
func (m *Mock) Processed(keyPrefix string) int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for k := range sh.keys {
			if strings.HasPrefix(k, keyPrefix) {
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// wait applies the configured latency and fault injection. It returns a
// not-processed error if the call must fail before doing anything.
func (m *Mock) wait(ctx context.Context, op string) error {
	c, ok := m.calls.Load(op)
	if !ok {
		c, _ = m.calls.LoadOrStore(op, new(atomic.Int64))
	}
	c.(*atomic.Int64).Add(1)
	fail := false
	if m.failRate > 0 {
		m.rngMu.Lock()
		fail = m.rng.Float64() < m.failRate
		m.rngMu.Unlock()
	}
	if m.latency > 0 {
		t := time.NewTimer(m.latency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return &driver.Error{Kind: driver.KindTransient, Code: "timeout", NotProcessed: true,
				Message: "request cancelled before the mock processed it", Err: ctx.Err()}
		}
	}
	if fail {
		return &driver.Error{Kind: driver.KindTransient, Code: "injected_failure", NotProcessed: true,
			Message: "mock: injected transient failure (fail_rate)"}
	}
	return nil
}

// replay returns the stored result for key, or ok=false if the key is new.
// Callers hold the key's shard lock.
// fingerprint identifies the parameters of an operation, to refuse an
// idempotency key reused with different ones. It is compared by value.
type fingerprint struct {
	op             string
	amount         int64
	currency, a, b string
}

func (sh *shard) replay(key string, fp fingerprint) (*driver.Transaction, error, bool) {
	if key == "" {
		return nil, nil, false
	}
	e, ok := sh.keys[key]
	if !ok {
		return nil, nil, false
	}
	if e.fingerprint != fp {
		return nil, &driver.Error{Kind: driver.KindInvalidRequest, Code: "idempotency_key_reused",
			Message: "idempotency key reused with different parameters"}, true
	}
	if e.err != nil {
		return nil, e.err, true
	}
	tx := e.tx
	return &tx, nil, true
}

func (sh *shard) remember(key string, fp fingerprint, tx driver.Transaction, err *driver.Error) {
	if key != "" {
		sh.keys[key] = &entry{fingerprint: fp, tx: tx, err: err}
	}
}

func (m *Mock) nextRef(prefix string) string {
	return prefix + "_mock_" + strconv.FormatUint(m.seq.Add(1), 10)
}

var declines = map[string]string{
	"pm_card_chargeDeclined":    "card_declined",
	"pm_card_insufficientFunds": "insufficient_funds",
	"pm_card_expiredCard":       "expired_card",
	"pm_card_incorrectCvc":      "incorrect_cvc",
}

func invalid(code, msg string) *driver.Error {
	return &driver.Error{Kind: driver.KindInvalidRequest, Code: code, Message: msg, NotProcessed: true}
}

// Authorize implements driver.Gateway.
func (m *Mock) Authorize(ctx context.Context, r *driver.AuthorizeRequest) (*driver.Transaction, error) {
	if err := m.wait(ctx, "authorize"); err != nil {
		return nil, err
	}
	if r.PaymentMethod == "pm_card_processingError" {
		return nil, &driver.Error{Kind: driver.KindTransient, Code: "processing_error", NotProcessed: true,
			Message: "an error occurred while processing the card"}
	}
	fp := fingerprint{op: "authorize", amount: r.Amount, currency: r.Currency, a: r.PaymentMethod, b: string(r.CaptureMethod)}
	seq := m.seq.Add(1)
	ref := refPrefix + strconv.FormatUint(seq, 10)
	ks := m.lockKey(r.IdempotencyKey)
	defer ks.mu.Unlock()
	if tx, err, ok := ks.replay(r.IdempotencyKey, fp); ok {
		return tx, err
	}
	if r.Amount <= 0 || r.Currency == "" {
		return nil, invalid("amount_invalid", "amount must be positive with a currency")
	}
	if !strings.HasPrefix(r.PaymentMethod, "pm_") {
		return nil, invalid("payment_method_invalid", "unknown payment method token")
	}
	tx := driver.Transaction{Reference: ref, Amount: r.Amount, Currency: r.Currency}
	if code, declined := declines[r.PaymentMethod]; declined {
		tx.Status = driver.StatusDeclined
		tx.DeclineCode = code
		derr := &driver.Error{Kind: driver.KindDeclined, Code: "card_declined", DeclineCode: code,
			NotProcessed: true, Message: "the card was declined"}
		m.pays.put(seq, &payment{tx: tx, paymentMethod: r.PaymentMethod})
		ks.remember(r.IdempotencyKey, fp, tx, derr)
		return nil, derr
	}
	tx.Status = driver.StatusAuthorized
	if r.CaptureMethod != driver.CaptureManual {
		tx.Status = driver.StatusCaptured
		tx.AmountCaptured = r.Amount
	}
	if !m.pays.put(seq, &payment{tx: tx, paymentMethod: r.PaymentMethod}) {
		return nil, &driver.Error{Kind: driver.KindTransient, Code: "capacity", NotProcessed: true, Message: "mock: payment table full"}
	}
	ks.remember(r.IdempotencyKey, fp, tx, nil)
	out := tx
	return &out, nil
}

// Capture implements driver.Gateway.
func (m *Mock) Capture(ctx context.Context, r *driver.CaptureRequest) (*driver.Transaction, error) {
	if err := m.wait(ctx, "capture"); err != nil {
		return nil, err
	}
	fp := fingerprint{op: "capture", amount: r.Amount, currency: r.Currency, a: r.Reference}
	ks := m.lockKey(r.IdempotencyKey)
	defer ks.mu.Unlock()
	if tx, err, ok := ks.replay(r.IdempotencyKey, fp); ok {
		return tx, err
	}
	p, ok := m.pays.get(r.Reference)
	if !ok {
		return nil, &driver.Error{Kind: driver.KindNotFound, Code: "resource_missing", Message: "no such payment"}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.tx.Status != driver.StatusAuthorized:
		return nil, invalid("payment_unexpected_state", "only an authorized payment can be captured; it is "+string(p.tx.Status))
	case r.Currency != p.tx.Currency:
		return nil, invalid("currency_mismatch", "capture currency differs from the authorization")
	case r.Amount <= 0 || r.Amount > p.tx.Amount:
		return nil, invalid("amount_too_large", "capture amount must be positive and at most the authorized amount")
	}
	p.tx.Status = driver.StatusCaptured
	p.tx.AmountCaptured = r.Amount
	ks.remember(r.IdempotencyKey, fp, p.tx, nil)
	out := p.tx
	return &out, nil
}

// Void implements driver.Gateway.
func (m *Mock) Void(ctx context.Context, r *driver.VoidRequest) (*driver.Transaction, error) {
	if err := m.wait(ctx, "void"); err != nil {
		return nil, err
	}
	fp := fingerprint{op: "void", a: r.Reference}
	ks := m.lockKey(r.IdempotencyKey)
	defer ks.mu.Unlock()
	if tx, err, ok := ks.replay(r.IdempotencyKey, fp); ok {
		return tx, err
	}
	p, ok := m.pays.get(r.Reference)
	if !ok {
		return nil, &driver.Error{Kind: driver.KindNotFound, Code: "resource_missing", Message: "no such payment"}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tx.Status != driver.StatusAuthorized {
		return nil, invalid("payment_unexpected_state", "only an authorized payment can be voided; it is "+string(p.tx.Status))
	}
	p.tx.Status = driver.StatusVoided
	ks.remember(r.IdempotencyKey, fp, p.tx, nil)
	out := p.tx
	return &out, nil
}

// Refund implements driver.Gateway.
func (m *Mock) Refund(ctx context.Context, r *driver.RefundRequest) (*driver.Transaction, error) {
	if err := m.wait(ctx, "refund"); err != nil {
		return nil, err
	}
	fp := fingerprint{op: "refund", amount: r.Amount, currency: r.Currency, a: r.Reference}
	ks := m.lockKey(r.IdempotencyKey)
	defer ks.mu.Unlock()
	if tx, err, ok := ks.replay(r.IdempotencyKey, fp); ok {
		return tx, err
	}
	p, ok := m.pays.get(r.Reference)
	if !ok {
		return nil, &driver.Error{Kind: driver.KindNotFound, Code: "resource_missing", Message: "no such payment"}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.tx.Status != driver.StatusCaptured:
		return nil, invalid("payment_unexpected_state", "only a captured payment can be refunded; it is "+string(p.tx.Status))
	case r.Currency != p.tx.Currency:
		return nil, invalid("currency_mismatch", "refund currency differs from the payment")
	case r.Amount <= 0 || p.tx.AmountRefunded+r.Amount > p.tx.AmountCaptured:
		return nil, invalid("amount_too_large", "refund amount must be positive and at most the unrefunded captured amount")
	}
	p.tx.AmountRefunded += r.Amount
	if p.tx.AmountRefunded == p.tx.AmountCaptured {
		p.tx.Status = driver.StatusRefunded
	}
	tx := p.tx
	tx.RefundReference = m.nextRef("re")
	ks.remember(r.IdempotencyKey, fp, tx, nil)
	return &tx, nil
}

// Lookup implements driver.Gateway.
func (m *Mock) Lookup(ctx context.Context, key string) (*driver.Transaction, error) {
	if err := m.wait(ctx, "lookup"); err != nil {
		return nil, err
	}
	sh := m.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.keys[key]
	if !ok {
		return nil, &driver.Error{Kind: driver.KindNotFound, Code: "resource_missing", Message: "no operation with this idempotency key"}
	}
	tx := e.tx
	if e.err != nil && e.err.Kind != driver.KindDeclined {
		return nil, e.err
	}
	return &tx, nil
}

// Close implements driver.Gateway.
func (m *Mock) Close() error { return nil }

// As implements driver.Gateway; it supports **Mock.
func (m *Mock) As(i any) bool {
	p, ok := i.(**Mock)
	if ok {
		*p = m
	}
	return ok
}
