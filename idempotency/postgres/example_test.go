package postgres_test

import (
	"context"
	"fmt"
	"log"

	"github.com/payrail/payrail/idempotency"
	"github.com/payrail/payrail/idempotency/postgres"
)

// Deployments apply the schema once (opsctl db migrate --apply, or
// Migrate), then open the store by URL like any other.
func ExampleMigrate() {
	ctx := context.Background()
	const url = "postgres://payrail@db:5432/payrail?sslmode=require&table=payrail_idempotency"
	if err := postgres.Migrate(ctx, url); err != nil {
		log.Fatal(err)
	}
	s, err := idempotency.Open(ctx, url)
	if err != nil {
		log.Fatal(err) // wraps postgres.ErrSchemaMissing if the schema was not applied
	}
	defer s.Close()
	fmt.Println(s.Ping(ctx))
}
