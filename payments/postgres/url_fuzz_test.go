package postgres

import (
	"testing"

	"github.com/payrail/payrail/internal/urlcheck"
)

// FuzzParseConfig: see urlcheck.Postgres.
func FuzzParseConfig(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) { urlcheck.Postgres(t, raw, DefaultTable, parseConfig) })
}
