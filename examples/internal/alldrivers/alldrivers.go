// Package alldrivers compiles in every driver the reference binaries can
// open, whatever the build tags: the examples' tests import it, since the
// binaries themselves include the heavy drivers only with build tags
// (examples/internal/drivers).
package alldrivers

import (
	_ "github.com/payrail/payrail/bus/kafka"
	_ "github.com/payrail/payrail/bus/pubsub"
	_ "github.com/payrail/payrail/bus/servicebus"
	_ "github.com/payrail/payrail/bus/snssqs"
	_ "github.com/payrail/payrail/gateway/stripe"
	_ "github.com/payrail/payrail/idempotency/dynamodb"
	_ "github.com/payrail/payrail/idempotency/redis"
)
