package chaos

import (
	"sync"

	"github.com/payrail/payrail/gateway/driver"
)

// Charge is one effect the provider really made: an authorization (with
// automatic capture, a capture too) that the provider processed as new, not
// a replay of an earlier request with the same idempotency key.
type Charge struct {
	// Reference is the provider's identifier of the charge; a replay
	// returns the reference of the charge it replays, so distinct
	// references are distinct charges.
	Reference string
	// Key is the gateway idempotency key the charge was made with.
	Key string
	// PaymentID is payrail's payment id sent with the request.
	PaymentID string
	// Merchant is the merchant of the payment.
	Merchant string
	// Order is the client order id from the request's metadata (MetaOrder).
	Order string
	// Status is the provider-side status after the operation: authorized,
	// captured, voided or declined (a declined attempt charged nothing and
	// is kept only for the record).
	Status driver.Status
	// Amount is the authorized amount in minor units.
	Amount int64
}

// Live reports whether the charge holds or took money: authorized or
// captured (a void or full refund at the provider releases it).
func (c Charge) Live() bool {
	return c.Status == driver.StatusAuthorized || c.Status == driver.StatusCaptured
}

// Ledger is the provider's record of every charge it made, the ground truth
// the Checker compares the payment store with. It is safe for concurrent use.
type Ledger struct {
	mu    sync.Mutex
	byRef map[string]*Charge
	order []string // references in the order first seen
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger { return &Ledger{byRef: map[string]*Charge{}} }

// Record adds c, or updates the status of the charge with its reference
// (a capture or void of an existing authorization). It reports whether the
// reference was new.
func (l *Ledger) Record(c Charge) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.byRef[c.Reference]; ok {
		if c.Status != "" {
			cur.Status = c.Status
		}
		return false
	}
	cc := c
	l.byRef[c.Reference] = &cc
	l.order = append(l.order, c.Reference)
	return true
}

// SetStatus updates the status of the charge with reference ref, if known.
func (l *Ledger) SetStatus(ref string, s driver.Status) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c, ok := l.byRef[ref]; ok {
		c.Status = s
	}
}

// Charges returns a copy of every charge in the order they were made.
func (l *Ledger) Charges() []Charge {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Charge, 0, len(l.order))
	for _, r := range l.order {
		out = append(out, *l.byRef[r])
	}
	return out
}

// Len returns the number of charges recorded (declined attempts included).
func (l *Ledger) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.order)
}

// byPayment groups the live charges of each payment id, in order.
func byPayment(cs []Charge) map[string][]Charge {
	m := map[string][]Charge{}
	for _, c := range cs {
		if c.Live() {
			m[c.PaymentID] = append(m[c.PaymentID], c)
		}
	}
	return m
}
