//go:build (payrail_full || payrail_dynamodb) && !payrail_no_dynamodb

package drivers

// The DynamoDB idempotency store (IDEMPOTENCY_URL=dynamodb://<table>?region=...).
import _ "github.com/payrail/payrail/idempotency/dynamodb"
