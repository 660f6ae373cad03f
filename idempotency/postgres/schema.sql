-- Schema of payrail's PostgreSQL idempotency store (package
-- github.com/payrail/payrail/idempotency/postgres).
--
-- Apply it explicitly before the first start, and again after upgrading
-- payrail: `go run ./examples/opsctl db migrate` (with IDEMPOTENCY_URL set),
-- postgres.Migrate from Go, or `psql -f schema.sql`. The store never creates
-- its table on its own; it refuses to open when the table is missing.
-- Every statement is idempotent. A store opened with ?table=<name> uses that
-- name instead of payrail_idempotency (Migrate substitutes it).
CREATE TABLE IF NOT EXISTS payrail_idempotency (
    merchant         text COLLATE "C" NOT NULL,
    key              text COLLATE "C" NOT NULL,
    fingerprint      text NOT NULL,
    state            text NOT NULL CHECK (state IN ('in_progress', 'completed')),
    token            text NOT NULL DEFAULT '',
    resource_id      text NOT NULL DEFAULT '',
    lease_expires_at timestamptz NOT NULL,
    status_code      integer NOT NULL DEFAULT 0,
    headers          jsonb,
    body             bytea,
    created_at       timestamptz NOT NULL,
    expires_at       timestamptz NOT NULL,
    PRIMARY KEY (merchant, key)
);

-- Purging expired records (opsctl keys purge) scans by expiry.
CREATE INDEX IF NOT EXISTS payrail_idempotency_expires_at_idx ON payrail_idempotency (expires_at);
