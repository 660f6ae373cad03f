package infra_test

import (
	"flag"
	"os"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "regenerate infra/k8s/base/prometheusrule.yaml from examples/deploy/prometheus/payrail-rules.yml")

const rulesFile = "examples/deploy/prometheus/payrail-rules.yml"
const ruleManifest = "infra/k8s/base/prometheusrule.yaml"

// prometheusRuleYAML wraps the rules file, the one promtool tests, in a
// PrometheusRule: its groups become the spec, indented, comments kept.
func prometheusRuleYAML(rules string) string {
	var b strings.Builder
	b.WriteString("# GENERATED from " + rulesFile + " by `go test ./infra/ -update`; do not edit.\n")
	b.WriteString("# The Prometheus Operator loads these recording and alerting rules (the same\n")
	b.WriteString("# file compose.yaml mounts into Prometheus and promtool tests).\n")
	b.WriteString("apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: payrail-rules\nspec:\n")
	for _, l := range strings.Split(strings.TrimRight(rules, "\n"), "\n") {
		if strings.TrimSpace(l) == "" {
			b.WriteString("\n")
			continue
		}
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

func TestPrometheusRuleGenerated(t *testing.T) {
	want := prometheusRuleYAML(read(t, rulesFile))
	if *update {
		if err := os.WriteFile(path(t, ruleManifest), []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := read(t, ruleManifest); got != want {
		t.Fatalf("%s is not the generation of %s: run go test ./infra/ -update", ruleManifest, rulesFile)
	}
	// The same rules, decoded: the file's groups and the object's spec.
	var file ruleGroups
	decodeStrict(t, rulesFile, []byte(read(t, rulesFile)), &file)
	if len(file.Groups) == 0 {
		t.Fatal("no rule groups")
	}
	for _, o := range overlays {
		b := build(t, o)
		if len(b.rules) != 1 || !reflect.DeepEqual(b.rules[0].Spec, file) {
			t.Errorf("%s: the PrometheusRule's spec differs from %s", o, rulesFile)
		}
	}
}
