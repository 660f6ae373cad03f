// Package deploy holds payrail's monitoring artifacts, embedded so that
// tests can check them against what the code really emits:
//
//   - prometheus/payrail-rules.yml: recording rules for the SLIs and the
//     alerting rules of the operations guide (5xx rate, queue lag, DLQ
//     growth, P95 latency of POST /payments, a multi-window multi-burn-rate
//     alert for 99.9% monthly availability, async success without DLQ),
//     with promtool unit tests in prometheus/payrail-rules.test.yml;
//   - grafana/payrail-dashboard.json: a Grafana dashboard of every metric
//     group the guide lists.
//
// Load the rules in Prometheus and import the dashboard in Grafana (choose
// the Prometheus data source when asked). Runbooks: docs/runbooks.md.
package deploy

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Rules is prometheus/payrail-rules.yml.
//
//go:embed prometheus/payrail-rules.yml
var Rules []byte

// Dashboard is grafana/payrail-dashboard.json.
//
//go:embed grafana/payrail-dashboard.json
var Dashboard []byte

// DashboardQueries returns every PromQL expression of the dashboard (panel
// targets and annotations), keyed by "panel title/refId".
func DashboardQueries() (map[string]string, error) {
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Annotations struct {
			List []struct {
				Name string `json:"name"`
				Expr string `json:"expr"`
			} `json:"list"`
		} `json:"annotations"`
	}
	if err := json.Unmarshal(Dashboard, &d); err != nil {
		return nil, fmt.Errorf("deploy: dashboard: %w", err)
	}
	out := map[string]string{}
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			out[p.Title+"/"+t.RefID] = t.Expr
		}
	}
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			out["annotation "+a.Name] = a.Expr
		}
	}
	return out, nil
}

// RuleExpressions returns the expression of every recording and alerting
// rule, keyed by the recorded metric or alert name (a suffix "#n" tells
// apart rules sharing a name), and the names the recording rules define.
// It reads the file's own layout (one "- record:" or "- alert:" line, then
// an "expr:" either inline or as a "|" block), which the rule tests keep
// valid for Prometheus.
func RuleExpressions() (exprs map[string]string, recorded []string, err error) {
	exprs = map[string]string{}
	lines := strings.Split(string(Rules), "\n")
	name := ""
	for i := 0; i < len(lines); i++ {
		t := strings.TrimSpace(lines[i])
		switch {
		case strings.HasPrefix(t, "- record:"):
			name = strings.TrimSpace(strings.TrimPrefix(t, "- record:"))
			recorded = append(recorded, name)
		case strings.HasPrefix(t, "- alert:"):
			name = strings.TrimSpace(strings.TrimPrefix(t, "- alert:"))
		case strings.HasPrefix(t, "expr:"):
			if name == "" {
				return nil, nil, fmt.Errorf("deploy: rules line %d: expr outside a rule", i+1)
			}
			e := strings.TrimSpace(strings.TrimPrefix(t, "expr:"))
			if e == "|" || e == ">" {
				// A block scalar: the lines indented deeper than "expr:".
				keyIndent := strings.Index(lines[i], "expr:")
				var b strings.Builder
				for i+1 < len(lines) {
					l := lines[i+1]
					if strings.TrimSpace(l) != "" && len(l)-len(strings.TrimLeft(l, " ")) <= keyIndent {
						break
					}
					b.WriteString(l)
					b.WriteByte('\n')
					i++
				}
				e = b.String()
			}
			k := name
			for n := 2; exprs[k] != ""; n++ {
				k = fmt.Sprintf("%s#%d", name, n)
			}
			exprs[k] = e
			name = ""
		}
	}
	if len(exprs) == 0 {
		return nil, nil, fmt.Errorf("deploy: no rules found")
	}
	return exprs, recorded, nil
}

var (
	stringLit  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'` + "|`[^`]*`")
	comment    = regexp.MustCompile(`#[^\n]*`)
	matchers   = regexp.MustCompile(`\{[^{}]*\}`)
	ranges     = regexp.MustCompile(`\[[^\[\]]*\]`)
	labelLists = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	identifier = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	keywords   = map[string]bool{
		"and": true, "or": true, "unless": true, "by": true, "without": true, "on": true, "ignoring": true,
		"group_left": true, "group_right": true, "bool": true, "offset": true, "atan2": true, "inf": true, "nan": true,
	}
)

// MetricNames returns the metric names a PromQL expression selects, sorted:
// every identifier that is not a function, keyword, label name or literal.
func MetricNames(expr string) []string {
	e := stringLit.ReplaceAllString(expr, `""`)
	e = comment.ReplaceAllString(e, "")
	for prev := ""; prev != e; {
		prev = e
		e = matchers.ReplaceAllString(e, " ")
		e = ranges.ReplaceAllString(e, " ")
	}
	e = labelLists.ReplaceAllString(e, " ")
	seen := map[string]bool{}
	for _, loc := range identifier.FindAllStringIndex(e, -1) {
		id := e[loc[0]:loc[1]]
		if loc[0] > 0 && (e[loc[0]-1] == '$' || e[loc[0]-1] == '.' || e[loc[0]-1] >= '0' && e[loc[0]-1] <= '9') {
			continue // a variable, or the exponent/suffix of a number (1e3, 0.5)
		}
		if keywords[strings.ToLower(id)] || strings.HasPrefix(strings.TrimLeft(e[loc[1]:], " \t\n"), "(") {
			continue
		}
		seen[id] = true
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
