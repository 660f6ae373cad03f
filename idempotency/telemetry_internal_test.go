package idempotency

import (
	"net/url"
	"testing"
)

// The telemetry names a store URL implies: db.system.name from the scheme,
// db.collection.name from ?table=, nothing else (no host, no credentials).
func TestURLTelemetryNames(t *testing.T) {
	for raw, want := range map[string]options{
		"postgres://u:pw@db:5432/app?table=idem": {system: "postgresql", table: "idem"},
		"dynamodb://idem?region=eu-west-1":       {system: "aws.dynamodb"},
		"redis://:secret@cache:6379/0":           {system: "redis"},
		"memory://":                              {system: "memory"},
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		var got options
		urlOptions(u)(&got)
		if got != want {
			t.Errorf("%s: %+v, want %+v", raw, got, want)
		}
	}
}
