package infra_test

import (
	"bufio"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// composeProfiles maps each MESSAGE_BUS_ADAPTER value to the compose
// profile that brings its broker up ("" for none), and the services that
// must then run besides the default ones.
var composeProfiles = map[string][]string{
	"inmemory":   nil,
	"sns-sqs":    {"localstack", "provision-sns-sqs", "worker"},
	"kafka":      {"kafka", "worker"},
	"pubsub":     {"pubsub-emulator", "provision-pubsub", "worker"},
	"servicebus": {"servicebus-emulator", "sqledge", "worker"},
}

var composeDefault = []string{"jaeger", "migrate", "otel-collector", "postgres", "prometheus", "redis", "server"}

// noHealthcheck are the services whose images have no command to check
// them with; their dependants wait for service_started and restart on
// failure.
var noHealthcheck = []string{"otel-collector", "jaeger", "servicebus-emulator", "sqledge", "migrate", "provision-sns-sqs", "provision-pubsub"}

// envExample reads .env.example: the variables it sets, and those its
// comments document as NAME=example lines.
func envExample(t *testing.T) (set, documented map[string]string) {
	t.Helper()
	set, documented = map[string]string{}, map[string]string{}
	line := regexp.MustCompile(`^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$`)
	sc := bufio.NewScanner(strings.NewReader(read(t, ".env.example")))
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if m[1] == "" {
			set[m[2]] = m[3]
		} else {
			documented[m[2]] = m[3]
		}
	}
	return set, documented
}

func loadCompose(t *testing.T, adapter string) *types.Project {
	t.Helper()
	var profiles []string
	if adapter != "inmemory" {
		profiles = []string{adapter}
	}
	opts, err := cli.NewProjectOptions([]string{path(t, "compose.yaml")},
		cli.WithWorkingDirectory(root(t)),
		// .env.example as the .env a developer copies it to.
		cli.WithEnvFiles(path(t, ".env.example")),
		cli.WithDotEnv,
		cli.WithEnv([]string{"MESSAGE_BUS_ADAPTER=" + adapter}),
		cli.WithProfiles(profiles),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := opts.LoadProject(ctx)
	if err != nil {
		t.Fatalf("compose-go: %s: %v", adapter, err)
	}
	return p
}

func TestCompose(t *testing.T) {
	for adapter, extra := range composeProfiles {
		t.Run(adapter, func(t *testing.T) {
			p := loadCompose(t, adapter)
			want := slices.Sorted(slices.Values(append(slices.Clone(composeDefault), extra...)))
			got := slices.Sorted(slices.Values(p.ServiceNames()))
			if !slices.Equal(got, want) {
				t.Errorf("services %q, want %q", got, want)
			}
			for name, s := range p.Services {
				if s.HealthCheck == nil && !slices.Contains(noHealthcheck, name) {
					t.Errorf("service %s has no healthcheck", name)
				}
				for dep, d := range s.DependsOn {
					target, active := p.Services[dep]
					if !active {
						if d.Required {
							t.Errorf("%s depends on %s, not active with this profile: mark it required: false", name, dep)
						}
						continue
					}
					switch d.Condition {
					case types.ServiceConditionHealthy:
						if target.HealthCheck == nil {
							t.Errorf("%s waits for %s to be healthy, which has no healthcheck", name, dep)
						}
					case types.ServiceConditionCompletedSuccessfully:
						if target.Restart != "no" {
							t.Errorf("%s waits for %s to complete, whose restart policy is %q", name, dep, target.Restart)
						}
					case types.ServiceConditionStarted:
						if !slices.Contains(noHealthcheck, dep) {
							t.Errorf("%s only waits for %s to start, which has a healthcheck", name, dep)
						}
					}
				}
			}
			for _, name := range []string{"server", "worker", "migrate", "provision-sns-sqs", "provision-pubsub"} {
				s, ok := p.Services[name]
				if !ok {
					continue
				}
				if !s.ReadOnly || !slices.Contains(s.CapDrop, "ALL") {
					t.Errorf("%s: payrail containers run read-only with every capability dropped", name)
				}
				env := map[string]string{}
				for k, v := range s.Environment {
					if v != nil {
						env[k] = *v
					}
					if !allowedEnv(t, k) {
						t.Errorf("%s sets %s, which no binary reads", name, k)
					}
				}
				if name == "server" || name == "worker" {
					if env["MESSAGE_BUS_ADAPTER"] != adapter {
						t.Errorf("%s: MESSAGE_BUS_ADAPTER=%q, want %q", name, env["MESSAGE_BUS_ADAPTER"], adapter)
					}
					shutdown, err := time.ParseDuration(env["SHUTDOWN_TIMEOUT"])
					if err != nil {
						t.Fatal(err)
					}
					if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) <= 3*shutdown {
						t.Errorf("%s: stop_grace_period %v must exceed 3 x SHUTDOWN_TIMEOUT %v", name, s.StopGracePeriod, shutdown)
					}
				}
				// The real loader accepts the service's environment.
				if out, err := configCheck(t, env); err != nil {
					t.Errorf("%s (%s): the configuration loader refuses it: %v\n%s", name, adapter, err, out)
				}
			}
			if w, ok := p.Services["worker"]; ok {
				served := workerPaths(t)
				for _, u := range probeURLs(w) {
					if !strings.HasSuffix(u, ":9464"+pathOf(u)) || !slices.Contains(served, pathOf(u)) {
						t.Errorf("worker healthcheck %s: the worker serves %q on METRICS_PORT 9464", u, served)
					}
				}
			}
		})
	}
}

func probeURLs(s types.ServiceConfig) []string {
	var out []string
	if s.HealthCheck == nil {
		return nil
	}
	for _, a := range s.HealthCheck.Test {
		if strings.HasPrefix(a, "http://") {
			out = append(out, a)
		}
	}
	return out
}

func pathOf(u string) string {
	rest := strings.TrimPrefix(u, "http://")
	if i := strings.Index(rest, "/"); i >= 0 {
		return rest[i:]
	}
	return "/"
}

// composeProbePaths are the paths the healthcheck of a service GETs (the
// server's are checked against the running binary in TestServerProbePaths).
func composeProbePaths(t *testing.T, service string) []string {
	t.Helper()
	var out []string
	for _, u := range probeURLs(loadCompose(t, "inmemory").Services[service]) {
		out = append(out, pathOf(u))
	}
	if len(out) == 0 {
		t.Fatalf("compose: %s has no HTTP healthcheck", service)
	}
	return out
}

// TestComposeMatchesEnvExample: every ${VAR} compose.yaml interpolates is
// a variable of .env.example (set or documented in a comment), so that
// `cp .env.example .env` configures the stack; and every env file of
// infra/compose/env sets only variables a binary reads.
func TestComposeMatchesEnvExample(t *testing.T) {
	set, documented := envExample(t)
	for _, m := range regexp.MustCompile(`\$\{([A-Z][A-Z0-9_]*)`).FindAllStringSubmatch(read(t, "compose.yaml"), -1) {
		if _, ok := set[m[1]]; ok {
			continue
		}
		if _, ok := documented[m[1]]; !ok {
			t.Errorf("compose.yaml interpolates ${%s}, which .env.example neither sets nor documents", m[1])
		}
	}
	for k := range set {
		if !allowedEnv(t, k) {
			t.Errorf(".env.example sets %s, which no binary reads", k)
		}
	}
	for _, k := range loaderVars(t) {
		if _, ok := set[k]; !ok {
			t.Errorf(".env.example lacks %s, read by examples/internal/config", k)
		}
	}
	for adapter := range composeProfiles {
		env := map[string]string{}
		sc := bufio.NewScanner(strings.NewReader(read(t, fmt.Sprintf("infra/compose/env/%s.env", adapter))))
		for sc.Scan() {
			l := sc.Text()
			if l == "" || strings.HasPrefix(l, "#") {
				continue
			}
			k, v, _ := strings.Cut(l, "=")
			env[k] = v
			if !allowedEnv(t, k) {
				t.Errorf("infra/compose/env/%s.env sets %s, which no binary reads", adapter, k)
			}
		}
		if env["MESSAGE_BUS_ADAPTER"] != adapter {
			t.Errorf("infra/compose/env/%s.env: MESSAGE_BUS_ADAPTER=%q", adapter, env["MESSAGE_BUS_ADAPTER"])
		}
	}
}
