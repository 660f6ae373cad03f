package drivers

// The in-memory idempotency store (IDEMPOTENCY_URL=memory://).
import _ "github.com/payrail/payrail/idempotency/memory"
