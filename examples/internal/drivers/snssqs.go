//go:build (payrail_full || payrail_snssqs) && !payrail_no_snssqs

package drivers

// The Amazon SNS + SQS bus (MESSAGE_BUS_ADAPTER=sns-sqs, with
// PAYMENTS_TOPIC_ARN and PAYMENTS_QUEUE_URL; create them with
// `go run ./examples/opsctl bus provision --apply`).
import _ "github.com/payrail/payrail/bus/snssqs"
