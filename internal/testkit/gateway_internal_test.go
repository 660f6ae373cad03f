package testkit

import (
	"strings"
	"testing"
)

// A harness cannot skip its way through the gateway suite: declaring
// nothing and explaining nothing is reported, capability by capability,
// and so is proving no class of error that decides double-charge safety.
func TestGatewayHarnessCannotSkipEverything(t *testing.T) {
	problems := gatewayCapabilityProblems(GatewayHarness{Tokens: GatewayTokens{Approved: "pm"}})
	all := strings.Join(problems, "\n")
	for _, n := range allGatewayCapNames() {
		if !strings.Contains(all, "capability "+n+" is neither declared nor explained") {
			t.Errorf("an unexplained %s is not reported", n)
		}
	}
	for _, floor := range []string{"a decline", "a refusal before processing", "a lost answer", "an idempotency key reused"} {
		if !strings.Contains(all, "cannot prove that "+floor) {
			t.Errorf("the floor %q is not enforced", floor)
		}
	}

	// Explaining everything is not enough: the floors still fail.
	notes := map[string]string{}
	for _, n := range allGatewayCapNames() {
		notes[n] = "not supported"
	}
	problems = gatewayCapabilityProblems(GatewayHarness{Capabilities: GatewayCapabilities{Notes: notes}})
	if len(problems) != 4 {
		t.Errorf("with every capability explained and none declared: %d problems, want the 4 floors: %q", len(problems), problems)
	}

	// Declaring what needs something else is reported too.
	problems = gatewayCapabilityProblems(GatewayHarness{Capabilities: GatewayCapabilities{
		Idempotent: true, Declines: true, Faults: []GatewayFault{FaultRefused, FaultNoAnswer, "Meteor"},
		Notes: map[string]string{"Telepathy": "no"},
	}})
	all = strings.Join(problems, "\n")
	for _, want := range []string{"need Stateful", "without Tokens.Declined", `unknown fault "Meteor"`, `unknown capability "Telepathy"`} {
		if !strings.Contains(all, want) {
			t.Errorf("problem %q not reported in %q", want, problems)
		}
	}
}

func TestLeaksSecret(t *testing.T) {
	secrets := []string{"sk_live_gwkitnotatestkey", "short"}
	for msg, want := range map[string]bool{
		"Authorization was 'Bearer sk_live_gwkitnot…": true, // truncated
		"key ****gwkitnotatestkey":                    true, // masked prefix
		"Invalid API Key provided: sk_live_****tkey":  false,
		"the short one":              true,
		"Stripe refused the API key": false,
	} {
		if got := leaksSecret(msg, secrets); got != want {
			t.Errorf("leaksSecret(%q) = %v, want %v", msg, got, want)
		}
	}
}
