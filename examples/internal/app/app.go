// Package app holds what payrail's reference binaries, examples/server and
// examples/worker, share: the process entry point with its signal handling
// and exit statuses, configuration errors, ordered shutdown of resources,
// and the setup of logging, telemetry, metrics, the gateway, the
// idempotency store, the bus topic and the payments processor.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/payrail/payrail/examples/internal/config"
)

// Version is the version of the binaries, stamped at link time by the
// container build (Dockerfile):
//
//	-ldflags "-X github.com/payrail/payrail/examples/internal/app.Version=v1.2.3"
//
// The server and the worker log it when they start.
var Version = "dev"

// Main runs a binary: it loads the configuration (config.Load) and calls
// run with a context that is cancelled on the first SIGTERM or SIGINT; a
// second signal kills the process at once. Errors are printed to Stderr
// prefixed with serviceName. Main returns the exit status: 0 after a clean
// shutdown, 1 on a runtime failure, 2 on a configuration error (see
// ExitCode).
func Main(serviceName string, run func(ctx context.Context, cfg *config.Config) error) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		// After the first signal, restore the default behaviour so that a
		// second one kills the process.
		<-ctx.Done()
		stop()
	}()
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", serviceName, err)
		return 2
	}
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", serviceName, err)
		return ExitCode(err)
	}
	return 0
}

// ConfigError marks an error caused by the configuration: a binary that
// fails with one exits with status 2.
type ConfigError struct {
	// Err is the underlying error.
	Err error
}

// Error returns the underlying error's message.
func (e ConfigError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e ConfigError) Unwrap() error { return e.Err }

// ExitCode returns the exit status for a non-nil error returned by a run
// function: 2 if err is or wraps a ConfigError, 1 otherwise.
func ExitCode(err error) int {
	if errors.As(err, new(ConfigError)) {
		return 2
	}
	return 1
}

// tagHint ends the error for a driver the binary lacks: the reference
// binaries compile the heavy drivers in only with build tags.
const tagHint = " (the reference binaries include it when built with -tags payrail_full, or with the driver's own tag such as payrail_kafka: see examples/internal/drivers)"

// OpenError wraps err, the error of opening what the environment variable
// variable names, with that variable's name. If err is unknownDriver (the
// driver registry's error for a URL scheme whose driver is not compiled
// in), the result is a ConfigError.
func OpenError(variable string, err, unknownDriver error) error {
	err = fmt.Errorf("%s: %w", variable, err)
	if errors.Is(err, unknownDriver) {
		// The reference binaries compile the heavy drivers in only with
		// build tags (examples/internal/drivers).
		return ConfigError{fmt.Errorf("%w%s", err, tagHint)}
	}
	return err
}

// Closers closes resources in the reverse order of their creation. The
// zero value is empty and ready to use.
type Closers struct {
	list []namedCloser
}

type namedCloser struct {
	name  string
	close func() error
}

// Add registers close, which closes the resource name describes.
func (c *Closers) Add(name string, close func() error) {
	c.list = append(c.list, namedCloser{name, close})
}

// CloseAll closes everything registered, last added first, logging each
// step to log, and returns the errors joined.
func (c *Closers) CloseAll(log *slog.Logger) error {
	var errs []error
	for i := len(c.list) - 1; i >= 0; i-- {
		if err := c.list[i].close(); err != nil {
			log.Error("shutdown: closing "+c.list[i].name+" failed", "error", err)
			errs = append(errs, fmt.Errorf("closing %s: %w", c.list[i].name, err))
			continue
		}
		log.Info("shutdown: closed " + c.list[i].name)
	}
	return errors.Join(errs...)
}
