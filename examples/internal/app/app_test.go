package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/payrail/payrail/examples/internal/config"
	"github.com/payrail/payrail/payments"

	// The drivers OpenBackends opens by default.
	_ "github.com/payrail/payrail/examples/internal/drivers"
)

var errUnknownDriver = errors.New("unknown driver")

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{errors.New("boom"), 1},
		{ConfigError{errors.New("bad")}, 2},
		{fmt.Errorf("wrapped: %w", ConfigError{errors.New("bad")}), 2},
		{errors.Join(errors.New("boom"), ConfigError{errors.New("bad")}), 2},
	}
	for _, tt := range tests {
		if got := ExitCode(tt.err); got != tt.want {
			t.Errorf("ExitCode(%v) = %d; want %d", tt.err, got, tt.want)
		}
	}
}

func TestOpenError(t *testing.T) {
	err := OpenError("GATEWAY_URL", fmt.Errorf("scheme stripe: %w", errUnknownDriver), errUnknownDriver)
	if ExitCode(err) != 2 || !errors.Is(err, errUnknownDriver) || !strings.HasPrefix(err.Error(), "GATEWAY_URL: ") {
		t.Errorf("unknown driver: %v (exit code %d); want a configuration error prefixed with the variable", err, ExitCode(err))
	}
	cause := errors.New("connection refused")
	err = OpenError("IDEMPOTENCY_URL", cause, errUnknownDriver)
	if ExitCode(err) != 1 || !errors.Is(err, cause) || err.Error() != "IDEMPOTENCY_URL: connection refused" {
		t.Errorf("runtime failure: %v (exit code %d)", err, ExitCode(err))
	}
}

func TestClosers(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	var order []string
	var cl Closers
	failure := errors.New("stuck")
	for _, name := range []string{"first", "second", "third"} {
		cl.Add(name, func() error {
			order = append(order, name)
			if name == "second" {
				return failure
			}
			return nil
		})
	}
	err := cl.CloseAll(log)
	if got := strings.Join(order, ","); got != "third,second,first" {
		t.Errorf("closed in order %s; want third,second,first", got)
	}
	if !errors.Is(err, failure) || !strings.Contains(err.Error(), "closing second: stuck") {
		t.Errorf("CloseAll() = %v; want the error of closing second", err)
	}
	for _, want := range []string{"shutdown: closed third", "shutdown: closing second failed", "shutdown: closed first"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, &logs)
		}
	}
	var empty Closers
	if err := empty.CloseAll(log); err != nil {
		t.Errorf("empty CloseAll() = %v", err)
	}
}

func TestCloseListener(t *testing.T) {
	ln, err := Listen(nil, "PORT", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closeLn := CloseListener(ln)
	if err := closeLn(); err != nil {
		t.Fatalf("first close: %v", err)
	}
	if err := closeLn(); err != nil {
		t.Fatalf("closing a closed listener: %v", err)
	}
	given, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer given.Close()
	if got, err := Listen(given, "PORT", "127.0.0.1:1"); got != given || err != nil {
		t.Fatalf("Listen(given) = %v, %v; want the given listener", got, err)
	}
}

func TestNewRegistry(t *testing.T) {
	reg, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "go_goroutines" {
			found = true
		}
	}
	if !found {
		t.Error("registry lacks go_goroutines")
	}
}

// testEnv isolates the test from the developer's environment and .env and
// applies env.
func testEnv(t *testing.T, env map[string]string) {
	t.Helper()
	t.Chdir(t.TempDir())
	for _, n := range config.Names() {
		t.Setenv(n, "")
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
}

func TestMainExitCodes(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		err  error
		want int
	}{
		{"clean", nil, nil, 0},
		{"runtime failure", nil, errors.New("boom"), 1},
		{"configuration error from run", nil, ConfigError{errors.New("bad")}, 2},
		{"invalid configuration", map[string]string{"PORT": "not-a-port"}, nil, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testEnv(t, tt.env)
			called := false
			got := Main("payrail-test", func(ctx context.Context, cfg *config.Config) error {
				called = true
				if cfg == nil {
					t.Error("run called with a nil configuration")
				}
				return tt.err
			})
			if got != tt.want {
				t.Errorf("Main() = %d; want %d", got, tt.want)
			}
			if wantCalled := tt.env == nil; called != wantCalled {
				t.Errorf("run called: %v; want %v", called, wantCalled)
			}
		})
	}
}

func TestMainSignal(t *testing.T) {
	testEnv(t, nil)
	got := Main("payrail-test", func(ctx context.Context, _ *config.Config) error {
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
			return errors.New("context not cancelled by SIGTERM")
		}
	})
	if got != 0 {
		t.Fatalf("Main() = %d; want 0", got)
	}
}

func TestOpenBackends(t *testing.T) {
	testEnv(t, nil) // the defaults: mock gateway, memory:// idempotency and payment stores
	cfg, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	// A given payment store is used, and not closed.
	given := payments.NewMemoryStore()
	var cl Closers
	b, err := OpenBackends(ctx, cfg, given, log, &cl)
	if err != nil || b.Router == nil || b.Idempotency == nil || b.Store != given {
		t.Fatalf("OpenBackends(given store) = %+v, %v", b, err)
	}
	if err := cl.CloseAll(log); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"shutdown: closed gateways", "shutdown: closed idempotency store"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, &logs)
		}
	}
	if strings.Contains(logs.String(), "payment store") {
		t.Errorf("the given payment store was closed:\n%s", &logs)
	}

	// Without one, PAYMENTS_STORE_URL's is opened, and closed.
	logs.Reset()
	cl = Closers{}
	if b, err = OpenBackends(ctx, cfg, nil, log, &cl); err != nil || b.Store == nil {
		t.Fatalf("OpenBackends(nil) = %+v, %v", b, err)
	}
	if err := cl.CloseAll(log); err != nil || !strings.Contains(logs.String(), "shutdown: closed payment store") {
		t.Errorf("CloseAll() = %v; logs:\n%s", err, &logs)
	}

	// A payment store driver that is not compiled in: a configuration
	// error naming the variable, and what was opened is closed by cl.
	cfg.PaymentsStoreURL = "nosuchstore://"
	cl = Closers{}
	_, err = OpenBackends(ctx, cfg, nil, log, &cl)
	if ExitCode(err) != 2 || !strings.HasPrefix(err.Error(), "PAYMENTS_STORE_URL: ") {
		t.Errorf("OpenBackends(nosuchstore://) = %v; want a configuration error naming PAYMENTS_STORE_URL", err)
	}
	if err := cl.CloseAll(log); err != nil {
		t.Error(err)
	}
}

// TestDevAuthenticatorByInterface: dev mode grants admin rights on
// loopback only; on a public interface requests are still merchant dev but
// never admin.
func TestDevAuthenticatorByInterface(t *testing.T) {
	for _, c := range []struct {
		addr     string
		loopback bool
	}{
		{"127.0.0.1:0", true},
		{"0.0.0.0:0", false},
	} {
		ln, err := net.Listen("tcp", c.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		if got := LoopbackOnly(ln); got != c.loopback {
			t.Errorf("LoopbackOnly(%s) = %v, want %v", ln.Addr(), got, c.loopback)
		}
		pr, err := DevAuthenticator(ln).Authenticate(httptest.NewRequest(http.MethodGet, "/admin/mode", nil))
		if err != nil || pr.Merchant != payments.DevMerchant || pr.Admin != c.loopback {
			t.Errorf("on %s: principal %+v, %v; want merchant %s, admin %v", ln.Addr(), pr, err, payments.DevMerchant, c.loopback)
		}
	}
}

// TestMissingDriverNamesTheTag: a binary built without a driver's tag
// stops with a configuration error that says which tag brings it in.
func TestMissingDriverNamesTheTag(t *testing.T) {
	cfg := &config.Config{MessageBusAdapter: "nope"}
	_, err := OpenTopic(context.Background(), cfg, "nope://topic")
	var ce ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "-tags payrail_full") || !strings.Contains(err.Error(), "MESSAGE_BUS_ADAPTER=nope") {
		t.Fatalf("OpenTopic with a driver not compiled in = %v, want a ConfigError naming the adapter and the tag", err)
	}
}
