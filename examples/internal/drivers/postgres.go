package drivers

// PostgreSQL stores: the idempotency store (IDEMPOTENCY_URL=postgres://...)
// and the payment store (PAYMENTS_STORE_URL=postgres://...). Apply their
// schemas with `go run ./examples/opsctl db migrate --apply`.
import (
	_ "github.com/payrail/payrail/idempotency/postgres"
	_ "github.com/payrail/payrail/payments/postgres"
)
