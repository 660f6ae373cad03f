package infra_test

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// root is the repository root (this package is infra/).
func root(t testing.TB) string {
	t.Helper()
	r, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func path(t testing.TB, rel string) string { return filepath.Join(root(t), filepath.FromSlash(rel)) }

func read(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// goFile parses one Go source file of the repository.
func goFile(t testing.TB, rel string) *ast.File {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path(t, rel), nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// goConst returns the literal value of a constant declared in a Go file:
// the code's own definition, read without importing its (heavy) module.
func goConst(t testing.TB, rel, name string) string {
	t.Helper()
	for _, d := range goFile(t, rel).Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if n.Name != name || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok {
					t.Fatalf("%s: const %s is not a literal", rel, name)
				}
				if lit.Kind == token.STRING {
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					return v
				}
				return lit.Value
			}
		}
	}
	t.Fatalf("%s: no const %s", rel, name)
	return ""
}

// stringsInFunc returns the string literals of a function's body, in order.
func stringsInFunc(t testing.TB, rel, fn string) []string {
	t.Helper()
	var out []string
	for _, d := range goFile(t, rel).Decls {
		f, ok := d.(*ast.FuncDecl)
		if !ok || f.Name.Name != fn {
			continue
		}
		ast.Inspect(f.Body, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, v)
			}
			return true
		})
		return out
	}
	t.Fatalf("%s: no func %s", rel, fn)
	return nil
}

// loaderVars are the variables examples/internal/config reads: the
// literals of config.Names().
func loaderVars(t testing.TB) []string {
	t.Helper()
	vars := stringsInFunc(t, "examples/internal/config/config.go", "Names")
	if len(vars) < 20 || !slices.Contains(vars, "MESSAGE_BUS_ADAPTER") || !slices.Contains(vars, "SHUTDOWN_TIMEOUT") {
		t.Fatalf("config.Names() read as %q: the parser no longer understands it", vars)
	}
	return vars
}

// otherReaders are the environment variables read by something other than
// the configuration loader, each with the source file that reads it (the
// test checks the name is there). Prefixes end in "_".
var otherReaders = map[string]string{
	"SERVICEBUS_CONNECTION_STRING": "bus/servicebus/servicebus.go",
	"PUBSUB_EMULATOR_HOST":         "bus/pubsub/pubsub.go",
	"OTEL_":                        "observability/observability.go",      // and the OpenTelemetry SDK
	"AWS_":                         "bus/snssqs/snssqs.go",                // the AWS SDK's configuration chain
	"STRIPE_API_KEY":               "examples/internal/drivers/stripe.go", // named by GATEWAY_URL's api_key_env
	"GOMEMLIMIT":                   "",                                    // the Go runtime
}

// allowedEnv reports whether a binary reads the variable name.
func allowedEnv(t testing.TB, name string) bool {
	t.Helper()
	if slices.Contains(loaderVars(t), name) {
		return true
	}
	for k := range otherReaders {
		if name == k || strings.HasSuffix(k, "_") && strings.HasPrefix(name, k) {
			return true
		}
	}
	return false
}

func TestOtherEnvReadersExist(t *testing.T) {
	for name, file := range otherReaders {
		if file == "" {
			continue
		}
		if !strings.Contains(read(t, file), name) {
			t.Errorf("%s no longer mentions %s: update otherReaders", file, name)
		}
	}
}

// secretVars may hold credentials: manifests take them from a Secret,
// never as a literal value.
var secretVars = []string{
	"PAYRAIL_API_KEYS", "PAYRAIL_ADMIN_KEYS", "STRIPE_API_KEY", "SERVICEBUS_CONNECTION_STRING",
	"PAYMENTS_STORE_URL", "IDEMPOTENCY_URL", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
}

// requireTool finds an external tool: absent, the test skips with a
// message saying what it did not check (never a silent pass).
func requireTool(t *testing.T, name, what string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed: %s is not checked here (see docs/deploy.md)", name, what)
	}
	return p
}

var (
	binOnce sync.Once
	binDir  string
	binErr  error
	binOut  []byte
)

// testVersion is stamped into the binaries the tests build.
const testVersion = "infra-test"

// binaries builds examples/server, examples/worker and examples/opsctl once
// per test run with .ci/build-binaries.sh, the Dockerfile's exact flags.
func binaries(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "payrail-bin-")
		if binErr != nil {
			return
		}
		cmd := exec.Command("bash", path(t, ".ci/build-binaries.sh"))
		cmd.Env = append(os.Environ(), "OUT="+binDir, "VERSION="+testVersion)
		start := time.Now()
		binOut, binErr = cmd.CombinedOutput()
		binOut = append(binOut, []byte("build time "+time.Since(start).Round(time.Second).String()+"\n")...)
	})
	if binErr != nil {
		t.Fatalf(".ci/build-binaries.sh: %v\n%s", binErr, binOut)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// configCheck runs `opsctl config check` with exactly env (no .env file:
// the working directory is empty), the configuration loader's verdict.
func configCheck(t *testing.T, env map[string]string) (string, error) {
	t.Helper()
	bin := binaries(t)
	cmd := exec.Command(filepath.Join(bin, "opsctl"), "config", "check")
	cmd.Dir = t.TempDir()
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + cmd.Dir}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), err
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), nil
}

// TestNoBuildArtefactsCommitted keeps build output out of the repository:
// Python bytecode (the Service Bus test peer's __pycache__), compiled
// binaries of the examples (go build ./examples/server writes ./server),
// test binaries, profiles, node_modules and jars. .gitignore lists them.
func TestNoBuildArtefactsCommitted(t *testing.T) {
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git not installed")
	}
	cmd := exec.Command(git, "ls-files", "-z")
	cmd.Dir = root(t)
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err) // a source archive
	}
	artefact := func(p string) bool {
		base := filepath.Base(p)
		switch {
		case strings.Contains("/"+p, "/__pycache__/"), strings.Contains("/"+p, "/node_modules/"),
			strings.HasSuffix(p, ".pyc"), strings.HasSuffix(p, ".jar"), strings.HasSuffix(p, ".test"),
			strings.HasSuffix(p, ".prof"), strings.HasSuffix(p, ".exe"), strings.HasSuffix(p, ".so"):
			return true
		case !strings.Contains(p, "/") && slices.Contains([]string{"server", "worker", "opsctl"}, base):
			return true
		}
		return false
	}
	n := 0
	for p := range strings.SplitSeq(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		n++
		if artefact(p) {
			t.Errorf("build artefact committed: %s (git rm --cached it; .gitignore covers it)", p)
		}
	}
	if n < 100 {
		t.Fatalf("git ls-files listed %d files; expected the repository", n)
	}
	ignore := read(t, ".gitignore")
	for _, pattern := range []string{"__pycache__/", "*.pyc", "node_modules/", "*.jar", "*.test", "/server", "/worker", "/opsctl"} {
		if !slices.Contains(strings.Split(ignore, "\n"), pattern) {
			t.Errorf(".gitignore lacks %q", pattern)
		}
	}
}
