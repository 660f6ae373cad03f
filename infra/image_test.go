package infra_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildLine extracts the go build command of the Dockerfile and of
// .ci/build-binaries.sh: the flags must be the same.
var buildFlags = regexp.MustCompile(`CGO_ENABLED=0 go build -trimpath\s*\\?\s*-ldflags "([^"]*)"`)

func TestDockerfile(t *testing.T) {
	df := read(t, "Dockerfile")
	script := read(t, ".ci/build-binaries.sh")
	d, s := buildFlags.FindStringSubmatch(df), buildFlags.FindStringSubmatch(script)
	if d == nil || s == nil {
		t.Fatalf("no `CGO_ENABLED=0 go build -trimpath -ldflags \"...\"` in the Dockerfile (%v) or .ci/build-binaries.sh (%v)", d != nil, s != nil)
	}
	if d[1] != s[1] {
		t.Errorf("-ldflags differ:\nDockerfile:              %s\n.ci/build-binaries.sh:   %s", d[1], s[1])
	}
	for _, f := range []string{"-s", "-w", "-X github.com/payrail/payrail/examples/internal/app.Version="} {
		if !strings.Contains(d[1], f) {
			t.Errorf("Dockerfile -ldflags lack %q", f)
		}
	}
	if !strings.Contains(read(t, "examples/internal/app/app.go"), "var Version = ") {
		t.Error("examples/internal/app has no Version variable for -X")
	}

	// Every module of go.work has its go.mod copied before `go mod download`.
	work := read(t, "go.work")
	var uses []string
	for _, m := range regexp.MustCompile(`(?m)^\s+(\.(?:/[^\s]*)?)\s*$`).FindAllStringSubmatch(work, -1) {
		uses = append(uses, strings.TrimPrefix(strings.TrimPrefix(m[1], "."), "/"))
	}
	if !strings.Contains(df, "\nCOPY go.work go.work.sum go.mod go.sum ./\n") {
		t.Error("the Dockerfile does not copy go.work and the root module's go.mod first")
	}
	uses = slices.DeleteFunc(uses, func(u string) bool { return u == "" })
	var copied []string
	for _, m := range regexp.MustCompile(`(?m)^COPY (\S*)go\.mod (?:\S*)go\.sum`).FindAllStringSubmatch(df, -1) {
		copied = append(copied, strings.TrimSuffix(m[1], "/"))
	}
	slices.Sort(uses)
	slices.Sort(copied)
	if len(uses) < 10 || !slices.Equal(uses, copied) {
		t.Errorf("the Dockerfile copies the go.mod of %q, go.work uses %q", copied, uses)
	}

	// Runtime stage: distroless static, a numeric non-root user.
	stages := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(df, -1)
	if len(stages) != 2 || !strings.HasPrefix(stages[1][1], "gcr.io/distroless/static") || !strings.HasSuffix(stages[1][1], ":nonroot") {
		t.Errorf("stages %q: want a build stage and gcr.io/distroless/static...:nonroot", stages)
	}
	user := regexp.MustCompile(`(?m)^USER (\d+):(\d+)$`).FindStringSubmatch(df)
	if user == nil || user[1] == "0" {
		t.Errorf("the Dockerfile must end as a numeric non-root USER, got %q", user)
	}
	if strings.Contains(df, ":latest") {
		t.Error("the Dockerfile uses a :latest image")
	}
	di := read(t, ".dockerignore")
	for _, p := range []string{".git", ".cache", ".env"} {
		if !slices.Contains(strings.Fields(di), p) {
			t.Errorf(".dockerignore lacks %s", p)
		}
	}
}

// TestDockerBuild builds the image where a Docker engine answers.
func TestDockerBuild(t *testing.T) {
	docker := requireTool(t, "docker", "the image build (docker build)")
	if out, err := exec.Command(docker, "info").CombinedOutput(); err != nil {
		t.Skipf("docker info fails (no engine): the image build is not checked here\n%s", out)
	}
	if testing.Short() {
		t.Skip("-short: docker build skipped")
	}
	cmd := exec.Command(docker, "build", "--build-arg", "VERSION="+testVersion, "-t", "payrail:infra-test", ".")
	cmd.Dir = root(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
}

// TestBinaries builds the three binaries with the Dockerfile's flags and
// reports their sizes (docs/deploy.md).
func TestBinaries(t *testing.T) {
	dir := binaries(t)
	t.Logf(".ci/build-binaries.sh:\n%s", binOut)
	for _, b := range []string{"server", "worker", "opsctl"} {
		fi, err := os.Stat(filepath.Join(dir, b))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() < 1<<20 || fi.Mode()&0o111 == 0 {
			t.Errorf("%s: %d bytes, mode %v", b, fi.Size(), fi.Mode())
		}
		// Static (CGO_ENABLED=0): no ELF interpreter, so it runs on distroless/static.
		f, err := os.ReadFile(filepath.Join(dir, b))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(f[:min(len(f), 4096)]), "ld-linux") {
			t.Errorf("%s is dynamically linked", b)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// runServer starts the built examples/server with its defaults (in-memory
// bus and stores, mock gateway) on a free port and returns its base URL
// and log lines; it is stopped with SIGTERM at the end of the test, which
// must exit 0.
func runServer(t *testing.T) (string, func() string) {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(filepath.Join(binaries(t), "server"))
	cmd.Dir = t.TempDir()
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + cmd.Dir, fmt.Sprintf("PORT=%d", port), "SHUTDOWN_TIMEOUT=5s", "OTEL_SDK_DISABLED=true"}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := make(chan string, 1)
	go func() { b, _ := io.ReadAll(bufio.NewReader(stdout)); logs <- string(b) }()
	var logText string
	stopped := false
	stop := func() string {
		if stopped {
			return logText
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			logText = <-logs
			if err != nil {
				t.Errorf("server exit after SIGTERM: %v\n%s", err, logText)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("server did not stop within 30s of SIGTERM")
		}
		return logText
	}
	t.Cleanup(func() { stop() })
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not listen within 30s: %v\n%s", err, stop())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return base, stop
}

// TestServerProbePaths runs the real server binary and checks that every
// HTTP probe path of the Kubernetes manifests and of compose.yaml answers
// 200, and that the version stamped by the build flags is logged.
func TestServerProbePaths(t *testing.T) {
	paths := map[string]bool{"/metrics": true} // scraped by the PodMonitor and compose's Prometheus
	for _, o := range overlays {
		for _, d := range build(t, o).deployments {
			if d.Name != "payrail-server" {
				continue
			}
			for _, p := range probes(d) {
				paths[p.HTTPGet.Path] = true
			}
		}
	}
	for _, p := range composeProbePaths(t, "server") {
		paths[p] = true
	}
	if !paths["/readyz"] || !paths["/healthz"] {
		t.Fatalf("probe paths %v: want /readyz and /healthz among them", paths)
	}
	base, stop := runServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for p := range paths {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+p, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s on the server: %s, want 200", p, resp.Status)
		}
	}
	logs := stop()
	if !strings.Contains(logs, `"version":"`+testVersion+`"`) {
		t.Errorf("the server's start log does not carry the stamped version %q:\n%s", testVersion, logs)
	}
}

// workerPaths are the paths examples/internal/worker serves on METRICS_PORT.
func workerPaths(t *testing.T) []string {
	var out []string
	for _, s := range stringsInFunc(t, "examples/internal/worker/worker.go", "Run") {
		if strings.HasPrefix(s, "/") && !strings.Contains(s, " ") {
			out = append(out, s)
		}
	}
	return out
}

// TestDriverBuildTags: the default build (the README's go run) links no
// heavy driver; payrail_full links them all, each payrail_<driver> tag its
// own, and each payrail_no_<driver> tag leaves its driver package out of a
// payrail_full build of the server and the worker.
func TestDriverBuildTags(t *testing.T) {
	drivers := map[string]string{
		"kafka": "bus/kafka", "pubsub": "bus/pubsub", "servicebus": "bus/servicebus", "snssqs": "bus/snssqs",
		"dynamodb": "idempotency/dynamodb", "redis": "idempotency/redis", "stripe": "gateway/stripe",
	}
	var tags []string
	for d := range drivers {
		tags = append(tags, "payrail_no_"+d)
	}
	deps := func(tags string) []string {
		args := []string{"list", "-deps", "-f", "{{.ImportPath}}"}
		if tags != "" {
			args = append(args, "-tags", tags)
		}
		cmd := exec.Command("go", append(args, "./examples/server", "./examples/worker")...)
		cmd.Dir = root(t)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go %v: %v", args, err)
		}
		return strings.Fields(string(out))
	}
	all, none, dflt := deps("payrail_full"), deps("payrail_full,"+strings.Join(tags, ",")), deps("")
	for d, pkg := range drivers {
		pkg = "github.com/payrail/payrail/" + pkg
		if !slices.Contains(all, pkg) {
			t.Errorf("-tags payrail_full lacks %s", pkg)
		}
		if slices.Contains(none, pkg) {
			t.Errorf("-tags payrail_full,payrail_no_%s still links %s", d, pkg)
		}
		if slices.Contains(dflt, pkg) {
			t.Errorf("the default build (go run ./examples/server) links %s", pkg)
		}
		if one := deps("payrail_" + d); !slices.Contains(one, pkg) {
			t.Errorf("-tags payrail_%s lacks %s", d, pkg)
		}
	}
	for _, always := range []string{"bus/inmemory", "idempotency/memory", "gateway/mock", "payments/postgres", "idempotency/postgres"} {
		for name, set := range map[string][]string{"every payrail_no_ tag": none, "no tag": dflt} {
			if !slices.Contains(set, "github.com/payrail/payrail/"+always) {
				t.Errorf("with %s the build lost %s", name, always)
			}
		}
	}
}
