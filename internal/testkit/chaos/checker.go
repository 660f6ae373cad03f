package chaos

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/payrail/payrail/payments"
)

// StatusRequiresReview is the status of a payment parked for a human: the
// Checker accepts it, with a non-empty FailureCode saying why, as "in
// review" rather than lost.
const StatusRequiresReview payments.Status = "requires_review"

// Answer is one definite answer a client got to POST /payments.
type Answer struct {
	// Order is the client's order id, also its Idempotency-Key.
	Order    string
	Merchant string
	// HTTPStatus is the response status; Code the problem code, if any.
	HTTPStatus int
	Code       string
	// PaymentID is the payment the answer names (the body's id, or a
	// problem's payment_id), if any.
	PaymentID string
	// Async is true when the request asked for Prefer: respond-async.
	Async bool
	// Duplicate marks a deliberate re-submission of an answered order.
	Duplicate bool
}

// Accepted reports whether the answer promised a payment: 201 or 202.
func (a Answer) Accepted() bool {
	return a.HTTPStatus == http.StatusCreated || a.HTTPStatus == http.StatusAccepted
}

// Violation is one broken invariant.
type Violation struct {
	// Invariant is "double_charge", "lost" or "mismatch".
	Invariant string
	PaymentID string
	Order     string
	Detail    string
}

func (v Violation) String() string {
	s := v.Invariant
	if v.PaymentID != "" {
		s += " payment=" + v.PaymentID
	}
	if v.Order != "" {
		s += " order=" + v.Order
	}
	return s + ": " + v.Detail
}

// Report is what a soak run and its check found.
type Report struct {
	Seed uint64
	// Orders is the number of client orders; Payments the number of
	// distinct payment ids checked (answered or charged).
	Orders, Payments int
	// Requests counts HTTP requests sent (retries included); Answers the
	// definite answers by HTTP status.
	Requests int64
	Answers  map[int]int
	// Charges counts the live charges in the ledger.
	Charges int
	// Faults counts the injected faults by kind.
	Faults map[string]int64
	// Final counts checked payments in a terminal status (Statuses: by
	// status).
	Final    int
	Statuses map[payments.Status]int
	// Violations of invariant (1), (2) and (3).
	DoubleCharges []Violation
	Lost          []Violation
	Mismatches    []Violation
	// InReview lists payments parked in StatusRequiresReview with a reason.
	InReview []string
	Duration time.Duration
}

// OK reports whether no invariant was violated.
func (r *Report) OK() bool {
	return len(r.DoubleCharges) == 0 && len(r.Lost) == 0 && len(r.Mismatches) == 0
}

// ErrViolation is matched (errors.Is) by the error Err returns.
var ErrViolation = errors.New("chaos: money-path invariant violated")

// Err returns nil if the report is OK, otherwise an error matching
// ErrViolation that lists up to 20 violations of each invariant.
func (r *Report) Err() error {
	if r.OK() {
		return nil
	}
	var b strings.Builder
	for _, vs := range [][]Violation{r.DoubleCharges, r.Lost, r.Mismatches} {
		for i, v := range vs {
			if i == 20 {
				fmt.Fprintf(&b, "\n  ... and %d more %s", len(vs)-20, v.Invariant)
				break
			}
			b.WriteString("\n  " + v.String())
		}
	}
	return fmt.Errorf("%w: %d double charges, %d lost, %d mismatches:%s", ErrViolation,
		len(r.DoubleCharges), len(r.Lost), len(r.Mismatches), b.String())
}

// String is the report's summary, for the test log.
func (r *Report) String() string {
	var st strings.Builder
	for _, s := range slices.Sorted(maps.Keys(r.Statuses)) {
		fmt.Fprintf(&st, " %s=%d", s, r.Statuses[s])
	}
	var an strings.Builder
	for _, s := range slices.Sorted(maps.Keys(r.Answers)) {
		fmt.Fprintf(&an, " %d=%d", s, r.Answers[s])
	}
	return fmt.Sprintf("seed=%d orders=%d payments=%d requests=%d answers:[%s] live_charges=%d final=%d statuses:[%s] "+
		"in_review=%d double_charges=%d lost=%d mismatches=%d duration=%s faults:[%s]",
		r.Seed, r.Orders, r.Payments, r.Requests, strings.TrimSpace(an.String()), r.Charges, r.Final,
		strings.TrimSpace(st.String()), len(r.InReview), len(r.DoubleCharges), len(r.Lost), len(r.Mismatches),
		r.Duration.Round(time.Millisecond), formatCounts(r.Faults))
}

// Check compares the provider's ledger with the payment store and the
// clients' answers, and fills r's counts and violations (r may be nil).
// The invariants:
//
//  1. at most one live charge per payment, and at most one charged payment
//     per client order (idempotency key);
//  2. every payment answered 201 or 202 is final (see Final) or
//     in review (StatusRequiresReview with a FailureCode) — otherwise it
//     is lost;
//  3. the store agrees with the provider: authorized or captured in the
//     store ⇔ a live charge in the ledger with the payment's reference and
//     status; declined, failed or voided ⇔ no live charge; a live charge
//     of a payment the store does not know is a mismatch too.
//
// Check reads every payment it needs with store.Get (merchant from the
// answer or the charge), 8 at a time. It returns an error only if the
// store cannot be read (not-found is a finding, not an error).
func Check(ctx context.Context, store payments.Store, charges []Charge, answers []Answer, r *Report) (*Report, error) {
	if r == nil {
		r = &Report{}
	}
	r.Answers = map[int]int{}
	r.Statuses = map[payments.Status]int{}

	type subject struct {
		merchant, order string
		accepted        bool
		answer          string // the first accepting answer: "201 sync" or "202 async"
		live            []Charge
		pay             *payments.Payment
	}
	subjects := map[string]*subject{}
	get := func(id, merchant, order string) *subject {
		s := subjects[id]
		if s == nil {
			s = &subject{merchant: merchant, order: order}
			subjects[id] = s
		}
		if s.order == "" {
			s.order = order
		}
		return s
	}
	byOrder := map[string][]Answer{}
	for _, a := range answers {
		byOrder[a.Order] = append(byOrder[a.Order], a)
		r.Answers[a.HTTPStatus]++
		if a.PaymentID == "" {
			continue
		}
		s := get(a.PaymentID, a.Merchant, a.Order)
		if a.Accepted() && !s.accepted {
			s.accepted = true
			s.answer = fmt.Sprintf("%d sync", a.HTTPStatus)
			if a.Async {
				s.answer = fmt.Sprintf("%d async", a.HTTPStatus)
			}
		}
	}
	r.Orders = len(byOrder)

	// (1) at most one live charge per payment and per order.
	chargedPayments := map[string]map[string]bool{} // order -> payment ids with a live charge
	for _, c := range charges {
		if !c.Live() {
			continue
		}
		r.Charges++
		s := get(c.PaymentID, c.Merchant, c.Order)
		s.live = append(s.live, c)
		if c.Order != "" {
			if chargedPayments[c.Order] == nil {
				chargedPayments[c.Order] = map[string]bool{}
			}
			chargedPayments[c.Order][c.PaymentID] = true
		}
	}
	for _, id := range slices.Sorted(maps.Keys(subjects)) {
		if s := subjects[id]; len(s.live) > 1 {
			refs := make([]string, len(s.live))
			for i, c := range s.live {
				refs[i] = c.Reference + "(" + string(c.Status) + ")"
			}
			r.DoubleCharges = append(r.DoubleCharges, Violation{Invariant: "double_charge", PaymentID: id, Order: s.order,
				Detail: fmt.Sprintf("%d live charges for one payment: %s", len(s.live), strings.Join(refs, ", "))})
		}
	}

	// Read every subject's payment, 8 at a time.
	ids := slices.Sorted(maps.Keys(subjects))
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		readErr error
	)
	sem := make(chan struct{}, 8)
	for _, id := range ids {
		s := subjects[id]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			p, err := store.Get(ctx, s.merchant, id)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				s.pay = p
			case !errors.Is(err, payments.ErrNotFound):
				readErr = errors.Join(readErr, fmt.Errorf("chaos: reading payment %s: %w", id, err))
			}
		})
	}
	wg.Wait()
	if readErr != nil {
		return r, readErr
	}
	r.Payments = len(ids)

	for _, o := range slices.Sorted(maps.Keys(chargedPayments)) {
		ids := chargedPayments[o]
		if len(ids) < 2 {
			continue
		}
		var ps []string
		for _, id := range slices.Sorted(maps.Keys(ids)) {
			st := "not in store"
			if p := subjects[id].pay; p != nil {
				st = string(p.Status) + ", created " + p.CreatedAt.Format("15:04:05.000")
			}
			ps = append(ps, id+" ("+st+")")
		}
		var as []string
		for _, a := range byOrder[o] {
			as = append(as, fmt.Sprintf("%d %s %s", a.HTTPStatus, a.Code, a.PaymentID))
		}
		r.DoubleCharges = append(r.DoubleCharges, Violation{Invariant: "double_charge", Order: o,
			Detail: fmt.Sprintf("%d charged payments for one order: %s; the client's answers: [%s]",
				len(ids), strings.Join(ps, ", "), strings.Join(as, "; "))})
	}

	for _, id := range ids {
		s := subjects[id]
		p := s.pay
		if p == nil {
			if s.accepted {
				r.Lost = append(r.Lost, Violation{Invariant: "lost", PaymentID: id, Order: s.order,
					Detail: "answered 201/202 but not in the payment store"})
			}
			if len(s.live) > 0 {
				r.Mismatches = append(r.Mismatches, Violation{Invariant: "mismatch", PaymentID: id, Order: s.order,
					Detail: fmt.Sprintf("the provider charged %s but the store has no such payment", s.live[0].Reference)})
			}
			continue
		}
		r.Statuses[p.Status]++
		// (2) accepted ⇒ final or in review.
		review := p.Status == StatusRequiresReview
		switch {
		case review && p.FailureCode != "":
			r.InReview = append(r.InReview, id)
		case !review && Final(p.Status):
			r.Final++
		case s.accepted:
			detail := "answered " + s.answer + " but left " + string(p.Status)
			if review {
				detail += " without a reason (FailureCode empty)"
			}
			r.Lost = append(r.Lost, Violation{Invariant: "lost", PaymentID: id, Order: s.order,
				Detail: fmt.Sprintf("%s (gateway %q, updated %s)", detail, p.Gateway, p.UpdatedAt.Format(time.RFC3339Nano))})
		}
		// (3) store ⇔ provider.
		if v := compare(p, s.live); v != "" {
			r.Mismatches = append(r.Mismatches, Violation{Invariant: "mismatch", PaymentID: id, Order: s.order, Detail: v})
		}
	}
	return r, nil
}

// Final reports whether a payment in status s has its outcome: a status
// with no transition out (Status.Terminal and known to the state machine),
// or authorized or captured, which only the merchant's own capture, void or
// refund moves on. Pending and processing are not final.
func Final(s payments.Status) bool {
	switch s {
	case payments.StatusAuthorized, payments.StatusCaptured:
		return true
	}
	return s.Valid() && s.Terminal()
}

// compare returns why the store's payment disagrees with its live charges
// at the provider, or "".
func compare(p *payments.Payment, live []Charge) string {
	switch p.Status {
	case payments.StatusAuthorized, payments.StatusCaptured:
		for _, c := range live {
			if c.Reference == p.GatewayReference {
				if string(c.Status) != string(p.Status) {
					return fmt.Sprintf("store says %s, the provider's charge %s is %s", p.Status, c.Reference, c.Status)
				}
				return ""
			}
		}
		if len(live) == 0 {
			return fmt.Sprintf("store says %s (reference %q) but the provider holds no live charge", p.Status, p.GatewayReference)
		}
		return fmt.Sprintf("store says %s with reference %q, the provider's live charge is %s", p.Status, p.GatewayReference, live[0].Reference)
	case payments.StatusDeclined, payments.StatusFailed, payments.StatusVoided:
		if len(live) > 0 {
			return fmt.Sprintf("store says %s (failure %q) but the provider holds live charge %s (%s)",
				p.Status, p.FailureCode, live[0].Reference, live[0].Status)
		}
	}
	return ""
}
