package postgres

import (
	"context"
	_ "embed"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed schema.sql
var schemaSQL string

// DefaultTable is the table a store uses unless the URL's table parameter
// or WithTable names another.
const DefaultTable = "payrail_idempotency"

// SchemaSQL returns the schema statements for table (DefaultTable if
// empty): what Migrate executes, for review or for applying with psql.
func SchemaSQL(table string) (string, error) {
	if table == "" {
		table = DefaultTable
	}
	if err := validTable(table); err != nil {
		return "", err
	}
	return strings.ReplaceAll(schemaSQL, DefaultTable, table), nil
}

// migrateLockID is the advisory lock serializing concurrent migrations.
const migrateLockID = 0x70617972_69646d31 // "payr" "idm1"

// Migrate creates or upgrades the store's schema in the database urlstr
// names (a postgres:// URL as accepted by Open, including its table
// parameter). It is idempotent and safe to run from several processes at
// once. Stores never migrate on their own: run it (or `opsctl db migrate`)
// when deploying.
func Migrate(ctx context.Context, urlstr string) error {
	u, err := url.Parse(urlstr)
	if err != nil {
		return fmt.Errorf("postgres: malformed URL")
	}
	connURL, table, err := splitURL(u)
	if err != nil {
		return err
	}
	cfg, err := pgx.ParseConfig(connURL)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("postgres: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return MigrateConn(ctx, conn, table)
}

// MigrateConn applies the schema of table (DefaultTable if empty) over an
// open connection, in one transaction under an advisory lock.
func MigrateConn(ctx context.Context, conn *pgx.Conn, table string) error {
	sql, err := SchemaSQL(table)
	if err != nil {
		return err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after Commit
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrateLockID)); err != nil {
		return fmt.Errorf("postgres: migrate: lock: %w", err)
	}
	// Simple protocol: several statements in one Exec.
	if _, err := tx.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
		return fmt.Errorf("postgres: migrate %s: %w", table, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: commit: %w", err)
	}
	return nil
}
