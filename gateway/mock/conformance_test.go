package mock_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/payrail/payrail/gateway"
	"github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/internal/testkit"
)

// TestConformance runs the gateway driver suite against the mock, which is
// its own peer: a stateful, idempotent provider in process.
func TestConformance(t *testing.T) {
	testkit.RunGatewayConformance(t, testkit.GatewayHarness{
		Open: openForSuite,
		Tokens: testkit.GatewayTokens{
			Approved:     "pm_card_visa",
			Declined:     "pm_card_chargeDeclined",
			SoftDeclined: "pm_card_tryAgainLater",
		},
		Capabilities: testkit.GatewayCapabilities{
			Stateful: true, Idempotent: true, Lookup: true, Declines: true, SoftDeclines: true, Delay: true,
			Faults: []testkit.GatewayFault{testkit.FaultRefused, testkit.FaultNoAnswer},
			Notes: map[string]string{
				testkit.CapObservesKeys:                  "the mock is in process: there is no wire to observe; that every key is honoured is proven by Idempotent and Lookup",
				testkit.FaultDeclined.Capability():       "declines are proven live with Tokens.Declined (Declines)",
				testkit.FaultSoftDeclined.Capability():   "soft declines are proven live with Tokens.SoftDeclined (SoftDeclines)",
				testkit.FaultUnreachable.Capability():    "the mock is in process and cannot be unreachable; FaultRefused proves the same not-processed class",
				testkit.FaultServerError.Capability():    "the mock has no server; its only failure after processing is a lost answer (FaultNoAnswer, mock.FaultAnswerLost)",
				testkit.FaultKeyReused.Capability():      "key reuse is refused live by the mock (Idempotent)",
				testkit.FaultKeyInUse.Capability():       "the mock serialises requests per key, so no request ever finds its key in use",
				testkit.FaultAuthentication.Capability(): "the mock takes no credentials",
			},
		},
	})
}

// openForSuite opens a fresh mock by URL, as users do, and injects the
// fault the suite asks for with FailNext.
func openForSuite(ctx context.Context, t testing.TB, cfg testkit.GatewayPeerConfig) (*testkit.GatewayPeer, error) {
	u := "mock://?name=mock-suite"
	if cfg.Delay > 0 {
		u += "&latency=" + cfg.Delay.String()
	}
	g, err := gateway.Open(ctx, u)
	if err != nil {
		return nil, err
	}
	var m *mock.Mock
	if !g.As(&m) {
		return nil, fmt.Errorf("As(**mock.Mock) failed")
	}
	switch cfg.Fault {
	case "":
	case testkit.FaultRefused:
		m.FailNext(mock.FaultRefused)
	case testkit.FaultNoAnswer:
		m.FailNext(mock.FaultAnswerLost)
	default:
		return nil, fmt.Errorf("the mock cannot inject fault %s", cfg.Fault)
	}
	return &testkit.GatewayPeer{Gateway: g}, nil
}
