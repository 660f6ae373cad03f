package deploy_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/payrail/payrail/examples/deploy"
)

// promtool finds promtool on PATH or where .ci/setup.d/promtool.sh puts
// it. Absent, the test skips locally and fails under CI=true.
func promtool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	if p, err := filepath.Abs("../../.cache/promtool/usr/bin/promtool"); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("promtool not found (PATH, .cache/promtool): run .ci/setup.d/promtool.sh")
	}
	t.Skip("promtool not found: run .ci/setup.d/promtool.sh (or apt-get install prometheus) to test the alerting rules")
	return ""
}

// TestPrometheusRules checks the rules with promtool and runs their unit
// tests, in which every alert is shown firing and not firing.
func TestPrometheusRules(t *testing.T) {
	pt := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", "prometheus/payrail-rules.yml"},
		{"test", "rules", "prometheus/payrail-rules.test.yml"},
	} {
		out, err := exec.Command(pt, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("promtool %s: %s", strings.Join(args, " "), strings.TrimSpace(string(out)))
	}
}

// TestDashboardPromQL parses every dashboard query with Prometheus' own
// parser: promtool check rules on a rule file made of the queries, with the
// Grafana variables replaced by values.
func TestDashboardPromQL(t *testing.T) {
	pt := promtool(t)
	queries, err := deploy.DashboardQueries()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	keys := make([]string, 0, len(queries))
	for k := range queries {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	vars := strings.NewReplacer("$__rate_interval", "5m", "$job", ".*", "${datasource}", "")
	for i, k := range keys {
		q, _ := json.Marshal(vars.Replace(queries[k])) // a JSON string is a YAML double-quoted scalar
		fmt.Fprintf(&b, "      - record: dashboard:query_%d\n        expr: %s\n", i, q)
	}
	f := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(f, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(pt, "check", "rules", f).CombinedOutput()
	if err != nil {
		t.Fatalf("a dashboard query does not parse: %v\n%s\nqueries in order: %q", err, out, keys)
	}
	if !strings.Contains(string(out), fmt.Sprintf("%d rules found", len(keys))) {
		t.Errorf("promtool: %s", out)
	}
}

// promtoolTests is the part of a promtool test file (rule_files, tests)
// that TestEveryAlertTestedBothWays reads.
type promtoolTests struct {
	Tests []struct {
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			// ExpAlerts is nil when the key is missing, empty for "exp_alerts: []".
			ExpAlerts *[]map[string]any `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// TestEveryAlertTestedBothWays reads the promtool tests and requires, for
// every alert of the rules, a case where it fires and one where it does not.
func TestEveryAlertTestedBothWays(t *testing.T) {
	data, err := os.ReadFile("prometheus/payrail-rules.test.yml")
	if err != nil {
		t.Fatal(err)
	}
	var tests promtoolTests
	if err := yaml.Unmarshal(data, &tests); err != nil {
		t.Fatal(err)
	}
	rules, err := deploy.ParseRules(deploy.Rules)
	if err != nil {
		t.Fatal(err)
	}
	var alerts []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				alerts = append(alerts, r.Alert)
			}
		}
	}
	if len(alerts) < 8 {
		t.Fatalf("found %d alerts: %v", len(alerts), alerts)
	}
	firing, quiet := map[string]bool{}, map[string]bool{}
	for i, tc := range tests.Tests {
		for _, at := range tc.AlertRuleTest {
			switch {
			case at.ExpAlerts == nil:
				t.Errorf("test %d, alert %s: no exp_alerts (write exp_alerts: [] for a quiet case)", i+1, at.Alertname)
			case len(*at.ExpAlerts) == 0:
				quiet[at.Alertname] = true
			default:
				firing[at.Alertname] = true
			}
		}
	}
	for _, a := range alerts {
		if !firing[a] || !quiet[a] {
			t.Errorf("alert %s: tested firing %v, not firing %v; want both", a, firing[a], quiet[a])
		}
	}
	for a := range firing {
		if !slices.Contains(alerts, a) {
			t.Errorf("tests name alert %s, which the rules do not define", a)
		}
	}
}

// TestRunbookLinks: every alert's runbook_url names a section of
// docs/runbooks.md (GitHub's heading anchors).
func TestRunbookLinks(t *testing.T) {
	doc, err := os.ReadFile("../../docs/runbooks.md")
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	for _, m := range regexp.MustCompile(`(?m)^#{1,6} (.+)$`).FindAllStringSubmatch(string(doc), -1) {
		anchors[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(m[1]), ""), " ", "-")] = true
	}
	rules, err := deploy.ParseRules(deploy.Rules)
	if err != nil {
		t.Fatal(err)
	}
	links := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			u, err := url.Parse(r.Annotations["runbook_url"])
			if err != nil || !strings.HasSuffix(u.Path, "docs/runbooks.md") || u.Fragment == "" {
				t.Errorf("alert %s: runbook_url %q does not name a section of docs/runbooks.md", r.Alert, r.Annotations["runbook_url"])
				continue
			}
			links++
			if !anchors[u.Fragment] {
				t.Errorf("alert %s: runbook_url anchor #%s is not a heading of docs/runbooks.md (anchors: %v)", r.Alert, u.Fragment, anchors)
			}
		}
	}
	if links == 0 {
		t.Fatal("no runbook_url in the rules")
	}
	for _, m := range regexp.MustCompile(`\]\(#([^)]+)\)`).FindAllStringSubmatch(string(doc), -1) {
		if !anchors[m[1]] {
			t.Errorf("docs/runbooks.md links to #%s, which is not one of its headings", m[1])
		}
	}
}

// TestDashboard checks the Grafana dashboard: valid JSON, panels that
// Grafana can render, and a panel for every metric group the operations
// guide lists. That its metric names are emitted by the code is checked
// against a real scrape in examples/internal/e2e.
func TestDashboard(t *testing.T) {
	var d struct {
		Title      string `json:"title"`
		UID        string `json:"uid"`
		Schema     int    `json:"schemaVersion"`
		Templating struct {
			List []struct {
				Name, Type string
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID         int                       `json:"id"`
			Type       string                    `json:"type"`
			Title      string                    `json:"title"`
			Datasource json.RawMessage           `json:"datasource"`
			GridPos    *struct{ H, W, X, Y int } `json:"gridPos"`
			Targets    []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	dec := json.NewDecoder(strings.NewReader(string(deploy.Dashboard)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	if dec.More() {
		t.Fatal("trailing data after the dashboard object")
	}
	if d.Title == "" || d.UID == "" || d.Schema == 0 || len(d.Panels) == 0 {
		t.Fatalf("dashboard lacks title, uid, schemaVersion or panels")
	}
	var dsVar bool
	for _, v := range d.Templating.List {
		dsVar = dsVar || v.Type == "datasource" && v.Name == "datasource"
	}
	if !dsVar {
		t.Error("no $datasource variable: the dashboard would be tied to one Prometheus")
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: bad gridPos %+v", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Title == "" || !strings.Contains(string(p.Datasource), "${datasource}") || len(p.Targets) == 0 {
			t.Errorf("panel %d %q: needs a title, the $datasource and targets", p.ID, p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: target %q has no expression or a duplicate refId", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") || strings.Count(tg.Expr, "{") != strings.Count(tg.Expr, "}") {
				t.Errorf("panel %q %s: unbalanced expression %s", p.Title, tg.RefID, tg.Expr)
			}
		}
	}

	queries, err := deploy.DashboardQueries()
	if err != nil {
		t.Fatal(err)
	}
	all := ""
	for _, q := range queries {
		all += q + "\n"
	}
	// The guide's "Métricas clave", each as the queries that show it.
	for group, want := range map[string][]string{
		"5xx rate in the API":           {`http_server_request_duration_seconds_count{job=~"$job", http_response_status_code=~"5.."}`},
		"P50/P95 latency per endpoint":  {"histogram_quantile(0.5, sum by (le, http_request_method, http_route)", "histogram_quantile(0.95, sum by (le, http_request_method, http_route)"},
		"throughput per queue":          {"messaging_client_sent_messages_total", "messaging_client_consumed_messages_total"},
		"lag per queue":                 {"payrail_bus_backlog", "payrail_bus_delivery_lag_seconds_bucket"},
		"retries and abandons":          {`messaging_operation_type="settle"`, "messaging_operation_name"},
		"DLQ size":                      {"payrail_bus_dead_letters"},
		"errors per gateway":            {"sum by (payrail_gateway, error_type) (rate(payrail_gateway_request_duration_seconds_count"},
		"authorized/captured ratio":     {`payrail_outcome=~"authorized|captured"`, `payrail_outcome="captured"`},
		"409 rate by code":              {"payrail_http_server_problems_total", "payrail_error_code"},
		"P95 sync POST /payments (SLO)": {`payrail_payment_operation_duration_seconds_bucket{job=~"$job", payrail_operation="authorize", payrail_gateway!=""}`},
	} {
		for _, w := range want {
			if !strings.Contains(all, w) {
				t.Errorf("metric group %q: no query contains %s", group, w)
			}
		}
	}
}

// TestMetricNames checks the PromQL metric-name extraction the end-to-end
// test relies on.
func TestMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (le, http_route) (rate(http_server_request_duration_seconds_bucket{job=~"$job", http_route="/payments"}[$__rate_interval]))`: {"http_server_request_duration_seconds_bucket"},
		`a_total / on (x) group_left (y) b_total > bool 0.5 * 1e3`:                                                                           {"a_total", "b_total"},
		"payrail:x:rate5m{g=\"mock\"} > 0.3 # TUNE this\nor max without (pod) (delta(c[5m])) / 5":                                            {"c", "payrail:x:rate5m"},
		`histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m] offset 1h)))`:                                                               {"x_bucket"},
		`ALERTS{alertname=~"Payrail.*", alertstate="firing"}`:                                                                                {"ALERTS"},
		`{__name__="up", job="payrail"} == 0`:                                                                                                {"up"},
	} {
		got, err := deploy.MetricNames(expr)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("MetricNames(%s) = %v, %v; want %v", expr, got, err, want)
		}
	}
	for _, bad := range []string{`rate(x[5m]`, `sum by (le) x`, `x{job=~"$job"}[$job]`, `{ span.payrail.payment.id = "pay_1" }`} {
		if got, err := deploy.MetricNames(bad); err == nil {
			t.Errorf("MetricNames(%s) = %v, want a parse error", bad, got)
		}
	}
	exprs, recorded, err := deploy.RuleExpressions()
	if err != nil {
		t.Fatal(err)
	}
	if len(recorded) < 5 || exprs["PayrailAPIErrorRateHigh"] != "payrail:http_request_errors:ratio_rate5m > 0.02" ||
		!strings.Contains(exprs["PayrailDLQGrowing"], "payrail_bus_dead_letters") {
		t.Errorf("RuleExpressions: %d recorded, PayrailAPIErrorRateHigh %q, PayrailDLQGrowing %q",
			len(recorded), exprs["PayrailAPIErrorRateHigh"], exprs["PayrailDLQGrowing"])
	}
}
