package testkit

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payrail/payrail/gateway"
)

// GatewayHarness connects the gateway conformance suite to one driver and
// its real peer (the provider's simulator, an in-process implementation of
// the provider, or the provider's test mode). Harnesses live in the
// driver's _test.go files.
type GatewayHarness struct {
	// Open opens a gateway of the driver under test connected to its peer,
	// set up as cfg asks. Open it the way users do, with gateway.Open and
	// a URL, so that registration and URL parsing are on the tested path.
	// The suite closes the gateway. cfg.Delay is set only when Delay is
	// declared, cfg.Fault only when that fault is declared.
	Open func(ctx context.Context, t testing.TB, cfg GatewayPeerConfig) (*GatewayPeer, error)
	// Capabilities declares what the driver and its peer can prove.
	Capabilities GatewayCapabilities
	// Tokens are the payment method tokens the peer answers predictably.
	Tokens GatewayTokens
	// Secrets are the API keys and passwords the harness configures the
	// driver with. No error of the gateway may quote 12 consecutive
	// characters of one (or all of a shorter one).
	Secrets []string
}

// GatewayTokens are payment method tokens with a known outcome at the peer.
type GatewayTokens struct {
	// Approved is authorized by the peer (required).
	Approved string
	// Declined is refused by the peer with a hard decline (required when
	// Declines is declared).
	Declined string
	// SoftDeclined is refused by the peer with a soft decline such as
	// try_again_later (required when SoftDeclines is declared).
	SoftDeclined string
}

// GatewayPeerConfig says how the suite needs the peer set up.
type GatewayPeerConfig struct {
	// Delay, when positive, makes the peer answer every request no sooner
	// than Delay after receiving it, so that a caller can give up while the
	// request is in flight.
	Delay time.Duration
	// Fault, when set, makes the peer fail the first request the gateway
	// sends with that fault; later requests are served normally, so that
	// the suite can look the outcome up and retry (FaultUnreachable and
	// FaultAuthentication fail every request).
	Fault GatewayFault
}

// GatewayPeer is a gateway opened by the harness, with what the harness can
// observe of its peer.
type GatewayPeer struct {
	// Gateway is the gateway under test.
	Gateway *gateway.Gateway
	// ReceivedKeys, required when ObservesKeys is declared, returns the
	// idempotency keys of the requests the peer has received from this
	// gateway so far, in order, duplicates included.
	ReceivedKeys func() []string
}

// GatewayFault is a failure the harness's peer can inject into a request;
// the suite checks how the driver classifies it. The classification is
// what decides double-charge safety (see docs/gateway-drivers.md): only an
// error the provider definitely did not act on may be NotProcessed, and an
// answer that was lost must never read as a decline or a rejection.
type GatewayFault string

// Faults. Each is declared by listing it in GatewayCapabilities.Faults;
// its capability name is "Fault" followed by its name.
const (
	// FaultDeclined: the provider declines the payment (hard decline).
	// Want KindDeclined with a DeclineCode, not SoftDecline, not retryable.
	FaultDeclined GatewayFault = "Declined"
	// FaultSoftDeclined: a decline another attempt may approve
	// (try_again_later). Want KindDeclined with SoftDecline set.
	FaultSoftDeclined GatewayFault = "SoftDeclined"
	// FaultRefused: the provider refuses the request before acting on it
	// (rate limit, lock timeout). Want KindTransient, NotProcessed,
	// retryable; the retry with the same key succeeds.
	FaultRefused GatewayFault = "Refused"
	// FaultUnreachable: the provider cannot be reached at all (connection
	// refused); every request fails. Want KindTransient, NotProcessed.
	FaultUnreachable GatewayFault = "Unreachable"
	// FaultServerError: the provider acts on the request, then fails with a
	// server error. Want KindTransient or KindUnknown, NOT NotProcessed,
	// retryable: the outcome is unknown.
	FaultServerError GatewayFault = "ServerError"
	// FaultNoAnswer: the provider acts on the request and the connection
	// drops before the answer arrives. Same classification as
	// FaultServerError.
	FaultNoAnswer GatewayFault = "NoAnswer"
	// FaultKeyReused: the provider refuses the request because its
	// idempotency key was used with other parameters. Want
	// KindInvalidRequest, NOT NotProcessed (the first request may have
	// charged), not retryable.
	FaultKeyReused GatewayFault = "KeyReused"
	// FaultKeyInUse: a concurrent request with the same idempotency key is
	// still running at the provider. Want KindTransient or KindUnknown, NOT
	// NotProcessed, retryable.
	FaultKeyInUse GatewayFault = "KeyInUse"
	// FaultAuthentication: the provider refuses the gateway's credentials.
	// Want KindAuthentication, NotProcessed, not retryable.
	FaultAuthentication GatewayFault = "Authentication"
)

// GatewayFaults lists every fault the suite knows, in the order it runs them.
var GatewayFaults = []GatewayFault{
	FaultDeclined, FaultSoftDeclined, FaultRefused, FaultUnreachable, FaultServerError,
	FaultNoAnswer, FaultKeyReused, FaultKeyInUse, FaultAuthentication,
}

// Capability returns the fault's capability name, as used in skip
// messages and GatewayCapabilities.Notes.
func (f GatewayFault) Capability() string { return "Fault" + string(f) }

// GatewayCapabilities are the capability flags a gateway harness declares.
// Every declared capability must pass; every case needing an undeclared one
// is skipped with t.Skip naming the capability and the harness's reason
// from Notes. A capability that is neither declared nor explained in Notes
// fails the suite, as does a harness that cannot prove any decline, any
// refusal, any ambiguous outcome or any idempotency-key conflict.
type GatewayCapabilities struct {
	// Stateful: the peer keeps payments, so results reflect earlier
	// operations (captured and refunded amounts), and operations in the
	// wrong state or over the capturable or refundable amount are refused
	// with KindInvalidRequest; an unknown reference is KindNotFound.
	Stateful bool
	// Idempotent: the peer honours idempotency keys: the same key with the
	// same request returns the first result without a second effect; with
	// different parameters it is refused with KindInvalidRequest, not
	// NotProcessed. Requires Stateful.
	Idempotent bool
	// Lookup: Lookup finds operations by idempotency key on the peer,
	// declines included, and answers KindNotFound for keys never processed.
	// Requires Stateful.
	Lookup bool
	// Declines: the peer declines Tokens.Declined.
	Declines bool
	// SoftDeclines: the peer soft-declines Tokens.SoftDeclined.
	SoftDeclines bool
	// Delay: the harness honours GatewayPeerConfig.Delay.
	Delay bool
	// ObservesKeys: GatewayPeer.ReceivedKeys reports the keys the peer got.
	ObservesKeys bool
	// Faults the harness honours in GatewayPeerConfig.Fault.
	Faults []GatewayFault
	// Notes explains, per capability name ("Stateful", "FaultNoAnswer"),
	// why it is not declared and, where it is proven some other way, where.
	// The text is part of the skip message. Every undeclared capability
	// needs one.
	Notes map[string]string
	// CaseTimeout bounds each case (default 30s).
	CaseTimeout time.Duration
}

// Capability names, as used in skip messages and GatewayCapabilities.Notes.
const (
	CapStateful     = "Stateful"
	CapIdempotent   = "Idempotent"
	CapLookup       = "Lookup"
	CapDeclines     = "Declines"
	CapSoftDeclines = "SoftDeclines"
	CapDelay        = "Delay"
	CapObservesKeys = "ObservesKeys"
)

var gatewayCapNames = []string{CapStateful, CapIdempotent, CapLookup, CapDeclines, CapSoftDeclines, CapDelay, CapObservesKeys}

func (c GatewayCapabilities) has(name string) bool {
	switch name {
	case CapStateful:
		return c.Stateful
	case CapIdempotent:
		return c.Idempotent
	case CapLookup:
		return c.Lookup
	case CapDeclines:
		return c.Declines
	case CapSoftDeclines:
		return c.SoftDeclines
	case CapDelay:
		return c.Delay
	case CapObservesKeys:
		return c.ObservesKeys
	}
	for _, f := range c.Faults {
		if f.Capability() == name {
			return true
		}
	}
	return false
}

// allGatewayCapNames is every capability name, faults included.
func allGatewayCapNames() []string {
	names := slices.Clone(gatewayCapNames)
	for _, f := range GatewayFaults {
		names = append(names, f.Capability())
	}
	return names
}

// RunGatewayConformance runs the gateway conformance suite against the
// driver h connects to: authorize (manual and automatic capture), full and
// partial capture, void, full and partial refund, Lookup, idempotency
// (replays and keys reused with other parameters), declines, the error
// classification of every fault the harness can inject, zero- and
// three-decimal currencies (JPY, KWD) in minor units, invalid amounts,
// context cancellation before and during a call, and Close. Cases run as
// parallel subtests of t, each on its own gateway and payments.
func RunGatewayConformance(t *testing.T, h GatewayHarness) {
	t.Helper()
	if h.Open == nil {
		t.Fatal("testkit: GatewayHarness.Open is nil")
	}
	if h.Tokens.Approved == "" {
		t.Fatal("testkit: GatewayHarness.Tokens.Approved is empty")
	}
	s := &gwSuite{h: h, caps: h.Capabilities, run: randomID(4)}
	if s.caps.CaseTimeout <= 0 {
		s.caps.CaseTimeout = 30 * time.Second
	}
	for _, c := range gatewayCases() {
		t.Run(c.name, func(t *testing.T) {
			for _, n := range c.need {
				s.need(t, n)
			}
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), s.caps.CaseTimeout)
			t.Cleanup(cancel)
			c.run(s, t, ctx)
		})
	}
}

type gwSuite struct {
	h    GatewayHarness
	caps GatewayCapabilities
	run  string // unique per suite run, part of every payment id
	seq  atomic.Int64
}

type gwCase struct {
	name string
	need []string // capabilities the whole case needs
	run  func(s *gwSuite, t *testing.T, ctx context.Context)
}

// need skips t, naming the capability and the harness's reason, unless the
// capability is declared.
func (s *gwSuite) need(t *testing.T, name string) {
	t.Helper()
	if s.caps.has(name) {
		return
	}
	msg := fmt.Sprintf("capability %s not declared by the driver's harness", name)
	if note := s.caps.Notes[name]; note != "" {
		msg += ": " + note
	}
	t.Skip(msg)
}

// open opens a gateway through the harness and closes it after the test.
func (s *gwSuite) open(t *testing.T, ctx context.Context, cfg GatewayPeerConfig) *GatewayPeer {
	t.Helper()
	p, err := s.h.Open(ctx, t, cfg)
	if err != nil {
		t.Fatalf("open the gateway: %v", err)
	}
	if p == nil || p.Gateway == nil {
		t.Fatal("the harness returned no gateway")
	}
	if s.caps.ObservesKeys && p.ReceivedKeys == nil {
		t.Fatal("ObservesKeys declared but GatewayPeer.ReceivedKeys is nil")
	}
	t.Cleanup(func() { _ = p.Gateway.Close() })
	return p
}

// paymentID returns a payment id unique to this run and call; operation
// keys follow payrail's convention "<payment id>:<operation>", refund keys
// are refund ids.
func (s *gwSuite) paymentID() string {
	return fmt.Sprintf("pay_gwkit_%s_%04d", s.run, s.seq.Add(1))
}

func (s *gwSuite) refundID() string {
	return fmt.Sprintf("re_gwkit_%s_%04d", s.run, s.seq.Add(1))
}
