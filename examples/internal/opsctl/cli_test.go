package opsctl_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/payrail/payrail/examples/internal/config"
	"github.com/payrail/payrail/examples/internal/opsctl"
	"github.com/payrail/payrail/idempotency"
	idempostgres "github.com/payrail/payrail/idempotency/postgres"
	"github.com/payrail/payrail/internal/testkit"
)

// commands returns every command of the tree that a person can run (not
// the hidden __complete ones), the root first.
func commands(root *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{root}
	for _, c := range root.Commands() {
		if c.Hidden {
			continue
		}
		out = append(out, commands(c)...)
	}
	return out
}

// pathArgs is the command's path without the program name.
func pathArgs(c *cobra.Command) []string {
	return strings.Fields(c.CommandPath())[1:]
}

// TestCommandTree checks that every command documents itself (Short, Long,
// Example) and that --help and `help CMD` print its help on stdout, exit
// 0, without a configuration.
func TestCommandTree(t *testing.T) {
	root := opsctl.CommandTree(opsctl.Env{})
	all := commands(root)
	if len(all) < 15 {
		t.Fatalf("only %d commands in the tree", len(all))
	}
	broken := func() (*config.Config, error) { return nil, errors.New("PORT: not a number") }
	for _, c := range all {
		name := c.CommandPath()
		if c.Short == "" || c.Long == "" || c.Example == "" {
			t.Errorf("%s: Short %q, Long %d bytes, Example %d bytes: every command documents all three", name, c.Short, len(c.Long), len(c.Example))
		}
		for _, args := range [][]string{append(pathArgs(c), "--help"), append(pathArgs(c), "-h"), append([]string{"help"}, pathArgs(c)...)} {
			var out, errOut bytes.Buffer
			code := opsctl.Run(context.Background(), opsctl.Env{LoadConfig: broken, Stdout: &out, Stderr: &errOut}, args)
			if code != opsctl.ExitOK || errOut.Len() > 0 {
				t.Errorf("opsctl %s: exit %d, stderr %q", strings.Join(args, " "), code, &errOut)
			}
			if !strings.Contains(out.String(), "Usage:") || !strings.Contains(out.String(), strings.TrimSpace(c.Long[:min(40, len(c.Long))])) {
				t.Errorf("opsctl %s: not the help of %s:\n%s", strings.Join(args, " "), name, &out)
			}
		}
		// Flags are named alike across commands.
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if want, ok := sharedFlags[f.Name]; ok && f.Value.Type() != want {
				t.Errorf("%s --%s is a %s; everywhere else a %s", name, f.Name, f.Value.Type(), want)
			}
			if f.Usage == "" {
				t.Errorf("%s --%s has no description", name, f.Name)
			}
		})
	}
	var out, errOut bytes.Buffer
	if code := opsctl.Run(context.Background(), opsctl.Env{Stdout: &out, Stderr: &errOut}, []string{"help", "keys", "frob"}); code != opsctl.ExitUsage {
		t.Errorf("help on an unknown topic: exit %d, want %d", code, opsctl.ExitUsage)
	}
}

// sharedFlags are the flags several commands have, with their one type.
var sharedFlags = map[string]string{
	"apply": "bool", "dry-run": "bool", "output": "json|table", "json": "bool", "merchant": "string",
	"limit": "int", "body": "bool", "force": "bool", "timeout": "duration", "max-attempts": "int", "ack-deadline": "duration",
}

// TestCompletion prints every shell's script and completes commands and
// flag values through the hidden __complete command the scripts call.
func TestCompletion(t *testing.T) {
	mem := map[string]string{}
	for shell, marker := range map[string]string{
		"bash": "__start_opsctl", "zsh": "#compdef opsctl", "fish": "complete -c opsctl", "powershell": "Register-ArgumentCompleter",
	} {
		code, out, errOut := run(t, mem, "completion", shell)
		if code != opsctl.ExitOK || !strings.Contains(out, marker) || errOut != "" {
			t.Errorf("completion %s: exit %d, %d bytes without %q; stderr %q", shell, code, len(out), marker, errOut)
		}
	}
	if code, _, errOut := run(t, mem, "completion", "tcsh"); code != opsctl.ExitUsage || !strings.Contains(errOut, "tcsh") {
		t.Errorf("completion tcsh: exit %d %q; want a usage error", code, errOut)
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", ""}, []string{"keys", "bus", "db", "config", "probe", "completion"}},
		{[]string{"__complete", "bus", "dlq", ""}, []string{"ls", "redrive"}},
		{[]string{"__complete", "keys", "ls", "--state", ""}, []string{"in_progress", "completed"}},
		{[]string{"__complete", "keys", "purge", "-o", ""}, []string{"json", "table"}},
		{[]string{"__complete", "keys", "release", "--"}, []string{"--apply", "--dry-run", "--force", "--merchant", "--output"}},
		{[]string{"__complete", "completion", ""}, []string{"bash", "zsh", "fish", "powershell"}},
	} {
		code, out, _ := run(t, mem, c.args...)
		if code != opsctl.ExitOK {
			t.Errorf("%q: exit %d", c.args, code)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%q completes without %q:\n%s", c.args, w, out)
			}
		}
	}
}

// TestExitStatuses covers the documented statuses the other tests do not:
// a configuration error is 2 (and help still works), contradicting flags
// and bad values are 2, and a migration that applied one schema and failed
// on the other is 3.
func TestExitStatuses(t *testing.T) {
	broken := func() (*config.Config, error) {
		return nil, errors.New("PORT: not a number; METRICS_PORT: not a number")
	}
	var out, errOut bytes.Buffer
	code := opsctl.Run(context.Background(), opsctl.Env{LoadConfig: broken, Stdout: &out, Stderr: &errOut}, []string{"config", "check"})
	if code != opsctl.ExitUsage || !strings.Contains(errOut.String(), "PORT: not a number; METRICS_PORT") {
		t.Errorf("config check with a broken configuration: exit %d, stderr %q", code, &errOut)
	}
	out.Reset()
	errOut.Reset()
	// probe needs no configuration.
	code = opsctl.Run(context.Background(), opsctl.Env{LoadConfig: broken, Stdout: &out, Stderr: &errOut}, []string{"probe", "ftp://x/"})
	if code != opsctl.ExitUsage || !strings.Contains(errOut.String(), "http://") {
		t.Errorf("probe with a broken configuration: exit %d %q; want its own usage error", code, &errOut)
	}

	mem := map[string]string{}
	for _, c := range []struct {
		args []string
		sub  string
	}{
		{[]string{"keys", "purge", "--apply", "--dry-run"}, "contradicts"},
		{[]string{"db", "migrate", "-o", "yaml"}, "want json or table"},
		{[]string{"keys", "ls", "--limit", "many"}, "invalid argument"},
		{[]string{"kyes", "ls"}, "did you mean keys"},
		{[]string{"bus", "stats", "--apply"}, "unknown flag"},
		{[]string{"bus", "provision", "--fifo"}, "does not apply"},
		{[]string{"bus", "provision", "--dead-letter-topic", "x"}, "in-memory"},
	} {
		code, out, errOut := run(t, mem, c.args...)
		if code != opsctl.ExitUsage || !strings.Contains(errOut, c.sub) || !strings.Contains(errOut, "--help' for usage") {
			t.Errorf("%q: exit %d, stderr %q; want %d with %q", c.args, code, errOut, opsctl.ExitUsage, c.sub)
		}
		if out != "" {
			t.Errorf("%q: a usage error printed on stdout: %q", c.args, out)
		}
	}

	// Partial: IDEMPOTENCY_URL's schema applies, PAYMENTS_STORE_URL's database does not exist.
	idemURL := pgURL(t, "opsctl_idem_", nil)
	missing, err := url.Parse(idemURL)
	if err != nil {
		t.Fatal(err)
	}
	missing.Path = "/opsctl_no_such_db"
	payURL := missing.String()
	env := map[string]string{"IDEMPOTENCY_URL": idemURL, "PAYMENTS_STORE_URL": payURL}
	code, outS, errS := run(t, env, "db", "migrate", "--apply", "-o", "json")
	if code != opsctl.ExitPartial || !strings.Contains(errS, "PAYMENTS_STORE_URL") {
		t.Fatalf("half-failed migration: exit %d, stderr %q; want %d", code, errS, opsctl.ExitPartial)
	}
	var rep struct {
		DryRun  bool `json:"dry_run"`
		Targets []struct {
			Variable, Action, Error string
		} `json:"targets"`
	}
	if err := json.Unmarshal([]byte(outS), &rep); err != nil || rep.DryRun || len(rep.Targets) != 2 ||
		rep.Targets[0].Action != "applied" || rep.Targets[1].Action != "failed" || rep.Targets[1].Error == "" {
		t.Errorf("half-failed migration report %+v (%v):\n%s", rep, err, outS)
	}
	s, err := idempotency.Open(context.Background(), idemURL)
	if err != nil {
		t.Fatalf("the applied half is not there: %v", err)
	}
	_ = s.Close()
	// All failed: 1.
	env["IDEMPOTENCY_URL"] = payURL
	env["PAYMENTS_STORE_URL"] = "memory://"
	if code, _, errS := run(t, env, "db", "migrate", "--apply"); code != opsctl.ExitFailed {
		t.Errorf("failed migration: exit %d %q; want %d", code, errS, opsctl.ExitFailed)
	}
}

// columnsAligned fails unless every line of a table starts each column at
// the header's column.
func columnsAligned(t *testing.T, what, out string, rows int) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != rows+1 {
		t.Fatalf("%s: %d lines, want a header and %d rows:\n%s", what, len(lines), rows, out)
	}
	var starts []int
	for i, r := range lines[0] {
		if r != ' ' && (i == 0 || lines[0][i-1] == ' ') {
			starts = append(starts, i)
		}
	}
	for _, l := range lines[1:] {
		for _, s := range starts {
			if s >= len(l) || l[s] == ' ' || (s > 0 && l[s-1] != ' ') {
				t.Errorf("%s: column at %d not aligned in %q (header %q)", what, s, l, lines[0])
			}
		}
	}
}

// TestOutputFormats runs the keys and db commands with -o table and -o
// json against PostgreSQL: the tables are aligned, the JSON parses into
// the documented fields.
func TestOutputFormats(t *testing.T) {
	u := pgURL(t, "opsctl_idem_", idempostgres.Migrate)
	env := map[string]string{"IDEMPOTENCY_URL": u}
	s, err := idempotency.Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := testkit.StoreUniqueName("fmt-")
	fixture(t, s, m)

	code, out, _ := run(t, env, "keys", "ls", "--merchant", m)
	want(t, "ls", code, 0, out)
	columnsAligned(t, "keys ls", out, 4)
	for _, o := range [][]string{{"-o", "json"}, {"--output=json"}, {"--json"}} {
		code, out, _ = run(t, env, append([]string{"keys", "ls", "--merchant", m}, o...)...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(lines) != 4 {
			t.Fatalf("keys ls %v: exit %d, %d lines", o, code, len(lines))
		}
		for _, l := range lines {
			var v struct {
				Merchant, Key, State string
				ExpiresAt            time.Time `json:"expires_at"`
			}
			if err := json.Unmarshal([]byte(l), &v); err != nil || v.Merchant != m || v.Key == "" || v.State == "" || v.ExpiresAt.IsZero() {
				t.Errorf("keys ls %v line %q: %+v %v", o, l, v, err)
			}
		}
	}
	if code, out, _ = run(t, env, "keys", "ls", "--merchant", m, "--json=false"); code != 0 || !strings.HasPrefix(out, "MERCHANT") {
		t.Errorf("--json=false: exit %d, %q; want the table", code, out)
	}

	code, out, _ = run(t, env, "keys", "show", "--merchant", m, "live", "-o", "json")
	var show struct {
		Key       string `json:"key"`
		Status    int    `json:"status"`
		BodyBytes *int   `json:"body_bytes"`
		Body      *string
	}
	if err := json.Unmarshal([]byte(out), &show); code != 0 || err != nil || show.Key != "live" || show.Status != 201 || show.BodyBytes == nil || show.Body != nil {
		t.Errorf("keys show -o json: exit %d %+v %v:\n%s", code, show, err, out)
	}

	var purge struct {
		DryRun  bool `json:"dry_run"`
		Expired int  `json:"expired"`
		Deleted int  `json:"deleted"`
		Items   []struct{ Key, Action string }
	}
	code, out, _ = run(t, env, "keys", "purge", "--merchant", m, "-o", "json")
	if err := json.Unmarshal([]byte(out), &purge); code != 0 || err != nil || !purge.DryRun || purge.Expired != 1 || purge.Deleted != 0 ||
		len(purge.Items) != 1 || purge.Items[0].Key != "old" || purge.Items[0].Action != "would delete" {
		t.Errorf("keys purge -o json: exit %d %+v %v:\n%s", code, purge, err, out)
	}
	code, out, _ = run(t, env, "keys", "purge", "--merchant", m)
	want(t, "purge table", code, 0, out, "dry run")
	columnsAligned(t, "keys purge", strings.Split(out, "--")[0], 1)

	var rel struct {
		DryRun     bool   `json:"dry_run"`
		Key        string `json:"key"`
		ResourceID string `json:"resource_id"`
		Action     string `json:"action"`
	}
	code, out, _ = run(t, env, "keys", "release", "--merchant", m, "crashed", "-o", "json")
	if err := json.Unmarshal([]byte(out), &rel); code != 0 || err != nil || !rel.DryRun || rel.Key != "crashed" || rel.ResourceID != "pay_crashed" || rel.Action != "would release" {
		t.Errorf("keys release -o json: exit %d %+v %v:\n%s", code, rel, err, out)
	}

	env["PAYMENTS_STORE_URL"] = pgURL(t, "opsctl_pay_", nil)
	var mig struct {
		DryRun  bool `json:"dry_run"`
		Targets []struct{ Variable, URL, Action, SQL string }
	}
	code, out, _ = run(t, env, "db", "migrate", "-o", "json")
	if err := json.Unmarshal([]byte(out), &mig); code != 0 || err != nil || !mig.DryRun || len(mig.Targets) != 2 ||
		mig.Targets[1].Variable != "PAYMENTS_STORE_URL" || !strings.Contains(mig.Targets[1].SQL, "CREATE TABLE") {
		t.Errorf("db migrate -o json: exit %d %+v %v:\n%s", code, mig, err, out)
	}

	code, out, _ = run(t, map[string]string{"MESSAGE_BUS_ADAPTER": "kafka", "KAFKA_BROKERS": "k1:9092", "IDEMPOTENCY_URL": "redis://:s3cret@r:6379/0"}, "config", "check", "-o", "json")
	var cc struct {
		OK              bool           `json:"ok"`
		Config          map[string]any `json:"config"`
		BusSubscription string         `json:"bus_subscription"`
	}
	if err := json.Unmarshal([]byte(out), &cc); code != 0 || err != nil || !cc.OK || cc.Config["message_bus_adapter"] != "kafka" ||
		!strings.HasPrefix(cc.BusSubscription, "kafka://k1:9092/") || strings.Contains(out, "s3cret") {
		t.Errorf("config check -o json: exit %d %+v %v:\n%s", code, cc, err, out)
	}
}

// TestDryRunDefault: the commands that change something change nothing
// without --apply; --dry-run=false is --apply.
func TestDryRunDefault(t *testing.T) {
	u := pgURL(t, "opsctl_idem_", idempostgres.Migrate)
	env := map[string]string{"IDEMPOTENCY_URL": u}
	s, err := idempotency.Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := testkit.StoreUniqueName("dry-")
	fixture(t, s, m)
	for _, args := range [][]string{
		{"keys", "purge", "--merchant", m},
		{"keys", "purge", "--merchant", m, "--dry-run"},
		{"keys", "purge", "--merchant", m, "--apply=false"},
		{"keys", "release", "--merchant", m, "crashed"},
		{"keys", "release", "--merchant", m, "crashed", "--dry-run=true"},
	} {
		code, out, errOut := run(t, env, args...)
		if code != opsctl.ExitOK || !strings.Contains(out, "would") {
			t.Errorf("%q: exit %d\n%s%s", args, code, out, errOut)
		}
		if !exists(t, s, m, "old") || !exists(t, s, m, "crashed") {
			t.Fatalf("%q deleted a record", args)
		}
	}
	code, out, _ := run(t, env, "keys", "purge", "--merchant", m, "--dry-run=false")
	want(t, "purge --dry-run=false", code, 0, out, "1 expired record(s) deleted")
	if exists(t, s, m, "old") {
		t.Error("--dry-run=false did not delete")
	}
	code, out, _ = run(t, env, "keys", "release", "--merchant", m, "crashed", "--apply", "--dry-run=false")
	want(t, "release --apply --dry-run=false", code, 0, out, "released")

	payURL := pgURL(t, "opsctl_pay_", nil)
	code, out, _ = run(t, map[string]string{"PAYMENTS_STORE_URL": payURL}, "db", "migrate")
	want(t, "migrate", code, 0, out, "would apply")
	code, _, errOut := run(t, map[string]string{"PAYMENTS_STORE_URL": payURL}, "keys", "ls")
	if code != opsctl.ExitUsage || !strings.Contains(errOut, "memory://") {
		t.Errorf("keys ls with the default store: %d %q", code, errOut)
	}
}

// TestProgress draws the purge's progress bar on stderr only when stderr
// is a terminal, never on stdout.
func TestProgress(t *testing.T) {
	u := pgURL(t, "opsctl_idem_", idempostgres.Migrate)
	env := map[string]string{"IDEMPOTENCY_URL": u}
	s, err := idempotency.Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := testkit.StoreUniqueName("bar-")
	fixture(t, s, m)

	code, out, errOut := run(t, env, "keys", "purge", "--merchant", m, "-o", "json")
	if code != 0 || strings.Contains(errOut, "purging") || strings.Contains(errOut, "\r") {
		t.Errorf("not a terminal: exit %d, stderr %q; want no progress bar", code, errOut)
	}
	restore := opsctl.SetTerminal(func(w io.Writer) bool { return true })
	defer restore()
	code, out, errOut = run(t, env, "keys", "purge", "--merchant", m, "--apply", "-o", "json")
	if code != 0 || !strings.Contains(errOut, "purging expired keys") {
		t.Errorf("terminal: exit %d, stderr %q; want the progress bar", code, errOut)
	}
	if strings.Contains(out, "purging") || json.Valid([]byte(out)) == false {
		t.Errorf("the progress bar reached stdout: %q", out)
	}
}

// TestBusJSON runs bus provision, stats, dlq ls and dlq redrive with -o
// json against a Kafka cluster (kfake).
func TestBusJSON(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	env := map[string]string{"MESSAGE_BUS_ADAPTER": "kafka", "KAFKA_BROKERS": strings.Join(cluster.ListenAddrs(), ","),
		"PAYMENTS_TOPIC": "payments-json", "KAFKA_GROUP_ID": "payments-worker-json"}
	var prov struct {
		DryRun bool   `json:"dry_run"`
		Bus    string `json:"bus"`
		Steps  []struct{ Kind, Name, Action string }
	}
	code, out, errOut := dlqRun(t, env, "bus", "provision", "-o", "json")
	if err := json.Unmarshal([]byte(out), &prov); code != 0 || err != nil || !prov.DryRun || prov.Bus != "kafka" || len(prov.Steps) != 2 || prov.Steps[0].Action != "would create" {
		t.Fatalf("bus provision -o json: exit %d %+v %v\n%s%s", code, prov, err, out, errOut)
	}
	code, out, _ = dlqRun(t, env, "bus", "provision", "--apply")
	want(t, "provision --apply", code, 0, out, "created")
	columnsAligned(t, "bus provision", out, 2)

	var st struct {
		Backlog     *int64   `json:"backlog"`
		DeadLetters *int64   `json:"dead_letters"`
		OldestAge   *float64 `json:"oldest_age_seconds"`
	}
	code, out, _ = dlqRun(t, env, "bus", "stats", "-o", "json")
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || st.Backlog == nil || *st.Backlog != 0 || st.DeadLetters == nil || *st.DeadLetters != 0 {
		t.Errorf("bus stats -o json: exit %d %+v %v\n%s", code, st, err, out)
	}
	code, out, _ = dlqRun(t, env, "bus", "stats")
	want(t, "bus stats", code, 0, out, "DEAD_LETTERS")
	columnsAligned(t, "bus stats", out, 1)

	code, out, _ = dlqRun(t, env, "bus", "dlq", "ls", "-o", "json")
	if code != 0 || strings.TrimSpace(out) != "" {
		t.Errorf("bus dlq ls -o json on an empty queue: exit %d %q; want no lines", code, out)
	}
	var rd struct {
		DryRun   bool  `json:"dry_run"`
		Items    []any `json:"items"`
		Redriven int   `json:"redriven"`
	}
	code, out, _ = dlqRun(t, env, "bus", "dlq", "redrive", "--apply", "-o", "json")
	if err := json.Unmarshal([]byte(out), &rd); code != 0 || err != nil || rd.DryRun || rd.Items == nil || len(rd.Items) != 0 || rd.Redriven != 0 {
		t.Errorf("bus dlq redrive -o json on an empty queue: exit %d %+v %v\n%s", code, rd, err, out)
	}
}
