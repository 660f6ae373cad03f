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
package drivers
