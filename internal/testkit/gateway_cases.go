package testkit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/payrail/payrail/gateway"
)

func gatewayCases() []gwCase {
	cases := []gwCase{
		{"Capabilities", nil, (*gwSuite).testCapabilities},
		{"AuthorizeManual", nil, (*gwSuite).testAuthorizeManual},
		{"AuthorizeAutomatic", nil, (*gwSuite).testAuthorizeAutomatic},
		{"Capture", nil, (*gwSuite).testCapture},
		{"PartialCapture", nil, (*gwSuite).testPartialCapture},
		{"Void", nil, (*gwSuite).testVoid},
		{"Refund", nil, (*gwSuite).testRefund},
		{"PartialRefund", nil, (*gwSuite).testPartialRefund},
		{"MinorUnits", nil, (*gwSuite).testMinorUnits},
		{"InvalidAmount", nil, (*gwSuite).testInvalidAmount},
		{"UnknownReference", []string{CapStateful}, (*gwSuite).testUnknownReference},
		{"Lookup", []string{CapLookup}, (*gwSuite).testLookup},
		{"IdempotentReplay", []string{CapIdempotent}, (*gwSuite).testIdempotentReplay},
		{"IdempotencyKeyReused", []string{CapIdempotent}, (*gwSuite).testKeyReused},
		{"KeysReachPeer", []string{CapObservesKeys}, (*gwSuite).testKeysReachPeer},
		{"Decline", []string{CapDeclines}, (*gwSuite).testDecline},
		{"SoftDecline", []string{CapSoftDeclines}, (*gwSuite).testSoftDecline},
		{"CancelledContext", nil, (*gwSuite).testCancelledContext},
		{"CancelInFlight", []string{CapDelay}, (*gwSuite).testCancelInFlight},
		{"Close", nil, (*gwSuite).testClose},
	}
	for _, f := range GatewayFaults {
		cases = append(cases, gwCase{f.Capability(), []string{f.Capability()},
			func(s *gwSuite, t *testing.T, ctx context.Context) { s.testFault(t, ctx, f) }})
	}
	return cases
}

// testCapabilities checks the declaration itself: nothing undeclared goes
// unexplained, and the harness proves each class of error that decides
// double-charge safety, live or through an injected fault.
func (s *gwSuite) testCapabilities(t *testing.T, _ context.Context) {
	for _, p := range gatewayCapabilityProblems(s.h) {
		t.Error(p)
	}
	names := allGatewayCapNames()
	declared := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return !s.caps.has(n) })
	skipped := slices.DeleteFunc(slices.Clone(names), s.caps.has)
	t.Logf("declared: %v; not declared (their cases skip with the harness's reason): %v", declared, skipped)
}

// gatewayCapabilityProblems returns what is wrong with h's declaration.
func gatewayCapabilityProblems(h GatewayHarness) []string {
	c := h.Capabilities
	names := allGatewayCapNames()
	var problems []string
	for _, n := range names {
		if !c.has(n) && strings.TrimSpace(c.Notes[n]) == "" {
			problems = append(problems, fmt.Sprintf("capability %s is neither declared nor explained in GatewayCapabilities.Notes: say why the driver or its peer cannot prove it, and where it is proven instead", n))
		}
	}
	for n := range c.Notes {
		if !slices.Contains(names, n) {
			problems = append(problems, fmt.Sprintf("GatewayCapabilities.Notes names an unknown capability %q (want one of %v)", n, names))
		}
	}
	for _, f := range c.Faults {
		if !slices.Contains(GatewayFaults, f) {
			problems = append(problems, fmt.Sprintf("GatewayCapabilities.Faults lists an unknown fault %q", f))
		}
	}
	if (c.Idempotent || c.Lookup) && !c.Stateful {
		problems = append(problems, "Idempotent and Lookup need Stateful: a peer that keeps no payments cannot replay or find them")
	}
	if c.Declines && h.Tokens.Declined == "" {
		problems = append(problems, "Declines declared without Tokens.Declined")
	}
	if c.SoftDeclines && h.Tokens.SoftDeclined == "" {
		problems = append(problems, "SoftDeclines declared without Tokens.SoftDeclined")
	}
	// The classes of errors that decide whether a payment may be retried,
	// cascaded or settled must each be proven one way or another.
	floors := []struct {
		what string
		ways []string
	}{
		{"a decline is classified KindDeclined", []string{CapDeclines, FaultDeclined.Capability()}},
		{"a refusal before processing is transient and NotProcessed", []string{FaultRefused.Capability(), FaultUnreachable.Capability()}},
		{"a lost answer is ambiguous (never NotProcessed, never a decline)", []string{FaultServerError.Capability(), FaultNoAnswer.Capability()}},
		{"an idempotency key reused with other parameters is refused", []string{CapIdempotent, FaultKeyReused.Capability()}},
	}
	for _, f := range floors {
		if !slices.ContainsFunc(f.ways, c.has) {
			problems = append(problems, fmt.Sprintf("the harness cannot prove that %s: declare one of %v", f.what, f.ways))
		}
	}
	return problems
}

func (s *gwSuite) authorize(pay string, amount int64, currency, pm string, cm gateway.CaptureMethod) *gateway.AuthorizeRequest {
	return &gateway.AuthorizeRequest{IdempotencyKey: pay + ":authorize", PaymentID: pay, Merchant: "gwkit", Origin: "web",
		Amount: amount, Currency: currency, PaymentMethod: pm, CaptureMethod: cm, Metadata: map[string]string{"suite": "gwkit"}}
}

func captureReq(pay, ref string, amount int64, currency string) *gateway.CaptureRequest {
	return &gateway.CaptureRequest{IdempotencyKey: pay + ":capture", PaymentID: pay, Reference: ref, Amount: amount, Currency: currency}
}

func voidReq(pay, ref string) *gateway.VoidRequest {
	return &gateway.VoidRequest{IdempotencyKey: pay + ":void", PaymentID: pay, Reference: ref}
}

func refundReq(pay, refundID, ref string, amount int64, currency string) *gateway.RefundRequest {
	return &gateway.RefundRequest{IdempotencyKey: refundID, PaymentID: pay, RefundID: refundID, Reference: ref, Amount: amount, Currency: currency}
}

// authorized authorizes a payment of amount EUR minor units with the
// approved token and returns its id and transaction.
func (s *gwSuite) authorized(t *testing.T, ctx context.Context, g *gateway.Gateway, amount int64, cm gateway.CaptureMethod) (string, *gateway.Transaction) {
	t.Helper()
	pay := s.paymentID()
	tx, err := g.Authorize(ctx, s.authorize(pay, amount, "EUR", s.h.Tokens.Approved, cm))
	if err != nil {
		t.Fatalf("authorize %s (%s): %v", pay, cm, err)
	}
	if tx == nil || tx.Reference == "" {
		t.Fatalf("authorize %s: transaction %+v has no reference", pay, tx)
	}
	return pay, tx
}

// step runs a part of a case that needs capability name, as a subtest
// skipped with the reason when it is not declared.
func (s *gwSuite) step(t *testing.T, name, capability string, fn func(t *testing.T)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		if capability != "" {
			s.need(t, capability)
		}
		fn(t)
	})
}

// wantTx returns a function that checks a call succeeded with a
// transaction: wantTx(t, "capture")(g.Capture(ctx, r)).
func wantTx(t *testing.T, what string) func(*gateway.Transaction, error) *gateway.Transaction {
	return func(tx *gateway.Transaction, err error) *gateway.Transaction {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if tx == nil {
			t.Fatalf("%s: nil transaction and nil error", what)
		}
		return tx
	}
}

func wantStatus(t *testing.T, what string, tx *gateway.Transaction, st gateway.Status) {
	t.Helper()
	if tx.Status != st {
		t.Errorf("%s: status %q, want %q (%+v)", what, tx.Status, st, *tx)
	}
}

func wantRef(t *testing.T, what string, tx *gateway.Transaction, ref string) {
	t.Helper()
	if tx.Reference != ref {
		t.Errorf("%s: reference %q, want the authorization's %q", what, tx.Reference, ref)
	}
}

func wantAmounts(t *testing.T, what string, tx *gateway.Transaction, amount, captured, refunded int64, currency string) {
	t.Helper()
	if tx.Amount != amount || tx.AmountCaptured != captured || tx.AmountRefunded != refunded || tx.Currency != currency {
		t.Errorf("%s: amount %d captured %d refunded %d %s, want %d %d %d %s", what,
			tx.Amount, tx.AmountCaptured, tx.AmountRefunded, tx.Currency, amount, captured, refunded, currency)
	}
}

// gwClass is the classification an error must have.
type gwClass struct {
	kinds        []gateway.Kind
	notProcessed *bool // nil: either
	retryable    bool
}

var (
	// gwNotProcessed and gwMaybeProcessed are the values classes point NotProcessed at.
	gwNotProcessed, gwMaybeProcessed = true, false
	// classRejected: the request is wrong; nothing happened.
	classRejected = gwClass{kinds: []gateway.Kind{gateway.KindInvalidRequest}, notProcessed: &gwNotProcessed}
	// classRetrySameKey: retry with the same key (or look the key up);
	// never settled as declined or rejected.
	classRetrySameKey = gwClass{kinds: []gateway.Kind{gateway.KindTransient, gateway.KindUnknown}, retryable: true}
	// classAmbiguous: the provider may have acted.
	classAmbiguous = gwClass{kinds: []gateway.Kind{gateway.KindTransient, gateway.KindUnknown}, notProcessed: &gwMaybeProcessed, retryable: true}
)

// wantClass checks err's classification and returns it.
func (s *gwSuite) wantClass(t *testing.T, what string, err error, c gwClass) *gateway.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want %v", what, c.kinds)
	}
	if leaksSecret(err.Error(), s.h.Secrets) {
		t.Errorf("%s: the error message quotes a secret of the harness: %v", what, err)
	}
	var ge *gateway.Error
	if !errors.As(err, &ge) {
		t.Fatalf("%s: error %v (%T) is not a *gateway.Error: drivers classify every failure", what, err, err)
	}
	if !slices.Contains(c.kinds, ge.Kind) {
		t.Errorf("%s: kind %v, want one of %v (error: %v)", what, ge.Kind, c.kinds, err)
	}
	if c.notProcessed != nil && ge.NotProcessed != *c.notProcessed {
		t.Errorf("%s: NotProcessed = %v, want %v (error: %v)", what, ge.NotProcessed, *c.notProcessed, err)
	}
	if gateway.Retryable(err) != c.retryable {
		t.Errorf("%s: Retryable = %v, want %v (error: %v)", what, gateway.Retryable(err), c.retryable, err)
	}
	return ge
}

// leaksSecret reports whether msg quotes any 12 consecutive characters of
// a secret (all of a shorter one): a truncated or partly masked key is
// still a leak.
func leaksSecret(msg string, secrets []string) bool {
	const window = 12
	for _, secret := range secrets {
		if len(secret) <= window {
			if secret != "" && strings.Contains(msg, secret) {
				return true
			}
			continue
		}
		for i := 0; i+window <= len(secret); i++ {
			if strings.Contains(msg, secret[i:i+window]) {
				return true
			}
		}
	}
	return false
}

// wantRejected checks a refusal of an operation in the wrong state or over
// the allowed amount. Whether it was refused before or by the provider,
// nothing happened, so it must be an invalid request and not retryable.
func (s *gwSuite) wantRejected(t *testing.T, what string, tx *gateway.Transaction, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: accepted (%+v), want KindInvalidRequest", what, tx)
	}
	s.wantClass(t, what, err, gwClass{kinds: []gateway.Kind{gateway.KindInvalidRequest}})
}

func (s *gwSuite) testAuthorizeManual(t *testing.T, ctx context.Context) {
	g := s.open(t, ctx, GatewayPeerConfig{}).Gateway
	_, tx := s.authorized(t, ctx, g, 1999, gateway.CaptureManual)
	wantStatus(t, "manual authorization", tx, gateway.StatusAuthorized)
	wantAmounts(t, "manual authorization", tx, 1999, 0, 0, "EUR")
}

func (s *gwSuite) testAuthorizeAutomatic(t *testing.T, ctx context.Context) {
	g := s.open(t, ctx, GatewayPeerConfig{}).Gateway
	_, tx := s.authorized(t, ctx, g, 1999, gateway.CaptureAutomatic)
	wantStatus(t, "automatic capture", tx, gateway.StatusCaptured)
	if tx.Amount != 1999 || tx.Currency != "EUR" {
		t.Errorf("automatic capture: amount %d %s, want 1999 EUR", tx.Amount, tx.Currency)
	}
	s.step(t, "CapturedAmount", CapStateful, func(t *testing.T) {
		wantAmounts(t, "automatic capture", tx, 1999, 1999, 0, "EUR")
	})
}

func (s *gwSuite) testCapture(t *testing.T, ctx context.Context) {
	g := s.open(t, ctx, GatewayPeerConfig{}).Gateway
	pay, a := s.authorized(t, ctx, g, 1000, gateway.CaptureManual)
	c := wantTx(t, "capture")(g.Capture(ctx, captureReq(pay, a.Reference, 1000, "EUR")))
	wantStatus(t, "capture", c, gateway.StatusCaptured)
	wantRef(t, "capture", c, a.Reference)
	s.step(t, "Amounts", CapStateful, func(t *testing.T) {
		wantAmounts(t, "capture", c, 1000, 1000, 0, "EUR")
	})
}

func (s *gwSuite) testPartialCapture(t *testing.T, ctx context.Context) {
	g := s.open(t, ctx, GatewayPeerConfig{}).Gateway
	pay, a := s.authorized(t, ctx, g, 1000, gateway.CaptureManual)
	c := wantTx(t, "partial capture")(g.Capture(ctx, captureReq(pay, a.Reference, 600, "EUR")))
	wantStatus(t, "partial capture", c, gateway.StatusCaptured)
	wantRef(t, "partial capture", c, a.Reference)
	s.step(t, "Amounts", CapStateful, func(t *testing.T) {
		wantAmounts(t, "partial capture", c, 1000, 600, 0, "EUR")
		// The rest of the authorization is released: there is no second capture.
		again := captureReq(pay, a.Reference, 400, "EUR")
		again.IdempotencyKey = pay + ":capture-2"
		tx, err := g.Capture(ctx, again)
		s.wantRejected(t, "second capture after a partial one", tx, err)
		tx, err = g.Refund(ctx, refundReq(pay, s.refundID(), a.Reference, 601, "EUR"))
		s.wantRejected(t, "refund over the captured amount", tx, err)
		r := wantTx(t, "refund of the captured amount")(g.Refund(ctx, refundReq(pay, s.refundID(), a.Reference, 600, "EUR")))
		wantStatus(t, "refund of the captured amount", r, gateway.StatusRefunded)
		wantAmounts(t, "refund of the captured amount", r, 1000, 600, 600, "EUR")
	})
}

func (s *gwSuite) testVoid(t *testing.T, ctx context.Context) {
	g := s.open(t, ctx, GatewayPeerConfig{}).Gateway
	pay, a := s.authorized(t, ctx, g, 1000, gateway.CaptureManual)
	v := wantTx(t, "void")(g.Void(ctx, voidReq(pay, a.Reference)))
	wantStatus(t, "void", v, gateway.StatusVoided)
	wantRef(t, "void", v, a.Reference)
	s.step(t, "StateRules", CapStateful, func(t *testing.T) {
		tx, err := g.Capture(ctx, captureReq(pay, a.Reference, 1000, "EUR"))
		s.wantRejected(t, "capture of a voided payment", tx, err)
		pay2, b := s.authorized(t, ctx, g, 1000, gateway.CaptureAutomatic)
		tx, err = g.Void(ctx, voidReq(pay2, b.Reference))
		s.wantRejected(t, "void of a captured payment", tx, err)
		pay3, m := s.authorized(t, ctx, g, 1000, gateway.CaptureManual)
		tx, err = g.Refund(ctx, refundReq(pay3, s.refundID(), m.Reference, 100, "EUR"))
		s.wantRejected(t, "refund of an uncaptured payment", tx, err)
	})
}

func (s *gwSuite) testRefund(t *testing.T, ctx context.Context) {
	g := s.open(t, ctx, GatewayPeerConfig{}).Gateway
	pay, a := s.authorized(t, ctx, g, 1000, gateway.CaptureAutomatic)
	r := wantTx(t, "refund")(g.Refund(ctx, refundReq(pay, s.refundID(), a.Reference, 1000, "EUR")))
	wantRef(t, "refund", r, a.Reference)
	if r.RefundReference == "" {
		t.Errorf("refund: no RefundReference in %+v", *r)
	}
	s.step(t, "Amounts", CapStateful, func(t *testing.T) {
		wantStatus(t, "full refund", r, gateway.StatusRefunded)
		wantAmounts(t, "full refund", r, 1000, 1000, 1000, "EUR")
		tx, err := g.Refund(ctx, refundReq(pay, s.refundID(), a.Reference, 1, "EUR"))
		s.wantRejected(t, "refund of a fully refunded payment", tx, err)
	})
}

func (s *gwSuite) testPartialRefund(t *testing.T, ctx context.Context) {
	g := s.open(t, ctx, GatewayPeerConfig{}).Gateway
	pay, a := s.authorized(t, ctx, g, 1000, gateway.CaptureAutomatic)
	r1 := wantTx(t, "partial refund")(g.Refund(ctx, refundReq(pay, s.refundID(), a.Reference, 300, "EUR")))
	wantRef(t, "partial refund", r1, a.Reference)
	if r1.RefundReference == "" {
		t.Errorf("partial refund: no RefundReference in %+v", *r1)
	}
	s.step(t, "Amounts", CapStateful, func(t *testing.T) {
		wantStatus(t, "partial refund", r1, gateway.StatusCaptured)
		wantAmounts(t, "partial refund", r1, 1000, 1000, 300, "EUR")
		tx, err := g.Refund(ctx, refundReq(pay, s.refundID(), a.Reference, 701, "EUR"))
		s.wantRejected(t, "refund over the rest", tx, err)
		r2 := wantTx(t, "refund of the rest")(g.Refund(ctx, refundReq(pay, s.refundID(), a.Reference, 700, "EUR")))
		wantStatus(t, "refund of the rest", r2, gateway.StatusRefunded)
		wantAmounts(t, "refund of the rest", r2, 1000, 1000, 1000, "EUR")
		if r2.RefundReference == "" || r2.RefundReference == r1.RefundReference {
			t.Errorf("second refund: RefundReference %q, want a new one (first %q)", r2.RefundReference, r1.RefundReference)
		}
	})
}

// testMinorUnits runs a payment in zero-decimal (JPY, ISK) and
// three-decimal (KWD) currencies: amounts are ISO 4217 minor units and must
// come back exactly as sent, whatever unit the provider uses on the wire.
// The KWD amounts end in 0, which providers require (Stripe does).
func (s *gwSuite) testMinorUnits(t *testing.T, ctx context.Context) {
	g := s.open(t, ctx, GatewayPeerConfig{}).Gateway
	for _, c := range []struct {
		currency                  string
		amount, capture, refund   int64
		majorAmount, majorCapture string // for messages
	}{
		{"JPY", 1999, 1500, 500, "¥1999", "¥1500"},
		// ISK has no minor unit in ISO 4217 but two decimals at some
		// providers (Stripe): the driver converts, the caller never sees it.
		{"ISK", 5000, 4000, 1000, "5000 kr", "4000 kr"},
		{"KWD", 12340, 10000, 2000, "12.340 KWD", "10.000 KWD"},
	} {
		t.Run(c.currency, func(t *testing.T) {
			pay := s.paymentID()
			a := wantTx(t, "authorize "+c.majorAmount)(g.Authorize(ctx, s.authorize(pay, c.amount, c.currency, s.h.Tokens.Approved, gateway.CaptureManual)))
			wantStatus(t, "authorize "+c.majorAmount, a, gateway.StatusAuthorized)
			wantAmounts(t, "authorize "+c.majorAmount, a, c.amount, 0, 0, c.currency)
			cp := wantTx(t, "capture "+c.majorCapture)(g.Capture(ctx, captureReq(pay, a.Reference, c.capture, c.currency)))
			wantStatus(t, "capture "+c.majorCapture, cp, gateway.StatusCaptured)
			r := wantTx(t, "refund")(g.Refund(ctx, refundReq(pay, s.refundID(), a.Reference, c.refund, c.currency)))
			s.step(t, "Amounts", CapStateful, func(t *testing.T) {
				wantAmounts(t, "capture "+c.majorCapture, cp, c.amount, c.capture, 0, c.currency)
				wantAmounts(t, "refund", r, c.amount, c.capture, c.refund, c.currency)
			})
		})
	}
}

// testInvalidAmount: a non-positive amount is refused as an invalid
// request that was not processed, for every operation that takes one.
func (s *gwSuite) testInvalidAmount(t *testing.T, ctx context.Context) {
	p := s.open(t, ctx, GatewayPeerConfig{})
	g := p.Gateway
	for _, amount := range []int64{0, -100} {
		pay := s.paymentID()
		tx, err := g.Authorize(ctx, s.authorize(pay, amount, "EUR", s.h.Tokens.Approved, gateway.CaptureAutomatic))
		if err == nil {
			t.Fatalf("authorize %d: accepted (%+v)", amount, tx)
		}
		s.wantClass(t, fmt.Sprintf("authorize %d", amount), err, classRejected)
		s.wantNotReceived(t, p, pay+":authorize")
	}
	pay, a := s.authorized(t, ctx, g, 1000, gateway.CaptureManual)
	tx, err := g.Capture(ctx, captureReq(pay, a.Reference, 0, "EUR"))
	if err == nil {
		t.Fatalf("capture 0: accepted (%+v)", tx)
	}
	s.wantClass(t, "capture 0", err, classRejected)
	c := wantTx(t, "capture after the refused one")(g.Capture(ctx, captureReq(pay+"-2", a.Reference, 1000, "EUR")))
	wantStatus(t, "capture after the refused one", c, gateway.StatusCaptured)
	rid := s.refundID()
	tx, err = g.Refund(ctx, refundReq(pay, rid, a.Reference, -5, "EUR"))
	if err == nil {
		t.Fatalf("refund -5: accepted (%+v)", tx)
	}
	s.wantClass(t, "refund -5", err, classRejected)
	s.wantNotReceived(t, p, rid)
}

// wantNotReceived checks, when the harness observes keys, that the peer
// never processed a request the driver reported NotProcessed.
func (s *gwSuite) wantNotReceived(t *testing.T, p *GatewayPeer, key string) {
	t.Helper()
	if s.caps.ObservesKeys && slices.Contains(p.ReceivedKeys(), key) {
		t.Errorf("the driver reported %s not processed, but the peer processed it", key)
	}
}

func (s *gwSuite) testUnknownReference(t *testing.T, ctx context.Context) {
	g := s.open(t, ctx, GatewayPeerConfig{}).Gateway
	pay := s.paymentID()
	ref := "ref_gwkit_missing_" + s.run
	nf := gwClass{kinds: []gateway.Kind{gateway.KindNotFound}}
	_, err := g.Capture(ctx, captureReq(pay, ref, 100, "EUR"))
	s.wantClass(t, "capture of an unknown reference", err, nf)
	_, err = g.Void(ctx, voidReq(pay, ref))
	s.wantClass(t, "void of an unknown reference", err, nf)
	_, err = g.Refund(ctx, refundReq(pay, s.refundID(), ref, 100, "EUR"))
	s.wantClass(t, "refund of an unknown reference", err, nf)
}

func (s *gwSuite) testLookup(t *testing.T, ctx context.Context) {
	g := s.open(t, ctx, GatewayPeerConfig{}).Gateway
	pay, a := s.authorized(t, ctx, g, 1000, gateway.CaptureManual)
	l := wantTx(t, "lookup of the authorization")(g.Lookup(ctx, pay+":authorize"))
	wantRef(t, "lookup of the authorization", l, a.Reference)
	wantStatus(t, "lookup of the authorization", l, gateway.StatusAuthorized)
	wantAmounts(t, "lookup of the authorization", l, 1000, 0, 0, "EUR")

	wantTx(t, "capture")(g.Capture(ctx, captureReq(pay, a.Reference, 400, "EUR")))
	l = wantTx(t, "lookup of the capture")(g.Lookup(ctx, pay+":capture"))
	wantRef(t, "lookup of the capture", l, a.Reference)
	wantStatus(t, "lookup of the capture", l, gateway.StatusCaptured)
	if l.AmountCaptured != 400 {
		t.Errorf("lookup of the capture: captured %d, want 400", l.AmountCaptured)
	}

	rid := s.refundID()
	r := wantTx(t, "refund")(g.Refund(ctx, refundReq(pay, rid, a.Reference, 100, "EUR")))
	l = wantTx(t, "lookup of the refund")(g.Lookup(ctx, rid))
	wantRef(t, "lookup of the refund", l, a.Reference)
	if l.RefundReference != r.RefundReference || l.AmountRefunded < 100 {
		t.Errorf("lookup of the refund: %+v, want refund %s of at least 100", *l, r.RefundReference)
	}

	pay2, v := s.authorized(t, ctx, g, 500, gateway.CaptureManual)
	wantTx(t, "void")(g.Void(ctx, voidReq(pay2, v.Reference)))
	l = wantTx(t, "lookup of the void")(g.Lookup(ctx, pay2+":void"))
	wantStatus(t, "lookup of the void", l, gateway.StatusVoided)

	_, err := g.Lookup(ctx, s.paymentID()+":authorize")
	s.wantClass(t, "lookup of a key never sent", err, gwClass{kinds: []gateway.Kind{gateway.KindNotFound}})
	_, err = g.Lookup(ctx, s.refundID())
	s.wantClass(t, "lookup of a refund key never sent", err, gwClass{kinds: []gateway.Kind{gateway.KindNotFound}})
}

func (s *gwSuite) testIdempotentReplay(t *testing.T, ctx context.Context) {
	g := s.open(t, ctx, GatewayPeerConfig{}).Gateway
	pay, a := s.authorized(t, ctx, g, 1000, gateway.CaptureManual)
	b := wantTx(t, "replayed authorization")(g.Authorize(ctx, s.authorize(pay, 1000, "EUR", s.h.Tokens.Approved, gateway.CaptureManual)))
	wantRef(t, "replayed authorization", b, a.Reference)
	wantStatus(t, "replayed authorization", b, gateway.StatusAuthorized)

	c1 := wantTx(t, "capture")(g.Capture(ctx, captureReq(pay, a.Reference, 800, "EUR")))
	c2 := wantTx(t, "replayed capture")(g.Capture(ctx, captureReq(pay, a.Reference, 800, "EUR")))
	wantRef(t, "replayed capture", c2, a.Reference)
	wantAmounts(t, "replayed capture", c2, c1.Amount, 800, 0, "EUR")

	rid := s.refundID()
	r1 := wantTx(t, "refund")(g.Refund(ctx, refundReq(pay, rid, a.Reference, 100, "EUR")))
	r2 := wantTx(t, "replayed refund")(g.Refund(ctx, refundReq(pay, rid, a.Reference, 100, "EUR")))
	if r2.RefundReference != r1.RefundReference || r2.AmountRefunded != 100 {
		t.Errorf("replayed refund: %+v, want refund %s with 100 refunded (not twice)", *r2, r1.RefundReference)
	}
	r3 := wantTx(t, "another refund")(g.Refund(ctx, refundReq(pay, s.refundID(), a.Reference, 100, "EUR")))
	if r3.AmountRefunded != 200 || r3.RefundReference == r1.RefundReference {
		t.Errorf("another refund: %+v, want 200 refunded in all under a new refund reference", *r3)
	}

	pay2, v := s.authorized(t, ctx, g, 500, gateway.CaptureManual)
	v1 := wantTx(t, "void")(g.Void(ctx, voidReq(pay2, v.Reference)))
	v2 := wantTx(t, "replayed void")(g.Void(ctx, voidReq(pay2, v.Reference)))
	if *v1 != *v2 {
		t.Errorf("replayed void: %+v, want %+v", *v2, *v1)
	}
}

// testKeyReused: the same key with another request is refused, and the
// refusal is not NotProcessed: the first request with that key may have
// charged, so the payment must neither cascade to another gateway nor be
// sent again under a new key.
func (s *gwSuite) testKeyReused(t *testing.T, ctx context.Context) {
	g := s.open(t, ctx, GatewayPeerConfig{}).Gateway
	pay, a := s.authorized(t, ctx, g, 1000, gateway.CaptureAutomatic)
	_, err := g.Authorize(ctx, s.authorize(pay, 999, "EUR", s.h.Tokens.Approved, gateway.CaptureAutomatic))
	s.wantClass(t, "authorization key reused with another amount", err, gwClass{kinds: []gateway.Kind{gateway.KindInvalidRequest}, notProcessed: &gwMaybeProcessed})
	b := wantTx(t, "the original request again")(g.Authorize(ctx, s.authorize(pay, 1000, "EUR", s.h.Tokens.Approved, gateway.CaptureAutomatic)))
	wantRef(t, "the original request again", b, a.Reference)

	rid := s.refundID()
	wantTx(t, "refund")(g.Refund(ctx, refundReq(pay, rid, a.Reference, 100, "EUR")))
	_, err = g.Refund(ctx, refundReq(pay, rid, a.Reference, 200, "EUR"))
	s.wantClass(t, "refund key reused with another amount", err, gwClass{kinds: []gateway.Kind{gateway.KindInvalidRequest}, notProcessed: &gwMaybeProcessed})
	r := wantTx(t, "another refund")(g.Refund(ctx, refundReq(pay, s.refundID(), a.Reference, 100, "EUR")))
	if r.AmountRefunded != 200 {
		t.Errorf("refunded %d in all, want 200: the refused reuse must have no effect", r.AmountRefunded)
	}
}

// testKeysReachPeer: every operation sends its idempotency key, which is
// what makes the provider's idempotency (and a retry after a lost answer)
// work.
func (s *gwSuite) testKeysReachPeer(t *testing.T, ctx context.Context) {
	p := s.open(t, ctx, GatewayPeerConfig{})
	g := p.Gateway
	pay, a := s.authorized(t, ctx, g, 1000, gateway.CaptureManual)
	wantTx(t, "capture")(g.Capture(ctx, captureReq(pay, a.Reference, 1000, "EUR")))
	rid := s.refundID()
	wantTx(t, "refund")(g.Refund(ctx, refundReq(pay, rid, a.Reference, 100, "EUR")))
	pay2, b := s.authorized(t, ctx, g, 500, gateway.CaptureManual)
	wantTx(t, "void")(g.Void(ctx, voidReq(pay2, b.Reference)))
	got := p.ReceivedKeys()
	for _, k := range []string{pay + ":authorize", pay + ":capture", rid, pay2 + ":authorize", pay2 + ":void"} {
		if !slices.Contains(got, k) {
			t.Errorf("the peer never received idempotency key %q (received %q)", k, got)
		}
	}
}

func (s *gwSuite) testDecline(t *testing.T, ctx context.Context) {
	g := s.open(t, ctx, GatewayPeerConfig{}).Gateway
	pay := s.paymentID()
	_, err := g.Authorize(ctx, s.authorize(pay, 1000, "EUR", s.h.Tokens.Declined, gateway.CaptureAutomatic))
	ge := s.wantDecline(t, "decline", err, false)
	s.step(t, "Replay", CapIdempotent, func(t *testing.T) {
		_, err := g.Authorize(ctx, s.authorize(pay, 1000, "EUR", s.h.Tokens.Declined, gateway.CaptureAutomatic))
		again := s.wantDecline(t, "replayed decline", err, false)
		if again.DeclineCode != ge.DeclineCode {
			t.Errorf("replayed decline: code %q, want %q", again.DeclineCode, ge.DeclineCode)
		}
	})
	s.step(t, "Lookup", CapLookup, func(t *testing.T) {
		// A decline is an answer: Lookup returns it with a nil error.
		l := wantTx(t, "lookup of a decline")(g.Lookup(ctx, pay+":authorize"))
		wantStatus(t, "lookup of a decline", l, gateway.StatusDeclined)
		if l.DeclineCode != ge.DeclineCode {
			t.Errorf("lookup of a decline: code %q, want %q", l.DeclineCode, ge.DeclineCode)
		}
	})
}

func (s *gwSuite) testSoftDecline(t *testing.T, ctx context.Context) {
	g := s.open(t, ctx, GatewayPeerConfig{}).Gateway
	_, err := g.Authorize(ctx, s.authorize(s.paymentID(), 1000, "EUR", s.h.Tokens.SoftDeclined, gateway.CaptureAutomatic))
	s.wantDecline(t, "soft decline", err, true)
}

// wantDecline checks a decline: KindDeclined with the issuer's code, soft
// or hard as wanted, and not retryable with the same key (the answer would
// be the same).
func (s *gwSuite) wantDecline(t *testing.T, what string, err error, soft bool) *gateway.Error {
	t.Helper()
	ge := s.wantClass(t, what, err, gwClass{kinds: []gateway.Kind{gateway.KindDeclined}})
	if !errors.Is(err, gateway.ErrDeclined) {
		t.Errorf("%s: errors.Is(err, gateway.ErrDeclined) is false", what)
	}
	if ge.DeclineCode == "" {
		t.Errorf("%s: no DeclineCode", what)
	}
	if ge.SoftDecline != soft {
		t.Errorf("%s: SoftDecline = %v, want %v", what, ge.SoftDecline, soft)
	}
	return ge
}

// testCancelledContext: a call made with a cancelled context fails, and
// its error says "retry with the same key" (transient or unknown), never
// declined or rejected: the caller gave up, the payment did not fail.
func (s *gwSuite) testCancelledContext(t *testing.T, ctx context.Context) {
	p := s.open(t, ctx, GatewayPeerConfig{})
	g := p.Gateway
	pay, a := s.authorized(t, ctx, g, 1000, gateway.CaptureManual)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	pay2 := s.paymentID()
	rid := s.refundID()
	calls := []struct {
		what, key string
		call      func() (*gateway.Transaction, error)
	}{
		{"authorize", pay2 + ":authorize", func() (*gateway.Transaction, error) {
			return g.Authorize(cctx, s.authorize(pay2, 1000, "EUR", s.h.Tokens.Approved, gateway.CaptureAutomatic))
		}},
		{"capture", pay + ":capture", func() (*gateway.Transaction, error) {
			return g.Capture(cctx, captureReq(pay, a.Reference, 1000, "EUR"))
		}},
		{"refund", rid, func() (*gateway.Transaction, error) {
			return g.Refund(cctx, refundReq(pay, rid, a.Reference, 100, "EUR"))
		}},
		{"void", pay + ":void", func() (*gateway.Transaction, error) { return g.Void(cctx, voidReq(pay, a.Reference)) }},
		{"lookup", "", func() (*gateway.Transaction, error) { return g.Lookup(cctx, pay+":authorize") }},
	}
	for _, c := range calls {
		tx, err := c.call()
		if err == nil {
			t.Errorf("%s with a cancelled context: succeeded (%+v), want an error", c.what, tx)
			continue
		}
		ge := s.wantClass(t, c.what+" with a cancelled context", err, classRetrySameKey)
		if ge.NotProcessed && c.key != "" {
			s.wantNotReceived(t, p, c.key)
		}
	}
	// The caller retries with the same keys and a live context.
	c := wantTx(t, "capture retried")(g.Capture(ctx, captureReq(pay, a.Reference, 1000, "EUR")))
	wantStatus(t, "capture retried", c, gateway.StatusCaptured)
	wantTx(t, "authorize retried")(g.Authorize(ctx, s.authorize(pay2, 1000, "EUR", s.h.Tokens.Approved, gateway.CaptureAutomatic)))
	s.step(t, "NothingHappened", CapStateful, func(t *testing.T) {
		// Nothing the cancelled calls asked for happened: the payment was
		// captured once, in full, with nothing refunded.
		wantAmounts(t, "capture retried", c, 1000, 1000, 0, "EUR")
	})
}

// testCancelInFlight: the caller gives up while the request is at the
// peer. The call returns promptly with a retry-with-the-same-key error;
// the retry yields one payment, not two.
func (s *gwSuite) testCancelInFlight(t *testing.T, ctx context.Context) {
	const delay = 600 * time.Millisecond
	p := s.open(t, ctx, GatewayPeerConfig{Delay: delay})
	g := p.Gateway
	pay := s.paymentID()
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	tx, err := g.Authorize(cctx, s.authorize(pay, 1000, "EUR", s.h.Tokens.Approved, gateway.CaptureAutomatic))
	elapsed := time.Since(start)
	if err == nil {
		t.Fatalf("authorize cancelled in flight: succeeded (%+v) after %v, want an error", tx, elapsed)
	}
	ge := s.wantClass(t, "authorize cancelled in flight", err, classRetrySameKey)
	if elapsed >= delay {
		t.Errorf("authorize cancelled after 100ms returned after %v: the driver waited for the answer", elapsed)
	}
	if ge.NotProcessed {
		s.wantNotReceived(t, p, pay+":authorize")
	}
	r := wantTx(t, "authorize retried")(g.Authorize(ctx, s.authorize(pay, 1000, "EUR", s.h.Tokens.Approved, gateway.CaptureAutomatic)))
	wantStatus(t, "authorize retried", r, gateway.StatusCaptured)
	s.step(t, "OnePayment", CapLookup, func(t *testing.T) {
		l := wantTx(t, "lookup")(g.Lookup(ctx, pay+":authorize"))
		wantRef(t, "lookup after the retry", l, r.Reference)
	})
}

func (s *gwSuite) testClose(t *testing.T, ctx context.Context) {
	p, err := s.h.Open(ctx, t, GatewayPeerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Gateway.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := p.Gateway.Close(); !errors.Is(err, gateway.ErrClosed) {
		t.Errorf("second Close: %v, want gateway.ErrClosed", err)
	}
	_, err = p.Gateway.Authorize(ctx, s.authorize(s.paymentID(), 1000, "EUR", s.h.Tokens.Approved, gateway.CaptureAutomatic))
	if !errors.Is(err, gateway.ErrClosed) || gateway.Retryable(err) {
		t.Errorf("authorize after Close: %v, want gateway.ErrClosed, not retryable", err)
	}
}

// faultClass is the classification each fault must get.
func faultClass(f GatewayFault) gwClass {
	switch f {
	case FaultDeclined, FaultSoftDeclined:
		return gwClass{kinds: []gateway.Kind{gateway.KindDeclined}}
	case FaultRefused, FaultUnreachable:
		return gwClass{kinds: []gateway.Kind{gateway.KindTransient}, notProcessed: &gwNotProcessed, retryable: true}
	case FaultServerError, FaultNoAnswer, FaultKeyInUse:
		return classAmbiguous
	case FaultKeyReused:
		return gwClass{kinds: []gateway.Kind{gateway.KindInvalidRequest}, notProcessed: &gwMaybeProcessed}
	case FaultAuthentication:
		return gwClass{kinds: []gateway.Kind{gateway.KindAuthentication}, notProcessed: &gwNotProcessed}
	}
	panic("testkit: unknown fault " + string(f))
}

// testFault injects f into an authorization and checks its
// classification, then what follows from it: a request refused before
// processing left nothing behind and can be retried; a lost answer left a
// payment that Lookup finds and the retry with the same key returns.
func (s *gwSuite) testFault(t *testing.T, ctx context.Context, f GatewayFault) {
	p := s.open(t, ctx, GatewayPeerConfig{Fault: f})
	g := p.Gateway
	pay := s.paymentID()
	key := pay + ":authorize"
	req := s.authorize(pay, 1000, "EUR", s.h.Tokens.Approved, gateway.CaptureManual)
	tx, err := g.Authorize(ctx, req)
	if err == nil {
		t.Fatalf("authorize with fault %s: succeeded (%+v), want an error", f, tx)
	}
	s.wantClass(t, "fault "+string(f), err, faultClass(f))
	switch f {
	case FaultDeclined, FaultSoftDeclined:
		s.wantDecline(t, "fault "+string(f), err, f == FaultSoftDeclined)
	case FaultRefused, FaultKeyInUse:
		if f == FaultRefused {
			s.wantNotReceived(t, p, key)
			s.step(t, "NothingToLookUp", CapLookup, func(t *testing.T) {
				_, err := g.Lookup(ctx, key)
				s.wantClass(t, "lookup after a refusal", err, gwClass{kinds: []gateway.Kind{gateway.KindNotFound}})
			})
		}
		r := wantTx(t, "retry with the same key")(g.Authorize(ctx, req))
		wantStatus(t, "retry with the same key", r, gateway.StatusAuthorized)
	case FaultServerError, FaultNoAnswer:
		if s.caps.ObservesKeys && !slices.Contains(p.ReceivedKeys(), key) {
			t.Errorf("fault %s: the peer did not process %s, so this fault was not injected after processing", f, key)
		}
		var found *gateway.Transaction
		s.step(t, "LookupFindsIt", CapLookup, func(t *testing.T) {
			found = wantTx(t, "lookup after a lost answer")(g.Lookup(ctx, key))
			wantStatus(t, "lookup after a lost answer", found, gateway.StatusAuthorized)
		})
		r := wantTx(t, "retry with the same key")(g.Authorize(ctx, req))
		wantStatus(t, "retry with the same key", r, gateway.StatusAuthorized)
		s.step(t, "RetryIsTheSamePayment", CapIdempotent, func(t *testing.T) {
			// The provider acted on the first request: the retry must
			// return that payment, not charge a second time.
			if found != nil {
				wantRef(t, "retry after a lost answer", r, found.Reference)
			}
			again := wantTx(t, "second retry")(g.Authorize(ctx, req))
			wantRef(t, "second retry", again, r.Reference)
		})
	case FaultUnreachable:
		_, err := g.Authorize(ctx, req)
		s.wantClass(t, "second attempt at an unreachable peer", err, faultClass(f))
	case FaultAuthentication:
		if strings.Contains(err.Error(), "Bearer") {
			t.Errorf("fault %s: the error quotes credentials: %v", f, err)
		}
	}
}
