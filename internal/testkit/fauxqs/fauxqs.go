// Package fauxqs starts fauxqs, an SNS/SQS emulator (an npm package), for
// tests that need a real SNS/SQS peer: the sns-sqs bus driver and the
// reference deployment's end-to-end test.
//
// fauxqs 1.9.2 (the last release that runs on Node.js 20) is pinned by
// package.json and package-lock.json in this folder and installed by
// .ci/setup.d/bus-snssqs-fauxqs.sh with npm ci into .cache/fauxqs at the
// repository root; node_modules is never committed. Start runs launcher.mjs
// (also in this folder) with node: fauxqs listens on a free loopback port,
// which the launcher prints. The process is stopped by Stop, and also dies
// with the test binary (its stdin closes and it receives SIGKILL when the
// parent exits), so no emulator outlives the tests.
//
// Typical use, from a test package's TestMain:
//
//	var faux *fauxqs.Server
//	var fauxErr error
//
//	func TestMain(m *testing.M) {
//		faux, fauxErr = fauxqs.Start()
//		if fauxErr == nil {
//			faux.SetEnv() // AWS_ENDPOINT_URL, AWS_REGION and dummy credentials
//		}
//		code := m.Run()
//		faux.Stop()
//		os.Exit(code)
//	}
//
// and in each test: testkit.StoreRequirePeer(t, "fauxqs", fauxErr), which
// skips locally and fails under CI=true.
//
// Gotchas of the emulator, verified with aws-sdk-go-v2: queue URLs look like
// http://sqs.<region>.127.0.0.1:<port>/000000000000/<name>, which do not
// resolve, so clients must use the endpoint as BaseEndpoint (the SDK sends
// SQS JSON-protocol requests to the endpoint, with the queue URL in the
// body); DeleteMessage with an unknown receipt handle succeeds; a long poll
// whose client went away still takes the messages that arrive while it
// waits (they reappear after their visibility timeout).
package fauxqs

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Version is the fauxqs release package-lock.json pins.
const Version = "1.9.2"

// Region is the AWS region the tests use against the emulator.
const Region = "us-east-1"

// ErrNotInstalled is returned by Start when node or the fauxqs package is
// missing.
var ErrNotInstalled = errors.New("fauxqs: not installed (run .ci/setup.d/bus-snssqs-fauxqs.sh; needs node)")

// Server is a running fauxqs, or an existing endpoint named by
// FAUXQS_ENDPOINT.
type Server struct {
	// Endpoint is the emulator's base URL, e.g. http://127.0.0.1:41234.
	Endpoint string

	cmd    *exec.Cmd
	stdin  io.Closer
	exited chan error
	once   sync.Once
}

// root returns the repository root, the directory of go.work, found from
// the working directory (each driver is a module of its own, so the nearest
// go.mod is not the root).
func root() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("fauxqs: no go.work above %s", wd)
		}
	}
}

// Dir returns the folder holding node_modules/fauxqs: FAUXQS_DIR, or
// .cache/fauxqs under the repository root.
func Dir() (string, error) {
	if d := os.Getenv("FAUXQS_DIR"); d != "" {
		return d, nil
	}
	r, err := root()
	if err != nil {
		return "", err
	}
	return filepath.Join(r, ".cache", "fauxqs"), nil
}

// Start starts fauxqs on a free loopback port and waits until it accepts
// requests (within 30 s). With FAUXQS_ENDPOINT set it starts nothing and
// returns that endpoint.
func Start() (*Server, error) {
	if ep := os.Getenv("FAUXQS_ENDPOINT"); ep != "" {
		return &Server{Endpoint: ep}, nil
	}
	dir, err := Dir()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "fauxqs", "package.json")); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotInstalled, err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("%w: node not found", ErrNotInstalled)
	}
	r, err := root()
	if err != nil {
		return nil, err
	}
	launcher := filepath.Join(r, "internal", "testkit", "fauxqs", "launcher.mjs")
	cmd := exec.Command(node, launcher, dir)
	cmd.Stderr = os.Stderr
	// Killed with the test binary even if it dies without calling Stop.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("fauxqs: start: %w", err)
	}
	s := &Server{cmd: cmd, stdin: stdin, exited: make(chan error, 1)}
	ready := make(chan error, 1)
	go func() {
		// Read the port, then drain stdout to EOF (the process exited) and
		// reap the process: Wait must follow the last read.
		sc := bufio.NewScanner(stdout)
		switch {
		case !sc.Scan():
			ready <- fmt.Errorf("fauxqs: exited before reporting its port: %v", sc.Err())
		default:
			var hello struct{ Port int }
			if err := json.Unmarshal(sc.Bytes(), &hello); err != nil || hello.Port == 0 {
				ready <- fmt.Errorf("fauxqs: unexpected first line %q", sc.Text())
			} else {
				s.Endpoint = "http://127.0.0.1:" + strconv.Itoa(hello.Port)
				ready <- nil
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		s.exited <- cmd.Wait()
	}()
	var startErr error
	select {
	case startErr = <-ready:
	case <-time.After(30 * time.Second):
		startErr = errors.New("fauxqs: no port reported within 30s")
	}
	if startErr != nil {
		s.Stop()
		return nil, startErr
	}
	return s, nil
}

// Env returns the environment that points aws-sdk-go-v2's default
// configuration chain at the emulator: AWS_ENDPOINT_URL, AWS_REGION and
// dummy static credentials, with the EC2 metadata lookup disabled.
func (s *Server) Env() map[string]string {
	return map[string]string{
		"AWS_ENDPOINT_URL":          s.Endpoint,
		"AWS_ENDPOINT_URL_SQS":      "",
		"AWS_ENDPOINT_URL_SNS":      "",
		"AWS_REGION":                Region,
		"AWS_ACCESS_KEY_ID":         "test",
		"AWS_SECRET_ACCESS_KEY":     "test",
		"AWS_SESSION_TOKEN":         "",
		"AWS_PROFILE":               "",
		"AWS_EC2_METADATA_DISABLED": "true",
	}
}

// SetEnv sets Env in the process environment, for TestMain (tests that may
// run in parallel cannot use t.Setenv).
func (s *Server) SetEnv() {
	for k, v := range s.Env() {
		if v == "" {
			_ = os.Unsetenv(k)
		} else {
			_ = os.Setenv(k, v)
		}
	}
}

func (s *Server) stop() {
	if s.stdin != nil {
		_ = s.stdin.Close() // the launcher stops when its stdin closes
	}
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
	}
}

// Stop stops the emulator started by Start and waits for it to exit (killing
// it after 5 s). It is safe on a nil Server and when called twice.
func (s *Server) Stop() {
	if s == nil || s.cmd == nil {
		return
	}
	s.once.Do(func() {
		s.stop()
		select {
		case <-s.exited:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})
}
