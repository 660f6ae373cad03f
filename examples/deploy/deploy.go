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
	"sort"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
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

// RuleFile is the part of a Prometheus rule file (the format of
// prometheus/payrail-rules.yml) that the tests read.
type RuleFile struct {
	Groups []RuleGroup `yaml:"groups"`
}

// RuleGroup is one group of a rule file.
type RuleGroup struct {
	Name  string `yaml:"name"`
	Rules []Rule `yaml:"rules"`
}

// Rule is a recording rule (Record set) or an alerting rule (Alert set).
type Rule struct {
	Record      string            `yaml:"record"`
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// ParseRules decodes a Prometheus rule file with a YAML parser
// (go.yaml.in/yaml/v3). It checks only what the tests rely on: every rule
// is either a recording or an alerting rule and has an expression; promtool
// check rules validates the rest.
func ParseRules(data []byte) (*RuleFile, error) {
	var f RuleFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("deploy: rules: %w", err)
	}
	for _, g := range f.Groups {
		for i, r := range g.Rules {
			if (r.Record == "") == (r.Alert == "") || strings.TrimSpace(r.Expr) == "" {
				return nil, fmt.Errorf("deploy: rules: group %q, rule %d: want exactly one of record and alert, and an expr", g.Name, i+1)
			}
		}
	}
	return &f, nil
}

// RuleExpressions returns the expression of every recording and alerting
// rule of Rules, keyed by the recorded metric or alert name (a suffix "#n"
// tells apart rules sharing a name), and the names the recording rules
// define. Every expression must parse as PromQL.
func RuleExpressions() (exprs map[string]string, recorded []string, err error) {
	f, err := ParseRules(Rules)
	if err != nil {
		return nil, nil, err
	}
	exprs = map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			name := r.Alert
			if r.Record != "" {
				name = r.Record
				recorded = append(recorded, name)
			}
			if _, err := promQL.ParseExpr(r.Expr); err != nil {
				return nil, nil, fmt.Errorf("deploy: rule %s: %w", name, err)
			}
			k := name
			for n := 2; exprs[k] != ""; n++ {
				k = fmt.Sprintf("%s#%d", name, n)
			}
			exprs[k] = r.Expr
		}
	}
	if len(exprs) == 0 {
		return nil, nil, fmt.Errorf("deploy: no rules found")
	}
	return exprs, recorded, nil
}

// promQL is Prometheus' own PromQL parser, with its default (stable)
// language features.
var promQL = parser.NewParser(parser.Options{})

// grafanaIntervals are the interval variables Grafana replaces in a query
// before sending it to Prometheus, with a value of the same type.
var grafanaIntervals = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// MetricNames parses a PromQL expression with Prometheus' parser and
// returns the metric names it selects, sorted. Grafana's interval variables
// ($__rate_interval, $__interval, $__range) are replaced by durations
// first; other variables may appear only inside label values, such as
// job=~"$job".
func MetricNames(expr string) ([]string, error) {
	e, err := promQL.ParseExpr(grafanaIntervals.Replace(expr))
	if err != nil {
		return nil, fmt.Errorf("deploy: PromQL %q: %w", expr, err)
	}
	seen := map[string]bool{}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		if vs.Name != "" {
			seen[vs.Name] = true
			return nil
		}
		for _, m := range vs.LabelMatchers { // {__name__="x"}
			if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
				seen[m.Value] = true
			}
		}
		return nil
	})
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}
