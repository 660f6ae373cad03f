// Command server is payrail's reference API server: the payments HTTP API
// (package payments) wired entirely from environment variables, documented
// in package examples/internal/config and in .env.example at the
// repository root.
//
// Run it locally, with in-memory adapters and the mock gateway:
//
//	cp .env.example .env
//	go run ./examples/server
//
//	curl -i localhost:8080/payments -H 'Content-Type: application/json' \
//	  -H 'Idempotency-Key: order-1' -d '{"amount":1999,"currency":"EUR","payment_method":"pm_card_visa"}'
//
// Its deployment shapes, endpoints and graceful shutdown are documented in
// package examples/internal/server, and the drivers it compiles in in
// package examples/internal/drivers. A second SIGTERM or SIGINT kills it at
// once.
//
// Exit status: 0 after a clean shutdown, 1 on a runtime failure, 2 on a
// configuration error.
package main

import (
	"context"
	"os"

	"github.com/payrail/payrail/examples/internal/app"
	"github.com/payrail/payrail/examples/internal/config"
	"github.com/payrail/payrail/examples/internal/server"
)

func main() {
	os.Exit(app.Main("payrail-server", func(ctx context.Context, cfg *config.Config) error {
		return server.Run(ctx, cfg, server.Deps{})
	}))
}
