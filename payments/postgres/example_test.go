package postgres_test

import (
	"context"
	"log"

	"github.com/payrail/payrail/payments"
	"github.com/payrail/payrail/payments/postgres"
)

// Apply the schema once (opsctl db migrate --apply, or Migrate), then open
// the store by URL and hand it to the processor.
func ExampleMigrate() {
	ctx := context.Background()
	const url = "postgres://payrail@db:5432/payrail?sslmode=require"
	if err := postgres.Migrate(ctx, url); err != nil {
		log.Fatal(err)
	}
	store, err := payments.OpenStore(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	_ = payments.WithStore(store) // payments.New(payments.WithGateway(g), payments.WithStore(store))
}
