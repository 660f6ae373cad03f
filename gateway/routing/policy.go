package routing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/payrail/payrail/payments"
)

// Policy is a declarative, JSON-serialisable routing policy: ordered rules
// that match payments by origin, currency, merchant and amount, each with a
// route (an ordered chain of gateway names, optionally split by weight),
// and a default route for the payments no rule matches.
//
// Rules are evaluated in order and the first match wins, so rules may
// overlap (put the narrow rule first). A rule that can never match because
// an earlier rule matches everything it does is refused, as are unknown
// gateway names, empty chains and bad weights: a policy is accepted whole
// or not at all. See docs/routing.md for the format.
type Policy struct {
	// Rules are tried in order; the first that matches routes the payment.
	Rules []Rule `json:"rules,omitempty"`
	// Default routes the payments no rule matches. It is required.
	Default Route `json:"default"`
}

// Rule routes the payments its Match matches.
type Rule struct {
	// Name identifies the rule in logs and errors: 1-64 letters, digits,
	// '.', '_' or '-', unique within the policy.
	Name string `json:"name"`
	// Match selects payments; an empty Match matches every payment.
	Match Match `json:"match"`
	// Route is where matching payments go (its fields appear at the rule's
	// top level in JSON).
	Route
}

// Match selects payments. Every condition given must hold; an empty list
// or a zero bound means "any".
type Match struct {
	// Origins are the channels (web, pos, partner-x...), compared without
	// regard to case: the operations guide's gatewaySelector by origin. A
	// payment without an origin matches only rules without Origins.
	Origins []string `json:"origins,omitempty"`
	// Currencies are ISO 4217 codes (normalised to upper case).
	Currencies []string `json:"currencies,omitempty"`
	// Merchants are merchant identifiers, compared exactly.
	Merchants []string `json:"merchants,omitempty"`
	// MinAmount and MaxAmount bound the amount, inclusive, in minor units of
	// the payment's currency (so amount bounds usually go with Currencies).
	// MaxAmount zero means no upper bound.
	MinAmount int64 `json:"min_amount,omitempty"`
	MaxAmount int64 `json:"max_amount,omitempty"`
}

// Route is an ordered chain of gateways for a payment.
type Route struct {
	// Gateways are gateway names, most preferred first. The processor
	// cascades to the next one only when an attempt definitely did not
	// process (or, with RetrySoftDeclines, after a soft decline).
	Gateways []string `json:"gateways"`
	// Weights optionally split traffic: a payment's first gateway is drawn
	// among the gateways with a positive weight, in proportion to it,
	// deterministically from the payment id (every attempt of a payment
	// routes the same way); the other gateways follow in Gateways order.
	// Gateways without a weight are fallbacks only.
	Weights map[string]int `json:"weights,omitempty"`
	// RetrySoftDeclines allows a soft decline (try_again_later,
	// issuer_not_available...) to be retried on the next gateway of the
	// chain. Hard declines are never retried elsewhere.
	RetrySoftDeclines bool `json:"retry_soft_declines,omitempty"`
}

// maxWeight bounds a single weight, so that sums never overflow.
const maxWeight = 1_000_000

// maxChain bounds the gateways of a chain.
const maxChain = 32

// Problem is one reason a policy was refused.
type Problem struct {
	// Field is the JSON path of the offending value, e.g. "rules[1].gateways[0]".
	Field string `json:"field"`
	// Message explains the problem.
	Message string `json:"message"`
}

// PolicyError is returned for a policy that is refused; it lists every
// problem found. Test for it with errors.As.
type PolicyError struct {
	Problems []Problem
}

// Error lists the problems.
func (e *PolicyError) Error() string {
	var b strings.Builder
	b.WriteString("routing: invalid policy: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		if p.Field != "" {
			b.WriteString(p.Field)
			b.WriteString(": ")
		}
		b.WriteString(p.Message)
	}
	return b.String()
}

// ErrInvalidPolicy matches every *PolicyError with errors.Is.
var ErrInvalidPolicy = errors.New("routing: invalid policy")

// Is makes errors.Is(err, ErrInvalidPolicy) true for a *PolicyError.
func (e *PolicyError) Is(target error) bool { return target == ErrInvalidPolicy }

// Clone returns a deep copy of p.
func (p Policy) Clone() Policy {
	c := Policy{Default: p.Default.clone()}
	if p.Rules != nil {
		c.Rules = make([]Rule, len(p.Rules))
		for i, r := range p.Rules {
			c.Rules[i] = Rule{Name: r.Name, Match: r.Match.clone(), Route: r.Route.clone()}
		}
	}
	return c
}

func (r Route) clone() Route {
	r.Gateways = slices.Clone(r.Gateways)
	r.Weights = maps.Clone(r.Weights)
	return r
}

func (m Match) clone() Match {
	m.Origins = slices.Clone(m.Origins)
	m.Currencies = slices.Clone(m.Currencies)
	m.Merchants = slices.Clone(m.Merchants)
	return m
}

// Validate checks p against the gateways a router knows (known reports
// whether a gateway name exists; nil skips that check) and returns a
// *PolicyError listing every problem, or nil.
func (p Policy) Validate(known func(name string) bool) error {
	_, err := p.normalize(known)
	return err
}

// normalize validates p and returns a normalised deep copy: currencies in
// upper case.
func (p Policy) normalize(known func(string) bool) (Policy, error) {
	n := p.Clone()
	var probs []Problem
	add := func(field, format string, args ...any) {
		probs = append(probs, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	checkRoute := func(prefix string, r *Route) {
		if len(r.Gateways) == 0 {
			add(prefix+"gateways", "at least one gateway is required")
		}
		if len(r.Gateways) > maxChain {
			add(prefix+"gateways", "at most %d gateways per chain", maxChain)
		}
		seen := map[string]bool{}
		for i, g := range r.Gateways {
			f := fmt.Sprintf("%sgateways[%d]", prefix, i)
			switch {
			case g == "":
				add(f, "gateway name is empty")
			case seen[g]:
				add(f, "gateway %q is listed twice", g)
			case known != nil && !known(g):
				add(f, "unknown gateway %q", g)
			}
			seen[g] = true
		}
		if r.Weights == nil {
			return
		}
		total := 0
		for _, g := range slices.Sorted(maps.Keys(r.Weights)) {
			w := r.Weights[g]
			f := prefix + "weights." + g
			switch {
			case !seen[g]:
				add(f, "weighted gateway %q is not in gateways", g)
			case w < 0 || w > maxWeight:
				add(f, "weight %d must be between 0 and %d", w, maxWeight)
			default:
				total += w
			}
		}
		if total == 0 {
			add(prefix+"weights", "weights must give at least one gateway a positive weight")
		}
	}
	checkRoute("default.", &n.Default)
	names := map[string]int{}
	for i := range n.Rules {
		r := &n.Rules[i]
		prefix := fmt.Sprintf("rules[%d].", i)
		switch {
		case !validName(r.Name):
			add(prefix+"name", "rule name must be 1-64 letters, digits, '.', '_' or '-'")
		case names[r.Name] > 0:
			add(prefix+"name", "rule name %q is used by rules[%d] too", r.Name, names[r.Name]-1)
		default:
			names[r.Name] = i + 1
		}
		m := &r.Match
		checkList(prefix+"match.origins", m.Origins, add, func(s string) string {
			if !validName(s) {
				return "origin must be 1-64 letters, digits, '.', '_' or '-'"
			}
			return ""
		}, strings.ToLower)
		checkList(prefix+"match.merchants", m.Merchants, add, func(s string) string {
			if !validName(s) {
				return "merchant must be 1-64 letters, digits, '.', '_' or '-'"
			}
			return ""
		}, nil)
		for j, c := range m.Currencies {
			m.Currencies[j] = strings.ToUpper(c)
		}
		checkList(prefix+"match.currencies", m.Currencies, add, func(s string) string {
			if _, ok := payments.LookupCurrency(s); !ok {
				return fmt.Sprintf("%q is not a supported ISO 4217 currency", s)
			}
			return ""
		}, nil)
		if m.MinAmount < 0 {
			add(prefix+"match.min_amount", "must not be negative")
		}
		if m.MaxAmount < 0 {
			add(prefix+"match.max_amount", "must not be negative (0 means no upper bound)")
		}
		if m.MaxAmount > 0 && m.MinAmount > m.MaxAmount {
			add(prefix+"match.max_amount", "max_amount %d is below min_amount %d", m.MaxAmount, m.MinAmount)
		}
		checkRoute(prefix, &r.Route)
	}
	if len(probs) == 0 {
		// Only well-formed rules are compared for reachability.
		for j := range n.Rules {
			for i := range j {
				if n.Rules[i].Match.covers(&n.Rules[j].Match) {
					add(fmt.Sprintf("rules[%d]", j), "rule %q can never match: rule %q above it matches every payment it does",
						n.Rules[j].Name, n.Rules[i].Name)
					break
				}
			}
		}
	}
	if len(probs) > 0 {
		return Policy{}, &PolicyError{Problems: probs}
	}
	return n, nil
}

// checkList reports empty, invalid and duplicate entries; fold, if not nil,
// makes duplicates case-insensitive.
func checkList(field string, list []string, add func(string, string, ...any), check func(string) string, fold func(string) string) {
	seen := map[string]bool{}
	for i, s := range list {
		f := fmt.Sprintf("%s[%d]", field, i)
		if msg := check(s); msg != "" {
			add(f, "%s", msg)
			continue
		}
		k := s
		if fold != nil {
			k = fold(s)
		}
		if seen[k] {
			add(f, "%q is listed twice", s)
		}
		seen[k] = true
	}
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// covers reports whether m matches every payment o matches.
func (m *Match) covers(o *Match) bool {
	return coversSet(m.Origins, o.Origins, strings.EqualFold) &&
		coversSet(m.Currencies, o.Currencies, func(a, b string) bool { return a == b }) &&
		coversSet(m.Merchants, o.Merchants, func(a, b string) bool { return a == b }) &&
		m.MinAmount <= o.MinAmount &&
		(m.MaxAmount == 0 || (o.MaxAmount != 0 && o.MaxAmount <= m.MaxAmount))
}

// coversSet: an empty set is "any"; otherwise every element of o must be in m.
func coversSet(m, o []string, eq func(a, b string) bool) bool {
	if len(m) == 0 {
		return true
	}
	if len(o) == 0 {
		return false
	}
	for _, x := range o {
		if !slices.ContainsFunc(m, func(y string) bool { return eq(x, y) }) {
			return false
		}
	}
	return true
}

// ParsePolicy decodes a JSON policy, refusing unknown fields and trailing
// data. It does not check gateway names: Router.SetPolicy does.
func ParsePolicy(data []byte) (Policy, error) {
	p, err := decodePolicy(data)
	if err != nil {
		return Policy{}, err
	}
	if err := p.Validate(nil); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// decodePolicy decodes strictly, without validating.
func decodePolicy(data []byte) (Policy, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var p Policy
	if err := dec.Decode(&p); err != nil {
		return Policy{}, fmt.Errorf("routing: malformed policy JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Policy{}, errors.New("routing: malformed policy JSON: unexpected data after the policy object")
	}
	return p, nil
}

// LoadPolicy reads a policy from value, the GATEWAY_ROUTES format: inline
// JSON (value starts with '{') or the path of a JSON file.
func LoadPolicy(value string) (Policy, error) {
	v := strings.TrimSpace(value)
	if v == "" {
		return Policy{}, errors.New("routing: empty policy: want inline JSON or the path of a JSON file")
	}
	if strings.HasPrefix(v, "{") {
		return ParsePolicy([]byte(v))
	}
	data, err := os.ReadFile(v)
	if err != nil {
		return Policy{}, fmt.Errorf("routing: reading policy file: %w", err)
	}
	p, err := ParsePolicy(data)
	if err != nil {
		return Policy{}, fmt.Errorf("%s: %w", v, err)
	}
	return p, nil
}

// DefaultPolicy routes every payment to the named gateways, in order.
func DefaultPolicy(gateways ...string) Policy {
	return Policy{Default: Route{Gateways: slices.Clone(gateways)}}
}
