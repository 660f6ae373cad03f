//go:build (payrail_full || payrail_redis) && !payrail_no_redis

package drivers

// The Redis idempotency store (IDEMPOTENCY_URL=redis://host:6379/0).
import _ "github.com/payrail/payrail/idempotency/redis"
