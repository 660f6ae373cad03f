// Package opsctl is payrail's operations CLI, run by the command
// examples/opsctl: it inspects and cleans the idempotency store named by
// IDEMPOTENCY_URL (the operations guide's runbook "clean orphan keys only
// if safe") and applies the PostgreSQL schemas. See docs/operations.md.
//
//	opsctl keys ls      [--merchant M] [--state in_progress|completed] [--expired] [--stuck] [--limit N] [--json]
//	opsctl keys show    --merchant M [--body] [--json] KEY
//	opsctl keys purge   [--merchant M] [--apply]
//	opsctl keys release --merchant M [--force] [--apply] KEY
//	opsctl db migrate   [--apply]
//	opsctl bus provision [--max-attempts N] [--ack-deadline D] [--ordered] [--partitions N] [--dead-letter-topic T] [--apply]
//	opsctl config check
//	opsctl probe        [--timeout D] URL
//
// Every command that changes something is a dry run unless --apply is
// given: it prints what it would do. Deletions are compare-and-delete: a
// record that changed since it was read (a retry took over its lease, it
// completed) is left alone and reported.
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
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/payrail/payrail/examples/internal/config"
	"github.com/payrail/payrail/idempotency"
	idempostgres "github.com/payrail/payrail/idempotency/postgres"
	"github.com/payrail/payrail/payments"
	paypostgres "github.com/payrail/payrail/payments/postgres"

	// The same drivers as the server and worker.
	_ "github.com/payrail/payrail/examples/internal/drivers"
)

// Exit statuses.
const (
	// ExitOK: the command did what it was asked (or, dry run, would).
	ExitOK = 0
	// ExitFailed: the command failed or refused (an unsafe release, a store
	// error).
	ExitFailed = 1
	// ExitUsage: bad arguments or configuration.
	ExitUsage = 2
)

// Usage is the command's help text.
const Usage = `usage: opsctl <command> [flags]

Idempotency keys (the store named by IDEMPOTENCY_URL):
  keys ls      [--merchant M] [--state in_progress|completed] [--expired] [--stuck] [--limit N] [--json]
               list records, ordered by merchant and key; --expired: past their retention,
               --stuck: in progress with a lapsed lease (a crashed request)
  keys show    --merchant M [--body] [--json] KEY
               one record; --body also prints the stored response body
  keys purge   [--merchant M] [--apply]
               delete records past their retention (expired)
  keys release --merchant M [--force] [--apply] KEY
               delete a stuck in-progress record so its key can be reused; refused while
               its lease is live or its payment exists (see docs/operations.md) unless --force

Schemas:
  db migrate   [--apply]
               apply the PostgreSQL schemas of IDEMPOTENCY_URL and PAYMENTS_STORE_URL

Message bus (kafka, pubsub, servicebus, sns-sqs):
  bus provision [--max-attempts N] [--ack-deadline D] [--ordered] [--partitions N]
                [--dead-letter-topic T] [--apply]
               create, or check and update, the topic and the worker's subscription with its
               dead-letter queue (bus.Provision): kafka the topic and its .dlq topic, pubsub the
               subscription's dead-letter policy and topic, servicebus the queue or topic and
               subscription (MaxDeliveryCount, LockDuration, sessions); --max-attempts 0 means
               unlimited where the bus allows it, else its maximum
` + UsageSNSSQS + `
Dead letters (any bus with a dead-letter queue; dlq.go):
  bus stats    backlog, in-flight, dead-letter counts and oldest message age of the worker's
               subscription (unknown where the bus cannot tell)
  bus dlq ls   [--limit N] [--body] [--json]
               list dead letters: id, payment, attempts, trace id, reason
  bus dlq redrive [--limit N] [--apply]
               move dead letters back for redelivery (all, or the first N); prints per message
               its payment's status and failure code (PAYMENTS_STORE_URL) and whether the
               worker reprocesses it (a retryable failure) or skips it (a final outcome)

` + UsageDeploy + `
Commands that change something are dry runs unless --apply is given.
`

// Env is what Run reads besides its arguments.
type Env struct {
	// Config supplies IDEMPOTENCY_URL and PAYMENTS_STORE_URL.
	Config *config.Config
	// Stdout and Stderr receive the output and the diagnostics.
	Stdout, Stderr io.Writer
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

type cli struct {
	Env
	ctx context.Context
}

// errUsage marks a usage error (exit status 2).
type errUsage struct{ msg string }

func (e errUsage) Error() string { return e.msg }

func usagef(format string, args ...any) error { return errUsage{fmt.Sprintf(format, args...)} }

// Run executes the command in args (without the program name) and returns
// its exit status.
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
	err := c.dispatch(args)
	if err == nil {
		return ExitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(env.Stdout, Usage)
		return ExitOK
	}
	fmt.Fprintf(env.Stderr, "opsctl: %v\n", err)
	var u errUsage
	if errors.As(err, &u) {
		fmt.Fprint(env.Stderr, "\n"+Usage)
		return ExitUsage
	}
	return ExitFailed
}

func (c *cli) dispatch(args []string) error {
	if len(args) == 0 {
		return usagef("no command")
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		return flag.ErrHelp
	}
	if args[0] == "probe" {
		return c.probe(args[1:]) // deploy.go
	}
	if len(args) < 2 {
		return usagef("%q needs a subcommand", args[0])
	}
	rest := args[2:]
	switch args[0] + " " + args[1] {
	case "keys ls", "keys list":
		return c.keysList(rest)
	case "keys show":
		return c.keysShow(rest)
	case "keys purge":
		return c.keysPurge(rest)
	case "keys release":
		return c.keysRelease(rest)
	case "db migrate":
		return c.dbMigrate(rest)
	case "bus provision":
		return c.busProvisionFor(rest) // snssqs.go: sns-sqs there, others in bus.go
	case "bus stats", "bus dlq":
		return c.busCommand(args[1:]) // dlq.go
	case "config check":
		return c.configCheck(rest) // deploy.go
	}
	return usagef("unknown command %q", args[0]+" "+args[1])
}

func (c *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parse parses flags given before or after the positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%s: %v", fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// parseNoArgs parses the flags of a command that takes no positional
// arguments.
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("%s takes no arguments, got %q", fs.Name(), pos)
	}
	return nil
}

// openKeys opens the idempotency store; memory:// is refused, since it
// lives inside the server process.
func (c *cli) openKeys() (*idempotency.Store, error) {
	u := c.Config.IdempotencyURL
	if scheme(u) == "memory" {
		return nil, usagef("IDEMPOTENCY_URL is memory://: that store lives inside the server process and cannot be inspected from outside; set IDEMPOTENCY_URL to the shared store (redis://, postgres://, dynamodb://)")
	}
	s, err := idempotency.Open(c.ctx, u)
	if err != nil {
		if errors.Is(err, idempotency.ErrUnknownDriver) {
			return nil, usagef("IDEMPOTENCY_URL: %v", err)
		}
		return nil, fmt.Errorf("IDEMPOTENCY_URL: %w", err)
	}
	return s, nil
}

func scheme(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Scheme
}

func validState(s string) (idempotency.State, error) {
	switch idempotency.State(s) {
	case "", idempotency.StateInProgress, idempotency.StateCompleted:
		return idempotency.State(s), nil
	}
	return "", usagef("--state %q: want in_progress or completed", s)
}

// expired reports whether r is past its retention.
func expired(r *idempotency.Record, now time.Time) bool { return !now.Before(r.ExpiresAt) }

// stuck reports whether r is in progress with a lapsed lease.
func stuck(r *idempotency.Record, now time.Time) bool {
	return r.State == idempotency.StateInProgress && !now.Before(r.LeaseExpiresAt) && !expired(r, now)
}

// each calls fn for every record matching f, page by page.
func each(ctx context.Context, s *idempotency.Store, f idempotency.Filter, fn func(*idempotency.Record) (bool, error)) error {
	f.Limit = 500
	for {
		page, err := s.List(ctx, f)
		if err != nil {
			return err
		}
		for _, r := range page {
			more, err := fn(r)
			if err != nil || !more {
				return err
			}
		}
		if len(page) < f.Limit {
			return nil
		}
		last := page[len(page)-1]
		f.AfterMerchant, f.AfterKey = last.Merchant, last.Key
	}
}

// recordView is a record as printed, without the response body.
type recordView struct {
	Merchant       string            `json:"merchant"`
	Key            string            `json:"key"`
	State          string            `json:"state"`
	Flags          []string          `json:"flags,omitempty"`
	ResourceID     string            `json:"resource_id,omitempty"`
	Fingerprint    string            `json:"fingerprint"`
	CreatedAt      time.Time         `json:"created_at"`
	LeaseExpiresAt *time.Time        `json:"lease_expires_at,omitempty"`
	ExpiresAt      time.Time         `json:"expires_at"`
	Status         int               `json:"status,omitempty"`
	Header         map[string]string `json:"header,omitempty"`
	BodyBytes      *int              `json:"body_bytes,omitempty"`
	Body           *string           `json:"body,omitempty"`
}

func flagsOf(r *idempotency.Record, now time.Time) []string {
	var out []string
	if expired(r, now) {
		out = append(out, "expired")
	}
	if stuck(r, now) {
		out = append(out, "stuck")
	}
	return out
}

func view(r *idempotency.Record, now time.Time, body bool) recordView {
	v := recordView{Merchant: r.Merchant, Key: r.Key, State: string(r.State), Flags: flagsOf(r, now),
		ResourceID: r.ResourceID, Fingerprint: r.Fingerprint, CreatedAt: r.CreatedAt.UTC(), ExpiresAt: r.ExpiresAt.UTC()}
	if r.State == idempotency.StateInProgress {
		l := r.LeaseExpiresAt.UTC()
		v.LeaseExpiresAt = &l
	}
	if r.Response != nil {
		v.Status = r.Response.StatusCode
		v.Header = r.Response.Header
		n := len(r.Response.Body)
		v.BodyBytes = &n
		if body {
			b := string(r.Response.Body)
			v.Body = &b
		}
	}
	return v
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func (c *cli) keysList(args []string) error {
	fs := c.flags("keys ls")
	merchant := fs.String("merchant", "", "only this merchant's keys")
	state := fs.String("state", "", "in_progress or completed")
	onlyExpired := fs.Bool("expired", false, "only records past their retention")
	onlyStuck := fs.Bool("stuck", false, "only in-progress records whose lease lapsed")
	limit := fs.Int("limit", 100, "at most this many records")
	asJSON := fs.Bool("json", false, "one JSON object per line")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	st, err := validState(*state)
	if err != nil {
		return err
	}
	if *limit <= 0 {
		return usagef("--limit must be positive")
	}
	s, err := c.openKeys()
	if err != nil {
		return err
	}
	defer s.Close()
	now := c.Now()
	var recs []*idempotency.Record
	err = each(c.ctx, s, idempotency.Filter{Merchant: *merchant, State: st}, func(r *idempotency.Record) (bool, error) {
		if (*onlyExpired && !expired(r, now)) || (*onlyStuck && !stuck(r, now)) {
			return true, nil
		}
		recs = append(recs, r)
		return len(recs) < *limit, nil
	})
	if err != nil {
		return fmt.Errorf("listing keys: %w", err)
	}
	if *asJSON {
		views := make([]recordView, len(recs))
		for i, r := range recs {
			views[i] = view(r, now, false)
		}
		return writeJSONLines(c.Stdout, views)
	}
	tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MERCHANT\tKEY\tSTATE\tFLAGS\tRESOURCE\tLEASE_EXPIRES\tEXPIRES")
	for _, r := range recs {
		lease := "-"
		if r.State == idempotency.StateInProgress {
			lease = ts(r.LeaseExpiresAt)
		}
		flags := strings.Join(flagsOf(r, now), ",")
		if flags == "" {
			flags = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Merchant, r.Key, r.State, flags, orDash(r.ResourceID), lease, ts(r.ExpiresAt))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.Stderr, "%d record(s)\n", len(recs))
	return nil
}

// writeJSONLines writes each of vs to w as a JSON object on a line.
func writeJSONLines[T any](w io.Writer, vs []T) error {
	enc := json.NewEncoder(w)
	for _, v := range vs {
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// readKey parses the flags of a command on one key (fs, given its other
// flags, gets --merchant here; the KEY is the one positional argument),
// opens the idempotency store and reads the key's record. A missing record
// is an error whose message ends with notFound. The caller closes the
// store.
func (c *cli) readKey(fs *flag.FlagSet, args []string, notFound string) (*idempotency.Store, *idempotency.Record, error) {
	merchant := fs.String("merchant", "", "the key's merchant (required)")
	pos, err := parse(fs, args)
	if err != nil {
		return nil, nil, err
	}
	if *merchant == "" {
		return nil, nil, usagef("%s needs --merchant", fs.Name())
	}
	if len(pos) != 1 {
		return nil, nil, usagef("%s needs exactly one KEY argument", fs.Name())
	}
	s, err := c.openKeys()
	if err != nil {
		return nil, nil, err
	}
	r, err := s.Get(c.ctx, *merchant, pos[0])
	if err != nil {
		_ = s.Close()
		if errors.Is(err, idempotency.ErrNotFound) {
			return nil, nil, fmt.Errorf("no record for merchant %q key %q%s", *merchant, pos[0], notFound)
		}
		return nil, nil, fmt.Errorf("reading the key: %w", err)
	}
	return s, r, nil
}

func (c *cli) keysShow(args []string) error {
	fs := c.flags("keys show")
	body := fs.Bool("body", false, "also print the stored response body")
	asJSON := fs.Bool("json", false, "print JSON")
	s, r, err := c.readKey(fs, args, "")
	if err != nil {
		return err
	}
	defer s.Close()
	now := c.Now()
	v := view(r, now, *body)
	if *asJSON {
		enc := json.NewEncoder(c.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("merchant", r.Merchant)
	row("key", r.Key)
	row("state", string(r.State))
	row("flags", orDash(strings.Join(v.Flags, ",")))
	row("resource", orDash(r.ResourceID))
	row("fingerprint", r.Fingerprint)
	row("created", ts(r.CreatedAt))
	if r.State == idempotency.StateInProgress {
		lease := ts(r.LeaseExpiresAt)
		if now.Before(r.LeaseExpiresAt) {
			lease += fmt.Sprintf(" (live, %s left)", r.LeaseExpiresAt.Sub(now).Round(time.Second))
		} else {
			lease += fmt.Sprintf(" (lapsed %s ago)", now.Sub(r.LeaseExpiresAt).Round(time.Second))
		}
		row("lease expires", lease)
	}
	row("expires", ts(r.ExpiresAt))
	if r.Response != nil {
		row("status", fmt.Sprint(r.Response.StatusCode))
		for k, hv := range r.Response.Header {
			row("header "+k, hv)
		}
		row("body bytes", fmt.Sprint(len(r.Response.Body)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if *body && r.Response != nil {
		fmt.Fprintf(c.Stdout, "\n%s\n", r.Response.Body)
	}
	return nil
}

func (c *cli) keysPurge(args []string) error {
	fs := c.flags("keys purge")
	merchant := fs.String("merchant", "", "only this merchant's keys")
	apply := fs.Bool("apply", false, "delete (default: dry run)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	s, err := c.openKeys()
	if err != nil {
		return err
	}
	defer s.Close()
	now := c.Now()
	var found, deleted, changed int
	err = each(c.ctx, s, idempotency.Filter{Merchant: *merchant}, func(r *idempotency.Record) (bool, error) {
		if !expired(r, now) {
			return true, nil
		}
		found++
		if !*apply {
			fmt.Fprintf(c.Stdout, "would delete %s %s (%s, expired %s)\n", r.Merchant, r.Key, r.State, ts(r.ExpiresAt))
			return true, nil
		}
		switch err := s.Delete(c.ctx, r); {
		case err == nil:
			deleted++
			fmt.Fprintf(c.Stdout, "deleted %s %s\n", r.Merchant, r.Key)
		case errors.Is(err, idempotency.ErrLeaseLost):
			changed++
			fmt.Fprintf(c.Stdout, "kept %s %s: it changed since it was read\n", r.Merchant, r.Key)
		default:
			return false, fmt.Errorf("deleting %s %s: %w", r.Merchant, r.Key, err)
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("purging keys: %w", err)
	}
	if !*apply {
		fmt.Fprintf(c.Stdout, "dry run: %d expired record(s) would be deleted; add --apply to delete them\n", found)
		return nil
	}
	fmt.Fprintf(c.Stdout, "%d expired record(s) deleted, %d kept because they changed\n", deleted, changed)
	return nil
}

func (c *cli) keysRelease(args []string) error {
	fs := c.flags("keys release")
	force := fs.Bool("force", false, "release even if the lease is live or the payment exists")
	apply := fs.Bool("apply", false, "release (default: dry run)")
	s, r, err := c.readKey(fs, args, ": nothing to release")
	if err != nil {
		return err
	}
	defer s.Close()
	now := c.Now()
	if r.State != idempotency.StateInProgress {
		return fmt.Errorf("refused: %s %s is %s, not in progress: its stored result is replayed to retries (expired records are removed by `keys purge`)", r.Merchant, r.Key, r.State)
	}
	var warnings []string
	if now.Before(r.LeaseExpiresAt) {
		msg := fmt.Sprintf("its lease is live for %s more: a request may still be executing it", r.LeaseExpiresAt.Sub(now).Round(time.Second))
		if !*force {
			return fmt.Errorf("refused: %s %s: %s (wait for the lease to lapse, or --force)", r.Merchant, r.Key, msg)
		}
		warnings = append(warnings, msg)
	}
	if msg, err := c.paymentExists(r); err != nil {
		return err
	} else if msg != "" {
		if !*force {
			return fmt.Errorf("refused: %s %s: %s; a client retrying with the same key resumes that payment, while a request reusing the key after a release would start a new one (--force to release anyway)", r.Merchant, r.Key, msg)
		}
		warnings = append(warnings, msg)
	}
	for _, w := range warnings {
		fmt.Fprintf(c.Stderr, "opsctl: warning: --force: %s\n", w)
	}
	if !*apply {
		fmt.Fprintf(c.Stdout, "would release %s %s (in progress, resource %s, lease expired %s); add --apply to release it\n",
			r.Merchant, r.Key, orDash(r.ResourceID), ts(r.LeaseExpiresAt))
		return nil
	}
	if err := s.Delete(c.ctx, r); err != nil {
		if errors.Is(err, idempotency.ErrLeaseLost) {
			return fmt.Errorf("not released: %s %s changed since it was read (a retry took it over, or it completed)", r.Merchant, r.Key)
		}
		return fmt.Errorf("releasing %s %s: %w", r.Merchant, r.Key, err)
	}
	fmt.Fprintf(c.Stdout, "released %s %s\n", r.Merchant, r.Key)
	return nil
}

// paymentExists looks up the record's payment in a shared payment store
// (PAYMENTS_STORE_URL other than memory://) and describes it if it exists.
func (c *cli) paymentExists(r *idempotency.Record) (string, error) {
	u := c.Config.PaymentsStoreURL
	if r.ResourceID == "" || u == "" || scheme(u) == "memory" {
		return "", nil
	}
	ps, err := payments.OpenStore(c.ctx, u)
	if err != nil {
		return "", fmt.Errorf("PAYMENTS_STORE_URL (checking the record's payment): %w", err)
	}
	defer ps.Close()
	p, err := ps.Get(c.ctx, r.Merchant, r.ResourceID)
	if errors.Is(err, payments.ErrStoreNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("checking payment %s: %w", r.ResourceID, err)
	}
	return fmt.Sprintf("its payment %s exists (status %s)", p.ID, p.Status), nil
}

func (c *cli) dbMigrate(args []string) error {
	fs := c.flags("db migrate")
	apply := fs.Bool("apply", false, "apply (default: print the SQL)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	type target struct {
		variable, url string
		sql           func(table string) (string, error)
		migrate       func(ctx context.Context, url string) error
	}
	var targets []target
	for _, t := range []target{
		{"IDEMPOTENCY_URL", c.Config.IdempotencyURL, idempostgres.SchemaSQL, idempostgres.Migrate},
		{"PAYMENTS_STORE_URL", c.Config.PaymentsStoreURL, paypostgres.SchemaSQL, paypostgres.Migrate},
	} {
		if s := scheme(t.url); s == "postgres" || s == "postgresql" {
			targets = append(targets, t)
		}
	}
	if len(targets) == 0 {
		fmt.Fprintln(c.Stdout, "nothing to migrate: neither IDEMPOTENCY_URL nor PAYMENTS_STORE_URL is a postgres:// URL (memory and redis need no schema; DynamoDB tables come from infrastructure code)")
		return nil
	}
	for _, t := range targets {
		u, _ := url.Parse(t.url)
		if !*apply {
			sql, err := t.sql(u.Query().Get("table"))
			if err != nil {
				return fmt.Errorf("%s: %w", t.variable, err)
			}
			fmt.Fprintf(c.Stdout, "-- %s (%s): would apply\n%s\n", t.variable, config.Redact(t.url), sql)
			continue
		}
		if err := t.migrate(c.ctx, t.url); err != nil {
			return fmt.Errorf("%s: %w", t.variable, err)
		}
		fmt.Fprintf(c.Stdout, "%s (%s): schema applied\n", t.variable, config.Redact(t.url))
	}
	if !*apply {
		fmt.Fprintln(c.Stdout, "-- dry run: add --apply to apply")
	}
	return nil
}
