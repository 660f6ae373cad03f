// Package drivers compiles in the driver packages the reference binaries
// (examples/server and examples/worker) open by URL scheme: the bus driver
// of MESSAGE_BUS_ADAPTER and the gateway and idempotency store drivers.
//
// To deploy another driver, add a file with a blank import for each driver
// you deploy, such as kafka.go:
//
//	package drivers
//
//	import _ "github.com/payrail/payrail/bus/kafka"
//
// Build tags leave drivers out of a smaller binary: payrail_no_kafka,
// payrail_no_pubsub, payrail_no_servicebus, payrail_no_snssqs,
// payrail_no_dynamodb, payrail_no_redis and payrail_no_stripe, such as
//
//	go build -tags payrail_no_kafka,payrail_no_pubsub,payrail_no_servicebus ./examples/server
//
// for an AWS deployment (docs/deploy.md lists the sizes). The in-memory
// bus and store, the mock gateway and the PostgreSQL stores are always
// compiled in.
package drivers
