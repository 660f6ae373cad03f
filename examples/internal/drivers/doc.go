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
// The drivers with a heavy client library are compiled in only when asked
// for, so that the README's `go run ./examples/server` (the embedded
// defaults) builds 413 packages instead of 753: payrail_full compiles them
// all in (the Dockerfile and .ci/build-binaries.sh always set it), and
// payrail_kafka, payrail_pubsub, payrail_servicebus, payrail_snssqs,
// payrail_dynamodb, payrail_redis and payrail_stripe one each, such as
//
//	go run -tags payrail_kafka ./examples/server
//
// payrail_no_<driver> tags leave a driver out of a payrail_full build:
//
//	go build -tags payrail_full,payrail_no_kafka,payrail_no_pubsub,payrail_no_servicebus ./examples/server
//
// for an AWS deployment (docs/deploy.md lists the sizes). The in-memory
// bus and store, the mock gateway and the PostgreSQL stores are always
// compiled in. A binary started with a driver it lacks stops with a
// configuration error naming the tag.
package drivers
