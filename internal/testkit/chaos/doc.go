// Package chaos is payrail's chaos soak harness: it drives payments through
// the real HTTP API and worker with faults injected, then checks the
// money-path invariants against the provider's ledger of real charges.
package chaos
