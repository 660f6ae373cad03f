package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/payrail/payrail/gateway/routing"
)

// PolicySource is a routing.Source in the store's database: the gateway
// routing policy shared by every API server and worker whose payment
// store is this database, in the table <store table>_routing_policy that
// Migrate creates. Give it to routing.WithSource.
type PolicySource struct {
	s                     *Store
	qLoad, qInsert, qSwap string
}

var _ routing.Source = (*PolicySource)(nil)

// PolicySource returns the routing policy source in the store's database.
func (s *Store) PolicySource() *PolicySource {
	t := pgx.Identifier{s.table + "_routing_policy"}.Sanitize()
	return &PolicySource{s: s,
		qLoad:   `SELECT policy, version FROM ` + t + ` WHERE id = 1`,
		qInsert: `INSERT INTO ` + t + ` (id, version, policy, updated_at) VALUES (1, 1, $1, now()) ON CONFLICT (id) DO NOTHING RETURNING version`,
		qSwap:   `UPDATE ` + t + ` SET version = version + 1, policy = $2, updated_at = now() WHERE id = 1 AND version = $1 RETURNING version`,
	}
}

// Load implements routing.Source.
func (ps *PolicySource) Load(ctx context.Context) ([]byte, uint64, error) {
	if err := ps.s.check(ctx); err != nil {
		return nil, 0, err
	}
	var policy []byte
	var version int64
	err := ps.s.pool.QueryRow(ctx, ps.qLoad).Scan(&policy, &version)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, 0, nil
	case err != nil:
		return nil, 0, ps.fail(ctx, "load", err)
	}
	return policy, uint64(version), nil
}

// CompareAndSwap implements routing.Source.
func (ps *PolicySource) CompareAndSwap(ctx context.Context, old uint64, policy []byte) (uint64, error) {
	if err := ps.s.check(ctx); err != nil {
		return 0, err
	}
	var row pgx.Row
	if old == 0 {
		row = ps.s.pool.QueryRow(ctx, ps.qInsert, string(policy))
	} else {
		row = ps.s.pool.QueryRow(ctx, ps.qSwap, int64(old), string(policy))
	}
	var version int64
	err := row.Scan(&version)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return 0, fmt.Errorf("postgres: routing policy is no longer at version %d: %w", old, routing.ErrVersionMismatch)
	case err != nil:
		return 0, ps.fail(ctx, "store", err)
	}
	return uint64(version), nil
}

func (ps *PolicySource) fail(ctx context.Context, op string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" { // undefined_table
		return fmt.Errorf("%w: the routing policy table of %q does not exist; apply the schema: `opsctl db migrate` or postgres.Migrate", ErrSchemaMissing, ps.s.table)
	}
	return fmt.Errorf("postgres: routing policy %s: %w", op, ctxErr(ctx, err))
}
