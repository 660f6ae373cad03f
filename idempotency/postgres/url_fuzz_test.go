package postgres

import (
	"testing"

	"github.com/payrail/payrail/internal/pgtext/pgfuzz"
)

// FuzzParseConfig: see pgfuzz.Postgres.
func FuzzParseConfig(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) { pgfuzz.Postgres(t, raw, DefaultTable, parseConfig) })
}
