package routing_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/payrail/payrail/gateway/routing"
)

const samplePolicy = `{
  "rules": [
    {"name": "pos-big-eur", "match": {"origins": ["pos"], "currencies": ["eur"], "min_amount": 100000},
     "gateways": ["b", "a"]},
    {"name": "pos", "match": {"origins": ["POS"]}, "gateways": ["a", "b"], "retry_soft_declines": true},
    {"name": "partner", "match": {"origins": ["partner-x"], "merchants": ["acme"]},
     "gateways": ["a", "b", "c"], "weights": {"a": 90, "b": 10}}
  ],
  "default": {"gateways": ["c", "a"]}
}`

func TestParsePolicyRoundTrip(t *testing.T) {
	p, err := routing.ParsePolicy([]byte(samplePolicy))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Rules) != 3 || p.Rules[1].Name != "pos" || !p.Rules[1].RetrySoftDeclines ||
		p.Rules[2].Weights["a"] != 90 || p.Rules[0].Match.MinAmount != 100000 ||
		!reflect.DeepEqual(p.Default.Gateways, []string{"c", "a"}) {
		t.Fatalf("decoded %+v", p)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	q, err := routing.ParsePolicy(b)
	if err != nil {
		t.Fatalf("re-parse of %s: %v", b, err)
	}
	if !reflect.DeepEqual(p, q) {
		t.Fatalf("round trip changed the policy:\n%+v\n%+v", p, q)
	}
	// The embedded route's fields sit at the rule's top level.
	if !strings.Contains(string(b), `"name":"pos","match":{"origins":["POS"]},"gateways":["a","b"],"retry_soft_declines":true`) {
		t.Fatalf("unexpected encoding %s", b)
	}
}

func TestParsePolicyRefusesMalformed(t *testing.T) {
	for name, in := range map[string]string{
		"unknown field":  `{"default":{"gateways":["a"]},"rulez":[]}`,
		"typo in match":  `{"rules":[{"name":"x","match":{"origin":["pos"]},"gateways":["a"]}],"default":{"gateways":["a"]}}`,
		"trailing data":  `{"default":{"gateways":["a"]}} {}`,
		"not an object":  `["a"]`,
		"float weight":   `{"default":{"gateways":["a"],"weights":{"a":1.5}}}`,
		"string amount":  `{"rules":[{"name":"x","match":{"min_amount":"10"},"gateways":["a"]}],"default":{"gateways":["a"]}}`,
		"empty document": ``,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := routing.ParsePolicy([]byte(in))
			if err == nil || !strings.Contains(err.Error(), "routing:") {
				t.Fatalf("ParsePolicy(%q) = %v, want an error", in, err)
			}
		})
	}
}

// Every validation problem is reported, with the JSON path of the value.
func TestValidateReportsEveryProblem(t *testing.T) {
	known := func(n string) bool { return n == "a" || n == "b" }
	cases := []struct {
		name   string
		policy string
		field  string
		msg    string
	}{
		{"no default", `{}`, "default.gateways", "at least one gateway"},
		{"unknown gateway", `{"default":{"gateways":["a","zz"]}}`, "default.gateways[1]", `unknown gateway "zz"`},
		{"duplicate gateway", `{"default":{"gateways":["a","a"]}}`, "default.gateways[1]", "listed twice"},
		{"empty rule chain", `{"rules":[{"name":"r","match":{"origins":["pos"]},"gateways":[]}],"default":{"gateways":["a"]}}`, "rules[0].gateways", "at least one"},
		{"bad rule name", `{"rules":[{"name":"no spaces","gateways":["a"]}],"default":{"gateways":["a"]}}`, "rules[0].name", "rule name"},
		{"duplicate rule name", `{"rules":[{"name":"r","match":{"origins":["pos"]},"gateways":["a"]},{"name":"r","match":{"origins":["web"]},"gateways":["a"]}],"default":{"gateways":["a"]}}`, "rules[1].name", "used by rules[0]"},
		{"weight not in chain", `{"default":{"gateways":["a"],"weights":{"b":1}}}`, "default.weights.b", "not in gateways"},
		{"negative weight", `{"default":{"gateways":["a","b"],"weights":{"a":-1,"b":1}}}`, "default.weights.a", "between 0"},
		{"zero weights", `{"default":{"gateways":["a","b"],"weights":{"a":0}}}`, "default.weights", "positive weight"},
		{"huge weight", `{"default":{"gateways":["a"],"weights":{"a":1000001}}}`, "default.weights.a", "between 0"},
		{"unknown currency", `{"rules":[{"name":"r","match":{"currencies":["EUR","XYZ"]},"gateways":["a"]}],"default":{"gateways":["a"]}}`, "rules[0].match.currencies[1]", "ISO 4217"},
		{"duplicate origin", `{"rules":[{"name":"r","match":{"origins":["pos","POS"]},"gateways":["a"]}],"default":{"gateways":["a"]}}`, "rules[0].match.origins[1]", "twice"},
		{"bad origin", `{"rules":[{"name":"r","match":{"origins":["p o s"]},"gateways":["a"]}],"default":{"gateways":["a"]}}`, "rules[0].match.origins[0]", "origin must be"},
		{"negative amount", `{"rules":[{"name":"r","match":{"min_amount":-1},"gateways":["a"]}],"default":{"gateways":["a"]}}`, "rules[0].match.min_amount", "negative"},
		{"inverted range", `{"rules":[{"name":"r","match":{"min_amount":10,"max_amount":5},"gateways":["a"]}],"default":{"gateways":["a"]}}`, "rules[0].match.max_amount", "below min_amount"},
		{"shadowed rule", `{"rules":[{"name":"pos","match":{"origins":["pos"]},"gateways":["a"]},{"name":"pos-eur","match":{"origins":["POS"],"currencies":["EUR"]},"gateways":["b"]}],"default":{"gateways":["a"]}}`, "rules[1]", `"pos-eur" can never match`},
		{"shadowed by catch-all", `{"rules":[{"name":"all","match":{},"gateways":["a"]},{"name":"web","match":{"origins":["web"]},"gateways":["b"]}],"default":{"gateways":["a"]}}`, "rules[1]", "can never match"},
		{"shadowed amount range", `{"rules":[{"name":"wide","match":{"min_amount":10},"gateways":["a"]},{"name":"narrow","match":{"min_amount":20,"max_amount":30},"gateways":["b"]}],"default":{"gateways":["a"]}}`, "rules[1]", "can never match"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var p routing.Policy
			if err := json.Unmarshal([]byte(c.policy), &p); err != nil {
				t.Fatal(err)
			}
			err := p.Validate(known)
			var pe *routing.PolicyError
			if !errors.As(err, &pe) || !errors.Is(err, routing.ErrInvalidPolicy) {
				t.Fatalf("Validate = %v, want a *PolicyError", err)
			}
			for _, pr := range pe.Problems {
				if pr.Field == c.field && strings.Contains(pr.Message, c.msg) {
					return
				}
			}
			t.Fatalf("problems %+v lack %s: %q", pe.Problems, c.field, c.msg)
		})
	}
}

// Overlapping rules that each can match are fine: the first match wins.
func TestValidateAllowsPartialOverlap(t *testing.T) {
	p, err := routing.ParsePolicy([]byte(`{"rules":[
		{"name":"pos-eur","match":{"origins":["pos"],"currencies":["EUR"]},"gateways":["a"]},
		{"name":"pos","match":{"origins":["pos"]},"gateways":["b"]},
		{"name":"eur","match":{"currencies":["EUR"]},"gateways":["b"]},
		{"name":"small","match":{"max_amount":1000},"gateways":["a"]},
		{"name":"mid","match":{"min_amount":500,"max_amount":5000},"gateways":["b"]}
	],"default":{"gateways":["a"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Validate(func(string) bool { return true }); err != nil {
		t.Fatal(err)
	}
}

func TestLoadPolicyInlineAndFile(t *testing.T) {
	inline, err := routing.LoadPolicy("  " + samplePolicy)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "routes.json")
	if err := os.WriteFile(path, []byte(samplePolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	fromFile, err := routing.LoadPolicy(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(inline, fromFile) {
		t.Fatal("inline and file policies differ")
	}
	if _, err := routing.LoadPolicy(filepath.Join(t.TempDir(), "missing.json")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"default":{"gateways":[]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := routing.LoadPolicy(bad); !errors.Is(err, routing.ErrInvalidPolicy) || !strings.Contains(err.Error(), bad) {
		t.Fatalf("invalid file: %v", err)
	}
	if _, err := routing.LoadPolicy(" "); err == nil {
		t.Fatal("empty value accepted")
	}
}

func TestPolicyCloneIsDeep(t *testing.T) {
	p, err := routing.ParsePolicy([]byte(samplePolicy))
	if err != nil {
		t.Fatal(err)
	}
	c := p.Clone()
	c.Rules[0].Gateways[0] = "zz"
	c.Rules[0].Match.Origins[0] = "zz"
	c.Rules[2].Weights["a"] = 1
	c.Default.Gateways[0] = "zz"
	if p.Rules[0].Gateways[0] != "b" || p.Rules[0].Match.Origins[0] != "pos" || p.Rules[2].Weights["a"] != 90 || p.Default.Gateways[0] != "c" {
		t.Fatalf("Clone shares state: %+v", p)
	}
}
