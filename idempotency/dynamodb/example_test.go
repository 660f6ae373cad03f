package dynamodb_test

import (
	"context"
	"log"

	"github.com/aws/aws-sdk-go-v2/config"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/idempotency/dynamodb"
)

// Create the table once (development; production tables come from
// infrastructure code), then open the store by URL: credentials and region
// come from the SDK's standard chain.
func ExampleCreateTable() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if err := dynamodb.CreateTable(ctx, awsddb.NewFromConfig(cfg), "payrail-idempotency"); err != nil {
		log.Fatal(err)
	}
	s, err := idempotency.Open(ctx, "dynamodb://payrail-idempotency?region=eu-west-1")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
}
