package docshell_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/payrail/payrail/examples/internal/apptest"
	"github.com/payrail/payrail/internal/testkit"
)

// block is one fenced shell block of a document.
type block struct {
	File string // path from the repository root
	Line int    // line of the opening fence
	Text string // the commands, fence indentation removed
}

// Key names a block in notRunnable: the file and the block's first command
// line (the first line that is neither blank nor a comment).
func (b block) Key() string {
	for line := range strings.SplitSeq(b.Text, "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return b.File + ": " + strings.TrimSpace(trailingComment.ReplaceAllString(l, ""))
		}
	}
	return fmt.Sprintf("%s:%d (no command)", b.File, b.Line)
}

// trailingComment matches a comment after a command, set off by two
// spaces or more.
var trailingComment = regexp.MustCompile(`\s{2,}#.*$`)

// documents are the files whose shell blocks run, each with what its
// blocks run against.
var documents = []struct {
	Path     string
	Scenario scenario
}{
	// The quickstart: the embedded defaults, dev mode.
	{"README.md", devServer},
	// The incidents: an admin key, and two (mock) gateways named as in the
	// runbook's routing example.
	{"docs/runbooks.md", adminServer},
	// Schemas and keys: opsctl on a PostgreSQL idempotency store.
	{"docs/operations.md", postgresKeys},
}

// notRunnable lists, by Key, the blocks that are not run, with the reason. A
// block of the documents above that neither runs nor is listed here fails
// the test, as does an entry that names no block.
var notRunnable = map[string]string{
	"README.md: go run ./examples/server":                                                                                          "the quickstart's first command: the test starts this very server (built from ./examples/server) before the other blocks, and runs the test suite of its second line itself",
	"README.md: go test github.com/payrail/payrail/...":                                                                            "the development commands run the whole test suite (and .ci/run), which includes this test",
	"README.md: PAYRAIL_BENCH=full go test -count=1 -run '^TestTable$' -v ./bench":                                                 "the benchmark table: bench's own TestTable runs it (PAYRAIL_BENCH=tiny in CI)",
	"docs/operations.md: opsctl keys ls [--merchant M] [--state in_progress|completed] [--expired] [--stuck] [--limit N] [--json]": "a usage synopsis ([optional] flags), not a command",
	"docs/operations.md: opsctl keys show --merchant acme order-1001":                                                              "needs a request that crashed mid-flight (an in-progress key with a lapsed lease); examples/internal/opsctl's release tests cover it",
}

type scenario int

const (
	devServer scenario = iota
	adminServer
	postgresKeys
)

// adminKey is the admin key of adminServer, given to the blocks as
// ADMIN_KEY.
const adminKey = "docshell-admin-key"

// fence matches an opening fence of a shell block, possibly indented (in a
// list item).
var fence = regexp.MustCompile("^( *)```(sh|bash|shell|console)\\s*$")

// extract returns the shell blocks of the file at root/rel.
func extract(t *testing.T, root, rel string) []block {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	var (
		out    []block
		cur    *block
		indent string
		lines  []string
	)
	for i, line := range strings.Split(string(data), "\n") {
		if cur == nil {
			if m := fence.FindStringSubmatch(line); m != nil {
				cur, indent, lines = &block{File: rel, Line: i + 1}, m[1], nil
			}
			continue
		}
		if strings.TrimSpace(line) == "```" {
			cur.Text = strings.Join(lines, "\n") + "\n"
			out = append(out, *cur)
			cur = nil
			continue
		}
		lines = append(lines, strings.TrimPrefix(line, indent))
	}
	if cur != nil {
		t.Fatalf("%s:%d: unclosed code fence", rel, cur.Line)
	}
	return out
}

// TestDocShellBlocks runs every shell block of the documents with bash, in
// document order, each file against its scenario: the server and opsctl
// built from this tree, real curl and jq. `go run ./examples/opsctl` runs
// the built opsctl. Every curl call's status is checked: only 2xx, 3xx and
// the two errors the docs show on purpose (402 a decline, 409 an
// idempotency conflict) pass.
func TestDocShellBlocks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binaries")
	}
	root := repoRoot(t)
	tools := requireTools(t, "bash", "curl", "jq")
	bin := build(t, root)
	writeCurlWrapper(t, bin, tools["curl"])

	seen := map[string]bool{}
	for _, doc := range documents {
		blocks := extract(t, root, doc.Path)
		if len(blocks) == 0 {
			t.Errorf("%s: no shell block found", doc.Path)
		}
		var run []block
		for _, b := range blocks {
			k := b.Key()
			if seen[k] {
				t.Errorf("%s:%d: two blocks start with the same command line %q: make them distinct, notRunnable names blocks by it", b.File, b.Line, k)
			}
			seen[k] = true
			if _, ok := notRunnable[k]; !ok {
				run = append(run, b)
			}
		}
		t.Run(strings.ReplaceAll(doc.Path, "/", "_"), func(t *testing.T) {
			env := prepare(t, doc.Scenario, bin)
			dir := t.TempDir() // files the blocks write (headers.txt, policy.json...)
			for _, b := range run {
				runBlock(t, b, dir, bin, env)
			}
		})
	}
	for k := range notRunnable {
		if !seen[k] {
			t.Errorf("notRunnable names a block that no longer exists: %q", k)
		}
	}
}

// runBlock runs b with bash -euo pipefail in dir.
func runBlock(t *testing.T, b block, dir, bin string, env []string) {
	t.Helper()
	script := strings.ReplaceAll(b.Text, "go run ./examples/opsctl", "opsctl")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(env, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	report := func() {
		t.Logf("%s:%d:\n%s\n--- stdout:\n%s\n--- stderr:\n%s", b.File, b.Line, b.Text, stdout.String(), stderr.String())
	}
	if err != nil {
		report()
		t.Errorf("%s:%d: block failed: %v", b.File, b.Line, err)
		return
	}
	var calls []string
	for _, m := range curlStatus.FindAllStringSubmatch(stderr.String(), -1) {
		calls = append(calls, m[1])
		code, _ := strconv.Atoi(m[1])
		if !expectedStatus(code) {
			report()
			t.Errorf("%s:%d: %s answered %d", b.File, b.Line, m[2], code)
		}
	}
	if len(calls) == 0 && strings.Contains(script, "curl ") {
		report()
		t.Errorf("%s:%d: the block calls curl but no call was recorded", b.File, b.Line)
	}
	t.Logf("%s:%d: ran %q; HTTP statuses %v", b.File, b.Line, b.Key(), calls)
}

// curlStatus matches the line the curl wrapper writes to stderr per call.
var curlStatus = regexp.MustCompile(`(?m)^docshell: HTTP (\d{3}) (.*)$`)

func expectedStatus(code int) bool {
	return code >= 200 && code < 400 || code == http.StatusPaymentRequired || code == http.StatusConflict
}

// writeCurlWrapper puts a curl first on the blocks' PATH that runs the real
// one and writes each call's status to stderr.
func writeCurlWrapper(t *testing.T, bin, realCurl string) {
	t.Helper()
	script := "#!/usr/bin/env bash\nexec " + strconv.Quote(realCurl) +
		` -w '%{stderr}docshell: HTTP %{http_code} %{method} %{url_effective}\n' "$@"` + "\n"
	if err := os.WriteFile(filepath.Join(bin, "curl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// prepare starts what scenario needs and returns the blocks' environment.
func prepare(t *testing.T, s scenario, bin string) []string {
	t.Helper()
	base := blockEnv()
	switch s {
	case devServer:
		url := startServer(t, bin, nil)
		return append(base, "PAYRAIL_URL="+url)
	case adminServer:
		url := startServer(t, bin, []string{
			"PAYRAIL_ADMIN_KEYS=" + adminKey,
			"GATEWAY_URL=mock://?name=stripe",
			"GATEWAY_URLS=mock://?name=adyen",
		})
		return append(base, "PAYRAIL_URL="+url, "ADMIN_KEY="+adminKey)
	case postgresKeys:
		return append(base, "IDEMPOTENCY_URL="+postgresTable(t))
	}
	t.Fatalf("unknown scenario %d", s)
	return nil
}

// blockEnv is the environment of the blocks: the test's, without the
// variables of the reference deployment (a developer's PAYRAIL_API_KEYS
// must not change what the blocks see) and without PATH (runBlock sets it).
func blockEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name == "PATH" || deploymentVariable(name) {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func deploymentVariable(name string) bool {
	for _, p := range []string{"PAYRAIL_", "PAYMENTS_", "GATEWAY_", "IDEMPOTENCY_", "BUS_", "KAFKA_", "PUBSUB_", "SERVICEBUS_", "RECOVERY_", "RECONCILE_", "ROUTING_", "OTEL_"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	switch name {
	case "PORT", "METRICS_PORT", "LISTEN_HOST", "MESSAGE_BUS_ADAPTER", "QUEUE_TYPE", "LOG_LEVEL", "SERVICE_NAME", "SHUTDOWN_TIMEOUT", "WORKER_CONCURRENCY", "ADMIN_KEY":
		return true
	}
	return false
}

// postgresTable returns an IDEMPOTENCY_URL naming a fresh table on the test
// PostgreSQL server, dropped at the end of the test.
func postgresTable(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, testkit.StorePostgresURL())
	testkit.StoreRequirePeer(t, "PostgreSQL", err)
	table := testkit.StoreUniqueName("docshell_idem_")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{table}.Sanitize()); err != nil {
			t.Errorf("dropping %s: %v", table, err)
		}
		_ = conn.Close(ctx)
	})
	u := testkit.StorePostgresURL()
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + "table=" + table
}

// startServer runs the built server on a free loopback port with the
// embedded defaults plus env, in an empty directory (no .env), waits until
// /readyz answers 200 and returns its base URL. It stops the server with
// SIGTERM at the end of the test and checks that it exited cleanly.
func startServer(t *testing.T, bin string, env []string) string {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(filepath.Join(bin, "server"))
	cmd.Dir = t.TempDir()
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "PORT=" + strconv.Itoa(port)}, env...)
	logs := &apptest.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server exited with %v; log:\n%s", err, logs)
			}
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("server did not stop within 60s; log:\n%s", logs)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
	})
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		select {
		case err := <-done:
			t.Fatalf("server exited before it was ready: %v; log:\n%s", err, logs)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready within 60s; log:\n%s", logs)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// build builds the server and opsctl of this tree into a temporary
// directory, which it returns.
func build(t *testing.T, root string) string {
	t.Helper()
	bin := t.TempDir()
	cmd := exec.Command("go", "build", "-o", bin+string(os.PathSeparator), "./examples/server", "./examples/opsctl")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// requireTools returns the paths of the named programs. A missing one skips
// the test locally and fails it under CI=true (.ci/setup.d installs them).
func requireTools(t *testing.T, names ...string) map[string]string {
	t.Helper()
	paths := map[string]string{}
	for _, n := range names {
		p, err := exec.LookPath(n)
		testkit.StoreRequirePeer(t, n, err)
		paths[n] = p
	}
	return paths
}

// repoRoot returns the repository root, three directories up.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("repository root not found at %s: %v", root, err)
	}
	return root
}
