package opsctl

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/payments"
)

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

// recordView is a record as printed (-o json of keys ls and keys show),
// with the response body only on request.
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

func (c *cli) keysListCommand() *cobra.Command {
	var (
		merchant, state        string
		onlyExpired, onlyStuck bool
		limit                  int
		out                    format
	)
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List idempotency records",
		Long: `List the records of the idempotency store, ordered by merchant and key.

FLAGS shows expired (past its retention: a new request with the key starts afresh; the
record only waits to be deleted) and stuck (in progress with a lapsed lease: the request
holding it crashed or hung; the client's retry with the same key takes it over).
-o json prints one record per line.`,
		Example: `  opsctl keys ls --stuck
  opsctl keys ls --merchant acme --state in_progress
  opsctl keys ls --expired --limit 20 -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := validState(state)
			if err != nil {
				return err
			}
			if limit <= 0 {
				return usagef("--limit must be positive")
			}
			s, err := c.openKeys()
			if err != nil {
				return err
			}
			defer s.Close()
			now := c.Now()
			var recs []*idempotency.Record
			err = each(c.ctx, s, idempotency.Filter{Merchant: merchant, State: st}, func(r *idempotency.Record) (bool, error) {
				if (onlyExpired && !expired(r, now)) || (onlyStuck && !stuck(r, now)) {
					return true, nil
				}
				recs = append(recs, r)
				return len(recs) < limit, nil
			})
			if err != nil {
				return fmt.Errorf("listing keys: %w", err)
			}
			if out == formatJSON {
				views := make([]recordView, len(recs))
				for i, r := range recs {
					views[i] = view(r, now, false)
				}
				return writeJSONLines(c.Stdout, views)
			}
			tw := table(c.Stdout)
			fmt.Fprintln(tw, "MERCHANT\tKEY\tSTATE\tFLAGS\tRESOURCE\tLEASE_EXPIRES\tEXPIRES")
			for _, r := range recs {
				lease := "-"
				if r.State == idempotency.StateInProgress {
					lease = ts(r.LeaseExpiresAt)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Merchant, r.Key, r.State, orDash(strings.Join(flagsOf(r, now), ",")),
					orDash(r.ResourceID), lease, ts(r.ExpiresAt))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(c.Stderr, "%d record(s)\n", len(recs))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&merchant, "merchant", "", "only this merchant's keys")
	f.StringVar(&state, "state", "", "only records in this state: in_progress or completed")
	_ = cmd.RegisterFlagCompletionFunc("state", fixedCompletion("in_progress", "completed"))
	f.BoolVar(&onlyExpired, "expired", false, "only records past their retention")
	f.BoolVar(&onlyStuck, "stuck", false, "only in-progress records whose lease lapsed (a crashed request)")
	f.IntVar(&limit, "limit", 100, "list at most N records")
	addOutput(cmd, &out, true)
	return needsConfig(cmd)
}

// readKey opens the idempotency store and reads the record of merchant
// and key. A missing record is an error whose message ends with notFound.
// The caller closes the store.
func (c *cli) readKey(merchant, key, notFound string) (*idempotency.Store, *idempotency.Record, error) {
	if merchant == "" {
		return nil, nil, usagef("--merchant is required")
	}
	s, err := c.openKeys()
	if err != nil {
		return nil, nil, err
	}
	r, err := s.Get(c.ctx, merchant, key)
	if err != nil {
		_ = s.Close()
		if errors.Is(err, idempotency.ErrNotFound) {
			return nil, nil, fmt.Errorf("no record for merchant %q key %q%s", merchant, key, notFound)
		}
		return nil, nil, fmt.Errorf("reading the key: %w", err)
	}
	return s, r, nil
}

func (c *cli) keysShowCommand() *cobra.Command {
	var (
		merchant string
		body     bool
		out      format
	)
	cmd := &cobra.Command{
		Use:   "show --merchant M KEY",
		Short: "Show one idempotency record",
		Long: `Show the record of one key: its state, lease, resource (the payment), the request's
fingerprint and the stored response's status and headers. The stored response body (the
API's response: never card data or secrets, but it may hold customer metadata) only with
--body.`,
		Example: `  opsctl keys show --merchant acme order-1001
  opsctl keys show --merchant acme order-1001 --body -o json`,
		Args: oneArg("KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, r, err := c.readKey(merchant, args[0], "")
			if err != nil {
				return err
			}
			defer s.Close()
			now := c.Now()
			v := view(r, now, body)
			if out == formatJSON {
				return writeJSON(c.Stdout, v)
			}
			tw := table(c.Stdout)
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
			if body && r.Response != nil {
				fmt.Fprintf(c.Stdout, "\n%s\n", r.Response.Body)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&merchant, "merchant", "", "the key's merchant (required)")
	cmd.Flags().BoolVar(&body, "body", false, "also print the stored response body")
	addOutput(cmd, &out, true)
	return needsConfig(cmd)
}

// maxFailedInARow is the number of failed deletions in a row after which
// keys purge stops: the store is likely down.
const maxFailedInARow = 5

// purgeItem is one expired record as keys purge reports it.
type purgeItem struct {
	Merchant  string    `json:"merchant"`
	Key       string    `json:"key"`
	State     string    `json:"state"`
	ExpiresAt time.Time `json:"expires_at"`
	// Action is "would delete", "deleted", "kept" (it changed since it was
	// read) or "failed" (Error says why).
	Action string `json:"action"`
	Error  string `json:"error,omitempty"`
}

// purgeReport is keys purge's -o json.
type purgeReport struct {
	DryRun  bool        `json:"dry_run"`
	Items   []purgeItem `json:"items"`
	Expired int         `json:"expired"`
	Deleted int         `json:"deleted"`
	Kept    int         `json:"kept"`
	Failed  int         `json:"failed"`
}

func (c *cli) keysPurgeCommand() *cobra.Command {
	var (
		merchant string
		out      format
	)
	cmd := &cobra.Command{
		Use:   "purge",
		Short: "Delete the records past their retention",
		Long: `Delete the records past their retention (expired). Always safe: an expired record is
never replayed, a new request with its key starts afresh whether or not it was deleted.
Schedule it (e.g. hourly) for PostgreSQL; Redis and DynamoDB delete expired records
themselves. Each deletion is a compare-and-delete: a record that changed since it was
read is kept and reported. A dry run unless --apply; a progress bar on a terminal.

Exit status 3 when some deletions failed and others succeeded.`,
		Example: `  opsctl keys purge                     # dry run: lists and counts
  opsctl keys purge --apply
  opsctl keys purge --merchant acme --apply -o json`,
		Args: noArgs,
	}
	ap := addApply(cmd, "delete them")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		doApply, err := ap.resolve()
		if err != nil {
			return err
		}
		s, err := c.openKeys()
		if err != nil {
			return err
		}
		defer s.Close()
		now := c.Now()
		rep := purgeReport{DryRun: !doApply, Items: []purgeItem{}}
		bar := c.progress(-1, "purging expired keys")
		failedInARow := 0
		err = each(c.ctx, s, idempotency.Filter{Merchant: merchant}, func(r *idempotency.Record) (bool, error) {
			_ = bar.Add(1)
			if !expired(r, now) {
				return true, nil
			}
			rep.Expired++
			it := purgeItem{Merchant: r.Merchant, Key: r.Key, State: string(r.State), ExpiresAt: r.ExpiresAt.UTC(), Action: "would delete"}
			if doApply {
				switch err := s.Delete(c.ctx, r); {
				case err == nil:
					rep.Deleted++
					it.Action, failedInARow = "deleted", 0
				case errors.Is(err, idempotency.ErrLeaseLost):
					rep.Kept++
					it.Action, failedInARow = "kept", 0
				default:
					rep.Failed++
					failedInARow++
					it.Action, it.Error = "failed", err.Error()
				}
				if failedInARow == maxFailedInARow {
					rep.Items = append(rep.Items, it)
					return false, fmt.Errorf("stopped after %d failed deletions in a row: %s", failedInARow, it.Error)
				}
			}
			rep.Items = append(rep.Items, it)
			return true, nil
		})
		_ = bar.Finish()
		if err != nil {
			err = fmt.Errorf("purging keys (after %d deleted): %w", rep.Deleted, err)
		} else if rep.Failed > 0 {
			err = fmt.Errorf("%d of %d expired record(s) could not be deleted", rep.Failed, rep.Expired)
		}
		if werr := c.printPurge(out, rep); werr != nil {
			return werr
		}
		return partial(rep.Deleted, err)
	}
	cmd.Flags().StringVar(&merchant, "merchant", "", "only this merchant's keys")
	addOutput(cmd, &out, false)
	return needsConfig(cmd)
}

func (c *cli) printPurge(out format, rep purgeReport) error {
	if out == formatJSON {
		return writeJSON(c.Stdout, rep)
	}
	if len(rep.Items) > 0 {
		tw := table(c.Stdout)
		fmt.Fprintln(tw, "MERCHANT\tKEY\tSTATE\tEXPIRED\tACTION")
		for _, it := range rep.Items {
			action := it.Action
			if it.Error != "" {
				action += ": " + it.Error
			} else if it.Action == "kept" {
				action += ": it changed since it was read"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", it.Merchant, it.Key, it.State, ts(it.ExpiresAt), action)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if rep.DryRun {
		fmt.Fprintf(c.Stdout, "-- dry run: %d expired record(s) would be deleted; add --apply to delete them\n", rep.Expired)
		return nil
	}
	fmt.Fprintf(c.Stdout, "-- %d expired record(s) deleted, %d kept because they changed, %d failed\n", rep.Deleted, rep.Kept, rep.Failed)
	return nil
}

// releaseReport is keys release's -o json.
type releaseReport struct {
	DryRun         bool      `json:"dry_run"`
	Merchant       string    `json:"merchant"`
	Key            string    `json:"key"`
	ResourceID     string    `json:"resource_id,omitempty"`
	LeaseExpiresAt time.Time `json:"lease_expires_at"`
	// Action is "would release" or "released".
	Action   string   `json:"action"`
	Warnings []string `json:"warnings,omitempty"`
}

func (c *cli) keysReleaseCommand() *cobra.Command {
	var (
		merchant string
		force    bool
		out      format
	)
	cmd := &cobra.Command{
		Use:   "release --merchant M KEY",
		Short: "Delete a stuck in-progress record so its key can be reused",
		Long: `Delete the in-progress record of a crashed request so that its key can be used again.
Needed only when the client will not retry with the same payload: a retry with the same
key takes the record over once its lease lapses and resumes the same payment.

Refused when the record is not in progress, while its lease is live (a request may still
be executing it), and — when PAYMENTS_STORE_URL names a shared payment store — while the
payment the record was creating exists (a request reusing the key after a release would
start a new payment). --force overrides the last two, with a warning on stderr for each.
A dry run unless --apply.`,
		Example: `  opsctl keys release --merchant acme order-1001           # dry run, or why it refuses
  opsctl keys release --merchant acme order-1001 --apply`,
		Args: oneArg("KEY"),
	}
	ap := addApply(cmd, "release it")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		doApply, err := ap.resolve()
		if err != nil {
			return err
		}
		s, r, err := c.readKey(merchant, args[0], ": nothing to release")
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
			if !force {
				return fmt.Errorf("refused: %s %s: %s (wait for the lease to lapse, or --force)", r.Merchant, r.Key, msg)
			}
			warnings = append(warnings, msg)
		}
		if msg, err := c.paymentExists(r); err != nil {
			return err
		} else if msg != "" {
			if !force {
				return fmt.Errorf("refused: %s %s: %s; a client retrying with the same key resumes that payment, while a request reusing the key after a release would start a new one (--force to release anyway)", r.Merchant, r.Key, msg)
			}
			warnings = append(warnings, msg)
		}
		for _, w := range warnings {
			fmt.Fprintf(c.Stderr, "opsctl: warning: --force: %s\n", w)
		}
		rep := releaseReport{DryRun: !doApply, Merchant: r.Merchant, Key: r.Key, ResourceID: r.ResourceID,
			LeaseExpiresAt: r.LeaseExpiresAt.UTC(), Action: "would release", Warnings: warnings}
		if doApply {
			if err := s.Delete(c.ctx, r); err != nil {
				if errors.Is(err, idempotency.ErrLeaseLost) {
					return fmt.Errorf("not released: %s %s changed since it was read (a retry took it over, or it completed)", r.Merchant, r.Key)
				}
				return fmt.Errorf("releasing %s %s: %w", r.Merchant, r.Key, err)
			}
			rep.Action = "released"
		}
		switch {
		case out == formatJSON:
			return writeJSON(c.Stdout, rep)
		case doApply:
			fmt.Fprintf(c.Stdout, "released %s %s\n", r.Merchant, r.Key)
		default:
			fmt.Fprintf(c.Stdout, "would release %s %s (in progress, resource %s, lease expired %s); add --apply to release it\n",
				r.Merchant, r.Key, orDash(r.ResourceID), ts(r.LeaseExpiresAt))
		}
		return nil
	}
	cmd.Flags().StringVar(&merchant, "merchant", "", "the key's merchant (required)")
	cmd.Flags().BoolVar(&force, "force", false, "release even if the lease is live or the payment exists")
	addOutput(cmd, &out, false)
	return needsConfig(cmd)
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
