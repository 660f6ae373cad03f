// Command worker is payrail's reference standalone worker: it consumes the
// async payment commands that examples/server publishes to an external
// message bus, calls the gateway, and stores each outcome in the payment
// store it shares with the API server. It is configured by the same
// environment variables as the server (see package examples/internal/config
// and .env.example).
//
// What it needs, what it refuses and how it shuts down are documented in
// package examples/internal/worker, and the drivers it compiles in in
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
	"github.com/payrail/payrail/examples/internal/worker"
)

func main() {
	os.Exit(app.Main("payrail-worker", func(ctx context.Context, cfg *config.Config) error {
		return worker.Run(ctx, cfg, worker.Deps{})
	}))
}
