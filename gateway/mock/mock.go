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
//	pm_card_tryAgainLater       soft-declined, decline code try_again_later (mock only)
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
//
// FailNext injects one fault into the next call, for tests of what a caller
// does when a provider refuses a request or its answer is lost.
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
			if err != nil || !(f >= 0 && f <= 1) { // also refuses NaN
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

	faultMu sync.Mutex
	faults  []Fault      // injected by FailNext, oldest first
	nfaults atomic.Int32 // len(faults), read without the lock on every call

	seq    atomic.Uint64
	calls  [numOps]atomic.Int64 // by op
	shards [mockShards]shard
	pays   table // payments by the sequence number in their reference
}

// op is a gateway operation, counted by Calls and part of fingerprints.
type op uint8

const (
	opAuthorize op = iota
	opCapture
	opVoid
	opRefund
	opLookup
	numOps
)

// opNames are the operation names Calls accepts, indexed by op.
var opNames = [numOps]string{"authorize", "capture", "void", "refund", "lookup"}

// The mock's state is partitioned so that it does not serialise concurrent
// callers: idempotency keys live in shards chosen by hash, and payments in
// a table indexed by the sequence number of their reference, each with its
// own lock.
const mockShards = 16

// shard holds the idempotency records of the keys whose hash selects it.
// A key is hashed once (maphash, which also picks the shard); records are
// indexed by that hash, so the maps never hash the key string again.
type shard struct {
	mu sync.Mutex
	// keys holds, for each hash, the record of the first key with that
	// hash. Records are never removed, so that key keeps the slot.
	keys map[uint64]*entry
	// spill holds the records of keys whose hash collides with the key in
	// keys (practically never: 64-bit hashes). Allocated on first use.
	spill map[string]*entry
	_     [128 - 24]byte // one shard per cache line pair: no false sharing between cores
}

type payment struct {
	mu sync.Mutex // guards tx
	tx driver.Transaction
}

// authorization is what Authorize keeps for a payment with an idempotency
// key: its idempotency record and its payment-table entry in one
// allocation.
type authorization struct {
	entry entry
	pay   payment
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
	key         string // the idempotency key
	fingerprint fingerprint
	// The result (also for declines: Status declined): *tx, or for an
	// authorization (tx nil) authorized(auth's reference, fingerprint), so
	// that the mock keeps no second copy of every payment it authorized.
	tx   *driver.Transaction
	auth *payment
	err  *driver.Error // decline or invalid-request error returned
}

// result returns the transaction e's operation answered. Callers hold the
// key's shard lock.
func (e *entry) result() driver.Transaction {
	if e.tx != nil {
		return *e.tx
	}
	e.auth.mu.Lock()
	ref := e.auth.tx.Reference
	e.auth.mu.Unlock()
	return authorized(ref, e.fingerprint)
}

// newEntry returns an entry whose result is tx, allocated with it.
func newEntry(fp fingerprint, tx driver.Transaction) *entry {
	x := &struct {
		e  entry
		tx driver.Transaction
	}{tx: tx}
	x.e = entry{fingerprint: fp, tx: &x.tx}
	return &x.e
}

// authorized returns the transaction an authorization with fingerprint fp
// creates under the reference ref: declined for the declining test
// tokens, else authorized, or captured unless the capture is manual.
func authorized(ref string, fp fingerprint) driver.Transaction {
	tx := driver.Transaction{Reference: ref, Amount: fp.amount, Currency: fp.currency}
	if code, declined := declineCode(fp.a); declined {
		tx.Status = driver.StatusDeclined
		tx.DeclineCode = code
		return tx
	}
	tx.Status = driver.StatusAuthorized
	if driver.CaptureMethod(fp.b) != driver.CaptureManual {
		tx.Status = driver.StatusCaptured
		tx.AmountCaptured = fp.amount
	}
	return tx
}

// New returns a mock gateway driver; wrap it with gateway.New to use it.
func New(opts ...Option) *Mock {
	m := &Mock{}
	for i := range m.shards {
		m.shards[i].keys = map[uint64]*entry{}
	}
	WithSeed(1)(m)
	for _, o := range opts {
		o(m)
	}
	return m
}

var seed = maphash.MakeSeed()

// idemKey is an idempotency key with its hash and shard, locked by lockKey.
type idemKey struct {
	sh  *shard
	key string
	h   uint64
	// looked and taken record what replay found: whether it looked at
	// sh.keys[h], and whether that slot is taken (by this key or another).
	looked, taken bool
}

// lockKey hashes an idempotency key, locks its shard and returns it; the
// caller unlocks k.sh.mu.
func (m *Mock) lockKey(key string) idemKey {
	h := maphash.String(seed, key)
	k := idemKey{sh: &m.shards[h%mockShards], key: key, h: h}
	k.sh.mu.Lock()
	return k
}

// find returns the record of k, or nil. Callers hold k.sh.mu.
func (k *idemKey) find() *entry {
	e, ok := k.sh.keys[k.h]
	k.looked, k.taken = true, ok
	if ok && e.key != k.key {
		e = k.sh.spill[k.key]
	}
	return e
}

// Calls returns how many times the operation ("authorize", "capture",
// "void", "refund", "lookup") was called, including replays and failures.
func (m *Mock) Calls(op string) int {
	for i, name := range opNames {
		if name == op {
			return int(m.calls[i].Load())
		}
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
		for _, e := range sh.keys {
			if strings.HasPrefix(e.key, keyPrefix) {
				n++
			}
		}
		for k := range sh.spill {
			if strings.HasPrefix(k, keyPrefix) {
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// Fault is a failure FailNext injects into a call.
type Fault int

// Faults.
const (
	// FaultRefused fails the call before the mock processes it, as a
	// transient error that was not processed (a rate limit, a refused
	// connection): retrying with the same idempotency key is safe and
	// Lookup does not find the key.
	FaultRefused Fault = iota + 1
	// FaultAnswerLost lets the mock process the call, then fails it as a
	// transient error of unknown outcome (a timeout after the request was
	// sent, a provider error after processing): the caller must retry with
	// the same idempotency key, or look the key up, to learn the outcome.
	FaultAnswerLost
)

// FailNext makes the next call, of any operation, fail with f. Faults
// queue: each call takes the oldest one.
func (m *Mock) FailNext(f Fault) {
	m.faultMu.Lock()
	m.faults = append(m.faults, f)
	m.nfaults.Store(int32(len(m.faults)))
	m.faultMu.Unlock()
}

// nextFault takes the oldest injected fault, or returns 0.
func (m *Mock) nextFault() Fault {
	if m.nfaults.Load() == 0 {
		return 0
	}
	m.faultMu.Lock()
	defer m.faultMu.Unlock()
	if len(m.faults) == 0 {
		return 0
	}
	f := m.faults[0]
	m.faults = m.faults[1:]
	m.nfaults.Store(int32(len(m.faults)))
	return f
}

// wait applies the configured latency and fault injection. It returns a
// not-processed error if the call must fail before doing anything, and
// lost if the call must be processed and its answer then lost (see
// errAnswerLost).
func (m *Mock) wait(ctx context.Context, op op) (lost bool, err error) {
	m.calls[op].Add(1)
	if err := ctx.Err(); err != nil {
		// A provider never sees a request whose caller already gave up.
		return false, &driver.Error{Kind: driver.KindTransient, Code: "timeout", NotProcessed: true,
			Message: "request cancelled before the mock processed it", Err: err}
	}
	fault := m.nextFault()
	fail := fault == FaultRefused
	if m.failRate > 0 {
		m.rngMu.Lock()
		fail = fail || m.rng.Float64() < m.failRate
		m.rngMu.Unlock()
	}
	if m.latency > 0 {
		t := time.NewTimer(m.latency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false, &driver.Error{Kind: driver.KindTransient, Code: "timeout", NotProcessed: true,
				Message: "request cancelled before the mock processed it", Err: ctx.Err()}
		}
	}
	if fail {
		return false, &driver.Error{Kind: driver.KindTransient, Code: "injected_failure", NotProcessed: true,
			Message: "mock: injected transient failure"}
	}
	return fault == FaultAnswerLost, nil
}

// errAnswerLost is the error of a call processed under FaultAnswerLost.
func errAnswerLost() error {
	return &driver.Error{Kind: driver.KindTransient, Code: "answer_lost",
		Message: "mock: injected failure after processing; outcome unknown"}
}

// fingerprint identifies the parameters of an operation, to refuse an
// idempotency key reused with different ones. It is compared by value.
type fingerprint struct {
	op             op
	amount         int64
	currency, a, b string
}

// replay returns the stored result for the key, or ok=false if the key is
// new. Callers hold k.sh.mu.
func (k *idemKey) replay(fp fingerprint) (*driver.Transaction, error, bool) {
	if k.key == "" {
		return nil, nil, false
	}
	e := k.find()
	if e == nil {
		return nil, nil, false
	}
	if e.fingerprint != fp {
		return nil, &driver.Error{Kind: driver.KindInvalidRequest, Code: "idempotency_key_reused",
			Message: "idempotency key reused with different parameters"}, true
	}
	if e.err != nil {
		return nil, e.err, true
	}
	tx := e.result()
	return &tx, nil, true
}

// remember stores e as the record of the key, which replay found new.
// Callers hold k.sh.mu.
func (k *idemKey) remember(e *entry) {
	if k.key == "" {
		return
	}
	if !k.looked {
		k.find()
	}
	e.key = k.key
	if !k.taken {
		k.sh.keys[k.h] = e
		k.taken = true
		return
	}
	if k.sh.spill == nil {
		k.sh.spill = map[string]*entry{}
	}
	k.sh.spill[k.key] = e
}

// ref formats a reference: prefix followed by seq in decimal.
func ref(prefix string, seq uint64) string {
	var buf [32]byte
	return string(strconv.AppendUint(append(buf[:0], prefix...), seq, 10))
}

func (m *Mock) nextRef(prefix string) string {
	return ref(prefix+"_mock_", m.seq.Add(1))
}

// declineCode returns the decline code of a test token that is declined.
func declineCode(paymentMethod string) (string, bool) {
	switch paymentMethod {
	case "pm_card_chargeDeclined":
		return "card_declined", true
	case "pm_card_insufficientFunds":
		return "insufficient_funds", true
	case "pm_card_expiredCard":
		return "expired_card", true
	case "pm_card_incorrectCvc":
		return "incorrect_cvc", true
	case "pm_card_tryAgainLater":
		return "try_again_later", true
	}
	return "", false
}

func invalid(code, msg string) *driver.Error {
	return &driver.Error{Kind: driver.KindInvalidRequest, Code: code, Message: msg, NotProcessed: true}
}

// Authorize implements driver.Gateway.
func (m *Mock) Authorize(ctx context.Context, r *driver.AuthorizeRequest) (*driver.Transaction, error) {
	lost, err := m.wait(ctx, opAuthorize)
	if err != nil {
		return nil, err
	}
	tx, err := m.authorize(r)
	if lost {
		return nil, errAnswerLost()
	}
	return tx, err
}

func (m *Mock) authorize(r *driver.AuthorizeRequest) (*driver.Transaction, error) {
	if r.PaymentMethod == "pm_card_processingError" {
		return nil, &driver.Error{Kind: driver.KindTransient, Code: "processing_error", NotProcessed: true,
			Message: "an error occurred while processing the card"}
	}
	fp := fingerprint{op: opAuthorize, amount: r.Amount, currency: r.Currency, a: r.PaymentMethod, b: string(r.CaptureMethod)}
	seq := m.seq.Add(1) // taken by every call, replays included
	k := m.lockKey(r.IdempotencyKey)
	defer k.sh.mu.Unlock()
	if tx, err, ok := k.replay(fp); ok {
		return tx, err
	}
	if r.Amount <= 0 || r.Currency == "" {
		return nil, invalid("amount_invalid", "amount must be positive with a currency")
	}
	if !strings.HasPrefix(r.PaymentMethod, "pm_") {
		return nil, invalid("payment_method_invalid", "unknown payment method token")
	}
	// The payment and its idempotency record share one allocation.
	var (
		p *payment
		e *entry
	)
	if k.key != "" {
		a := &authorization{}
		p, e = &a.pay, &a.entry
	} else {
		p = &payment{}
	}
	tx := authorized(ref(refPrefix, seq), fp)
	if tx.Status == driver.StatusDeclined {
		code := tx.DeclineCode
		derr := &driver.Error{Kind: driver.KindDeclined, Code: "card_declined", DeclineCode: code,
			SoftDecline: code == "try_again_later", NotProcessed: true, Message: "the card was declined"}
		p.tx = tx
		m.pays.put(seq, p)
		if e != nil {
			e.fingerprint, e.auth, e.err = fp, p, derr
			k.remember(e)
		}
		return nil, derr
	}
	p.tx = tx
	if !m.pays.put(seq, p) {
		return nil, &driver.Error{Kind: driver.KindTransient, Code: "capacity", NotProcessed: true, Message: "mock: payment table full"}
	}
	if e != nil {
		e.fingerprint, e.auth = fp, p
		k.remember(e)
	}
	out := tx
	return &out, nil
}

// Capture implements driver.Gateway.
func (m *Mock) Capture(ctx context.Context, r *driver.CaptureRequest) (*driver.Transaction, error) {
	lost, err := m.wait(ctx, opCapture)
	if err != nil {
		return nil, err
	}
	tx, err := m.capture(r)
	if lost {
		return nil, errAnswerLost()
	}
	return tx, err
}

func (m *Mock) capture(r *driver.CaptureRequest) (*driver.Transaction, error) {
	fp := fingerprint{op: opCapture, amount: r.Amount, currency: r.Currency, a: r.Reference}
	k := m.lockKey(r.IdempotencyKey)
	defer k.sh.mu.Unlock()
	if tx, err, ok := k.replay(fp); ok {
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
	k.remember(newEntry(fp, p.tx))
	out := p.tx
	return &out, nil
}

// Void implements driver.Gateway.
func (m *Mock) Void(ctx context.Context, r *driver.VoidRequest) (*driver.Transaction, error) {
	lost, err := m.wait(ctx, opVoid)
	if err != nil {
		return nil, err
	}
	tx, err := m.void(r)
	if lost {
		return nil, errAnswerLost()
	}
	return tx, err
}

func (m *Mock) void(r *driver.VoidRequest) (*driver.Transaction, error) {
	fp := fingerprint{op: opVoid, a: r.Reference}
	k := m.lockKey(r.IdempotencyKey)
	defer k.sh.mu.Unlock()
	if tx, err, ok := k.replay(fp); ok {
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
	k.remember(newEntry(fp, p.tx))
	out := p.tx
	return &out, nil
}

// Refund implements driver.Gateway.
func (m *Mock) Refund(ctx context.Context, r *driver.RefundRequest) (*driver.Transaction, error) {
	lost, err := m.wait(ctx, opRefund)
	if err != nil {
		return nil, err
	}
	tx, err := m.refund(r)
	if lost {
		return nil, errAnswerLost()
	}
	return tx, err
}

func (m *Mock) refund(r *driver.RefundRequest) (*driver.Transaction, error) {
	fp := fingerprint{op: opRefund, amount: r.Amount, currency: r.Currency, a: r.Reference}
	k := m.lockKey(r.IdempotencyKey)
	defer k.sh.mu.Unlock()
	if tx, err, ok := k.replay(fp); ok {
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
	k.remember(newEntry(fp, tx))
	return &tx, nil
}

// Lookup implements driver.Gateway.
func (m *Mock) Lookup(ctx context.Context, key string) (*driver.Transaction, error) {
	lost, err := m.wait(ctx, opLookup)
	if err != nil {
		return nil, err
	}
	tx, err := m.lookup(key)
	if lost {
		return nil, errAnswerLost()
	}
	return tx, err
}

func (m *Mock) lookup(key string) (*driver.Transaction, error) {
	k := m.lockKey(key)
	defer k.sh.mu.Unlock()
	e := k.find()
	if e == nil {
		return nil, &driver.Error{Kind: driver.KindNotFound, Code: "resource_missing", Message: "no operation with this idempotency key"}
	}
	if e.err != nil && e.err.Kind != driver.KindDeclined {
		return nil, e.err
	}
	tx := e.result()
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
