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
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"sync"
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

	mu       sync.Mutex
	rng      *rand.Rand
	seq      uint64
	payments map[string]*payment // by reference
	keys     map[string]*entry   // by idempotency key
	calls    map[string]int      // by operation
}

type payment struct {
	tx            driver.Transaction
	paymentMethod string
}

type entry struct {
	fingerprint string
	tx          driver.Transaction // result (also for declines: Status declined)
	err         *driver.Error      // decline or invalid-request error returned
}

// New returns a mock gateway driver; wrap it with gateway.New to use it.
func New(opts ...Option) *Mock {
	m := &Mock{
		payments: map[string]*payment{},
		keys:     map[string]*entry{},
		calls:    map[string]int{},
	}
	WithSeed(1)(m)
	for _, o := range opts {
		o(m)
	}
	return m
}

// Calls returns how many times the operation ("authorize", "capture",
// "void", "refund", "lookup") was called, including replays and failures.
func (m *Mock) Calls(op string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls[op]
}

// Processed returns how many distinct operations with the given prefix of
// idempotency key the mock has processed (not counting replays).
func (m *Mock) Processed(keyPrefix string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for k := range m.keys {
		if strings.HasPrefix(k, keyPrefix) {
			n++
		}
	}
	return n
}

// wait applies the configured latency and fault injection. It returns a
// not-processed error if the call must fail before doing anything.
func (m *Mock) wait(ctx context.Context, op string) error {
	m.mu.Lock()
	m.calls[op]++
	fail := m.failRate > 0 && m.rng.Float64() < m.failRate
	m.mu.Unlock()
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
// Callers hold m.mu.
func (m *Mock) replay(key, fingerprint string) (*driver.Transaction, error, bool) {
	if key == "" {
		return nil, nil, false
	}
	e, ok := m.keys[key]
	if !ok {
		return nil, nil, false
	}
	if e.fingerprint != fingerprint {
		return nil, &driver.Error{Kind: driver.KindInvalidRequest, Code: "idempotency_key_reused",
			Message: "idempotency key reused with different parameters"}, true
	}
	if e.err != nil {
		return nil, e.err, true
	}
	tx := e.tx
	return &tx, nil, true
}

func (m *Mock) remember(key, fingerprint string, tx driver.Transaction, err *driver.Error) {
	if key != "" {
		m.keys[key] = &entry{fingerprint: fingerprint, tx: tx, err: err}
	}
}

func (m *Mock) nextRef(prefix string) string {
	m.seq++
	return prefix + "_mock_" + strconv.FormatUint(m.seq, 10)
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
	fp := "authorize|" + strconv.FormatInt(r.Amount, 10) + "|" + r.Currency + "|" + r.PaymentMethod + "|" + string(r.CaptureMethod)
	m.mu.Lock()
	defer m.mu.Unlock()
	if tx, err, ok := m.replay(r.IdempotencyKey, fp); ok {
		return tx, err
	}
	if r.Amount <= 0 || r.Currency == "" {
		return nil, invalid("amount_invalid", "amount must be positive with a currency")
	}
	if !strings.HasPrefix(r.PaymentMethod, "pm_") {
		return nil, invalid("payment_method_invalid", "unknown payment method token")
	}
	tx := driver.Transaction{Reference: m.nextRef("pi"), Amount: r.Amount, Currency: r.Currency}
	if code, declined := declines[r.PaymentMethod]; declined {
		tx.Status = driver.StatusDeclined
		tx.DeclineCode = code
		derr := &driver.Error{Kind: driver.KindDeclined, Code: "card_declined", DeclineCode: code,
			NotProcessed: true, Message: "the card was declined"}
		m.payments[tx.Reference] = &payment{tx: tx, paymentMethod: r.PaymentMethod}
		m.remember(r.IdempotencyKey, fp, tx, derr)
		return nil, derr
	}
	tx.Status = driver.StatusAuthorized
	if r.CaptureMethod != driver.CaptureManual {
		tx.Status = driver.StatusCaptured
		tx.AmountCaptured = r.Amount
	}
	m.payments[tx.Reference] = &payment{tx: tx, paymentMethod: r.PaymentMethod}
	m.remember(r.IdempotencyKey, fp, tx, nil)
	out := tx
	return &out, nil
}

// Capture implements driver.Gateway.
func (m *Mock) Capture(ctx context.Context, r *driver.CaptureRequest) (*driver.Transaction, error) {
	if err := m.wait(ctx, "capture"); err != nil {
		return nil, err
	}
	fp := fmt.Sprintf("capture|%s|%d|%s", r.Reference, r.Amount, r.Currency)
	m.mu.Lock()
	defer m.mu.Unlock()
	if tx, err, ok := m.replay(r.IdempotencyKey, fp); ok {
		return tx, err
	}
	p, ok := m.payments[r.Reference]
	if !ok {
		return nil, &driver.Error{Kind: driver.KindNotFound, Code: "resource_missing", Message: "no such payment"}
	}
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
	m.remember(r.IdempotencyKey, fp, p.tx, nil)
	out := p.tx
	return &out, nil
}

// Void implements driver.Gateway.
func (m *Mock) Void(ctx context.Context, r *driver.VoidRequest) (*driver.Transaction, error) {
	if err := m.wait(ctx, "void"); err != nil {
		return nil, err
	}
	fp := "void|" + r.Reference
	m.mu.Lock()
	defer m.mu.Unlock()
	if tx, err, ok := m.replay(r.IdempotencyKey, fp); ok {
		return tx, err
	}
	p, ok := m.payments[r.Reference]
	if !ok {
		return nil, &driver.Error{Kind: driver.KindNotFound, Code: "resource_missing", Message: "no such payment"}
	}
	if p.tx.Status != driver.StatusAuthorized {
		return nil, invalid("payment_unexpected_state", "only an authorized payment can be voided; it is "+string(p.tx.Status))
	}
	p.tx.Status = driver.StatusVoided
	m.remember(r.IdempotencyKey, fp, p.tx, nil)
	out := p.tx
	return &out, nil
}

// Refund implements driver.Gateway.
func (m *Mock) Refund(ctx context.Context, r *driver.RefundRequest) (*driver.Transaction, error) {
	if err := m.wait(ctx, "refund"); err != nil {
		return nil, err
	}
	fp := fmt.Sprintf("refund|%s|%d|%s", r.Reference, r.Amount, r.Currency)
	m.mu.Lock()
	defer m.mu.Unlock()
	if tx, err, ok := m.replay(r.IdempotencyKey, fp); ok {
		return tx, err
	}
	p, ok := m.payments[r.Reference]
	if !ok {
		return nil, &driver.Error{Kind: driver.KindNotFound, Code: "resource_missing", Message: "no such payment"}
	}
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
	m.remember(r.IdempotencyKey, fp, tx, nil)
	return &tx, nil
}

// Lookup implements driver.Gateway.
func (m *Mock) Lookup(ctx context.Context, key string) (*driver.Transaction, error) {
	if err := m.wait(ctx, "lookup"); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.keys[key]
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
