//go:build (payrail_full || payrail_kafka) && !payrail_no_kafka

package drivers

// The Kafka bus (MESSAGE_BUS_ADAPTER=kafka).
import _ "github.com/payrail/payrail/bus/kafka"
