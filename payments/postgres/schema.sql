-- Schema of payrail's PostgreSQL payment store (package
-- github.com/payrail/payrail/payments/postgres).
--
-- Apply it explicitly before the first start, and again after upgrading
-- payrail: `go run ./examples/opsctl db migrate` (with PAYMENTS_STORE_URL
-- set), postgres.Migrate from Go, or `psql -f schema.sql`. The store never
-- creates its table on its own; it refuses to open when the table is
-- missing. Every statement is idempotent. A store opened with
-- ?table=<name> uses that name instead of payrail_payments.
CREATE TABLE IF NOT EXISTS payrail_payments (
    id         text COLLATE "C" PRIMARY KEY,
    merchant   text NOT NULL,
    status     text NOT NULL,
    amount     bigint NOT NULL,
    currency   text NOT NULL,
    version    bigint NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    -- The payment's API representation (payments.Payment as JSON).
    payment    jsonb NOT NULL
);

-- The worker's recovery scan (ListStale): by status, oldest first.
CREATE INDEX IF NOT EXISTS payrail_payments_status_updated_at_idx ON payrail_payments (status, updated_at, id);

-- The webhook event sweep (ListEventsDue): the payments whose events
-- (the outbox, kept in the payment's document) have delivery work due, by
-- when. payrail_events_due is fixed-width UTC text, so it sorts as time.
CREATE INDEX IF NOT EXISTS payrail_payments_events_due_idx ON payrail_payments ((payment->>'payrail_events_due'), id)
    WHERE payment ? 'payrail_events_due';

-- Payments with dead-lettered webhook deliveries (ListDeadEvents), for
-- operators to redeliver once an endpoint is fixed.
CREATE INDEX IF NOT EXISTS payrail_payments_events_dead_idx ON payrail_payments (id)
    WHERE payment ? 'payrail_events_dead';

-- The gateway routing policy shared by every process of the deployment
-- (gateway/routing.Source; Store.PolicySource): one row, whose version
-- increases by one with every change.
CREATE TABLE IF NOT EXISTS payrail_payments_routing_policy (
    id         smallint PRIMARY KEY CHECK (id = 1),
    version    bigint NOT NULL,
    policy     jsonb NOT NULL,
    updated_at timestamptz NOT NULL
);
