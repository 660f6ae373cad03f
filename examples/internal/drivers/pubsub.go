//go:build (payrail_full || payrail_pubsub) && !payrail_no_pubsub

package drivers

// The Google Cloud Pub/Sub bus (MESSAGE_BUS_ADAPTER=pubsub; honours
// PUBSUB_EMULATOR_HOST and Application Default Credentials).
import _ "github.com/payrail/payrail/bus/pubsub"
