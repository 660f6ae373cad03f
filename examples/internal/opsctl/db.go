package opsctl

import (
	"context"
	"fmt"
	"net/url"

	"github.com/spf13/cobra"

	"github.com/payrail/payrail/examples/internal/config"
	idempostgres "github.com/payrail/payrail/idempotency/postgres"
	paypostgres "github.com/payrail/payrail/payments/postgres"
)

// migrateTarget is one store db migrate applies a schema to, as -o json
// reports it.
type migrateTarget struct {
	Variable string `json:"variable"`
	URL      string `json:"url"` // redacted
	// Action is "would apply", "applied" or "failed" (Error says why);
	// "not tried" for the stores after a failure.
	Action string `json:"action"`
	SQL    string `json:"sql,omitempty"` // dry run
	Error  string `json:"error,omitempty"`
}

// migrateReport is db migrate's -o json.
type migrateReport struct {
	DryRun  bool            `json:"dry_run"`
	Targets []migrateTarget `json:"targets"`
}

func (c *cli) dbMigrateCommand() *cobra.Command {
	var out format
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the PostgreSQL schemas of IDEMPOTENCY_URL and PAYMENTS_STORE_URL",
		Long: `Apply the PostgreSQL schemas of IDEMPOTENCY_URL and PAYMENTS_STORE_URL (the postgres://
ones; memory and redis need no schema, DynamoDB tables come from infrastructure code).
Idempotent, in a transaction under an advisory lock: safe from several pods at once. Run
it when deploying and after upgrading payrail. A dry run prints the SQL; --apply applies
it, with a progress bar on a terminal.

Exit status 3 when the first store's schema was applied and the second's failed.`,
		Example: `  opsctl db migrate            # prints the SQL it would run
  opsctl db migrate --apply`,
		Args: noArgs,
	}
	ap := addApply(cmd, "apply the schemas")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		doApply, err := ap.resolve()
		if err != nil {
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
		rep := migrateReport{DryRun: !doApply, Targets: []migrateTarget{}}
		var bar interface {
			Add(int) error
			Finish() error
		}
		if doApply && len(targets) > 0 {
			bar = c.progress(len(targets), "applying schemas")
		}
		applied := 0
		var failure error
		for _, t := range targets {
			mt := migrateTarget{Variable: t.variable, URL: config.Redact(t.url)}
			switch {
			case failure != nil:
				mt.Action = "not tried"
			case !doApply:
				u, _ := url.Parse(t.url)
				sql, err := t.sql(u.Query().Get("table"))
				if err != nil {
					return usagef("%s: %v", t.variable, err)
				}
				mt.Action, mt.SQL = "would apply", sql
			default:
				if err := t.migrate(c.ctx, t.url); err != nil {
					failure = fmt.Errorf("%s: %w", t.variable, err)
					mt.Action, mt.Error = "failed", err.Error()
				} else {
					mt.Action = "applied"
					applied++
				}
				_ = bar.Add(1)
			}
			rep.Targets = append(rep.Targets, mt)
		}
		if bar != nil {
			_ = bar.Finish()
		}
		if err := c.printMigrate(out, rep); err != nil {
			return err
		}
		return partial(applied, failure)
	}
	addOutput(cmd, &out, false)
	return needsConfig(cmd)
}

func (c *cli) printMigrate(out format, rep migrateReport) error {
	if out == formatJSON {
		return writeJSON(c.Stdout, rep)
	}
	if len(rep.Targets) == 0 {
		fmt.Fprintln(c.Stdout, "nothing to migrate: neither IDEMPOTENCY_URL nor PAYMENTS_STORE_URL is a postgres:// URL (memory and redis need no schema; DynamoDB tables come from infrastructure code)")
		return nil
	}
	for _, t := range rep.Targets {
		switch t.Action {
		case "would apply":
			fmt.Fprintf(c.Stdout, "-- %s (%s): would apply\n%s\n", t.Variable, t.URL, t.SQL)
		case "applied":
			fmt.Fprintf(c.Stdout, "%s (%s): schema applied\n", t.Variable, t.URL)
		default:
			fmt.Fprintf(c.Stdout, "%s (%s): %s\n", t.Variable, t.URL, t.Action)
		}
	}
	if rep.DryRun {
		fmt.Fprintln(c.Stdout, "-- dry run: add --apply to apply")
	}
	return nil
}
