package testkit

import (
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
)

// StoreRequirePeer ends the test when a store's external peer is not
// reachable (err != nil): it skips locally, and fails when CI=true, where
// every peer must be present.
func StoreRequirePeer(tb testing.TB, peer string, err error) {
	tb.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s is required under CI=true but unavailable: %v", peer, err)
	}
	tb.Skipf("%s unavailable, skipping (set CI=true to fail instead): %v", peer, err)
}

// StorePostgresURL returns the PostgreSQL URL the store tests use:
// PAYRAIL_TEST_POSTGRES_URL, or the go-svc machine's server (trust auth,
// database test).
func StorePostgresURL() string {
	if u := os.Getenv("PAYRAIL_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// StoreRedisURL returns the Redis URL the store tests use:
// PAYRAIL_TEST_REDIS_URL, or the go-svc machine's server.
func StoreRedisURL() string {
	if u := os.Getenv("PAYRAIL_TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// StoreUniqueName returns prefix followed by random hex, for tables and key
// prefixes that keep parallel test runs on one server apart.
func StoreUniqueName(prefix string) string { return prefix + randomID(5) }

// StoreCountingConn wraps a network connection and counts its request
// flushes: every Write that follows a Read (or is the first) starts a new
// round trip, so a client that writes a request in several pieces before
// reading the answer is still counted once.
type StoreCountingConn struct {
	net.Conn
	trips    *atomic.Int64
	readSeen atomic.Bool
}

// NewStoreCountingConn wraps c, adding its round trips to trips.
func NewStoreCountingConn(c net.Conn, trips *atomic.Int64) *StoreCountingConn {
	s := &StoreCountingConn{Conn: c, trips: trips}
	s.readSeen.Store(true)
	return s
}

// Write implements net.Conn.
func (c *StoreCountingConn) Write(p []byte) (int, error) {
	if c.readSeen.Swap(false) {
		c.trips.Add(1)
	}
	return c.Conn.Write(p)
}

// Read implements net.Conn.
func (c *StoreCountingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.readSeen.Store(true)
	}
	return n, err
}

var _ io.ReadWriter = (*StoreCountingConn)(nil)
