package opsctl_test

// The reference binaries compile the heavy drivers in only with build tags
// (examples/internal/drivers); the tests of this package open them all.
import (
	_ "github.com/payrail/payrail/bus/kafka"
	_ "github.com/payrail/payrail/bus/pubsub"
	_ "github.com/payrail/payrail/bus/servicebus"
	_ "github.com/payrail/payrail/bus/snssqs"
	_ "github.com/payrail/payrail/gateway/stripe"
	_ "github.com/payrail/payrail/idempotency/dynamodb"
	_ "github.com/payrail/payrail/idempotency/redis"
)
