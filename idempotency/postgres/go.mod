module github.com/payrail/payrail/idempotency/postgres

go 1.26.0

require github.com/payrail/payrail v0.0.0-00010101000000-000000000000

replace github.com/payrail/payrail => ../..

require github.com/jackc/pgx/v5 v5.12.0

require (
	github.com/cenkalti/backoff/v5 v5.0.3 // indirect
	github.com/sony/gobreaker/v2 v2.4.0 // indirect
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/go-json-experiment/json v1.27.2 // indirect
	github.com/go-logr/logr v1.4.4 // indirect
	github.com/go-logr/stdr v1.2.2 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	github.com/payrail/payrail/internal/pgtext v0.0.0-00010101000000-000000000000
	go.opentelemetry.io/auto/sdk v1.2.1 // indirect
	go.opentelemetry.io/otel v1.47.0 // indirect
	go.opentelemetry.io/otel/log v1.47.0 // indirect
	go.opentelemetry.io/otel/metric v1.47.0 // indirect
	go.opentelemetry.io/otel/trace v1.47.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)

replace github.com/payrail/payrail/internal/pgtext => ../../internal/pgtext
