// Package opsctl is payrail's operations CLI, run by the command
// examples/opsctl, built on github.com/spf13/cobra: it inspects and cleans
// the idempotency store named by IDEMPOTENCY_URL (the operations guide's
// runbook "clean orphan keys only if safe"), applies the PostgreSQL
// schemas, provisions the message bus and inspects and redrives its
// dead-letter queue, inspects and redelivers merchant webhook events, and
// checks a deployment's configuration. See
// docs/opsctl.md for every command, flag, output format and exit status.
//
//	opsctl keys ls      [--merchant M] [--state in_progress|completed] [--expired] [--stuck] [--limit N] [-o json|table]
//	opsctl keys show    --merchant M [--body] [-o json|table] KEY
//	opsctl keys purge   [--merchant M] [--apply] [-o json|table]
//	opsctl keys release --merchant M [--force] [--apply] [-o json|table] KEY
//	opsctl db migrate   [--apply] [-o json|table]
//	opsctl bus provision [--max-attempts N] [--ack-deadline D] [--ordered] [--partitions N] [--dead-letter-topic T] [--apply]
//	opsctl bus stats
//	opsctl bus dlq ls   [--limit N] [--body]
//	opsctl bus dlq redrive [--limit N] [--apply]
//	opsctl events pending  [--limit N]
//	opsctl events list     MERCHANT PAYMENT_ID
//	opsctl events inspect  MERCHANT PAYMENT_ID EVENT_ID
//	opsctl events redeliver MERCHANT PAYMENT_ID EVENT_ID [--endpoint ID | --all] [--apply]
//	opsctl config check
//	opsctl probe        [--timeout D] URL
//	opsctl completion   bash|zsh|fish|powershell
//
// Every command that changes something is a dry run unless --apply (or
// --dry-run=false) is given: it prints what it would do. Deletions are
// compare-and-delete: a record that changed since it was read (a retry took
// over its lease, it completed) is left alone and reported.
//
// keys release deletes an in-progress record whose lease has lapsed (its
// request crashed), so that its key can be used again. It refuses while the
// lease is live, and — when PAYMENTS_STORE_URL names a shared payment store
// — while the payment the record was creating exists, because a request
// reusing the key after the release starts a new payment; a client that
// simply retries with the same key resumes the crashed request and needs no
// release. --force overrides both checks.
package opsctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/payrail/payrail/examples/internal/config"

	// The same drivers as the server and worker.
	_ "github.com/payrail/payrail/examples/internal/drivers"
)

// Exit statuses; docs/opsctl.md documents them for scripts.
const (
	// ExitOK: the command did what it was asked (or, dry run, would).
	ExitOK = 0
	// ExitFailed: the command failed or refused (an unsafe release, a store
	// or broker error) and changed nothing.
	ExitFailed = 1
	// ExitUsage: bad arguments, flags or configuration; nothing was tried.
	ExitUsage = 2
	// ExitPartial: the command changed some items and failed on others (a
	// purge whose deletes partly failed, a redrive or a migration that
	// stopped half-way, a provisioning that created some entities and
	// failed on the next). Its output says which.
	ExitPartial = 3
)

// Env is what Run reads besides its arguments.
type Env struct {
	// Config supplies IDEMPOTENCY_URL, PAYMENTS_STORE_URL and the bus
	// settings. If nil, LoadConfig is called by the commands that need it
	// (help, completion and probe do not).
	Config *config.Config
	// LoadConfig loads the configuration when Config is nil (config.Load
	// in the command); its error is a usage error (exit status 2).
	LoadConfig func() (*config.Config, error)
	// Stdout and Stderr receive the output and the diagnostics; progress
	// bars go to Stderr only when it is a terminal.
	Stdout, Stderr io.Writer
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// cli is one run of the command: its environment and the loaded
// configuration.
type cli struct {
	Env
	ctx context.Context
}

// errUsage marks a usage or configuration error (exit status 2).
type errUsage struct{ msg string }

func (e errUsage) Error() string { return e.msg }

func usagef(format string, args ...any) error { return errUsage{fmt.Sprintf(format, args...)} }

// errPartial marks a failure after some items were changed (exit status 3).
type errPartial struct{ err error }

func (e errPartial) Error() string { return e.err.Error() }
func (e errPartial) Unwrap() error { return e.err }

// partial returns err as a partial failure when done items were changed
// before it, else err itself.
func partial(done int, err error) error {
	if err == nil || done == 0 {
		return err
	}
	return errPartial{err}
}

// Run executes the command in args (without the program name) and returns
// its exit status (ExitOK, ExitFailed, ExitUsage or ExitPartial). Errors go
// to env.Stderr as "opsctl: ...", usage errors with a pointer to --help.
func Run(ctx context.Context, env Env, args []string) int {
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.Stdout == nil {
		env.Stdout = io.Discard
	}
	if env.Stderr == nil {
		env.Stderr = io.Discard
	}
	c := &cli{Env: env, ctx: ctx}
	root := c.command()
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(env.Stderr, "opsctl: %v\n", err)
	var u errUsage
	if errors.As(err, &u) {
		if cmd != nil {
			fmt.Fprintf(env.Stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
		return ExitUsage
	}
	var p errPartial
	if errors.As(err, &p) {
		return ExitPartial
	}
	return ExitFailed
}

// loadConfig sets c.Config from LoadConfig unless it is set.
func (c *cli) loadConfig() error {
	if c.Config != nil {
		return nil
	}
	if c.LoadConfig == nil {
		return usagef("no configuration")
	}
	cfg, err := c.LoadConfig()
	if err != nil {
		return usagef("%v", err)
	}
	c.Config = cfg
	return nil
}

func scheme(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Scheme
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
