// Command opsctl is payrail's operations CLI: it lists, inspects, purges
// and releases idempotency keys in the store named by IDEMPOTENCY_URL, and
// applies the PostgreSQL schemas (db migrate). It reads the same
// environment (and .env file) as examples/server. Commands that change
// something are dry runs unless --apply is given.
//
//	go run ./examples/opsctl keys ls --stuck
//	go run ./examples/opsctl keys release --merchant acme order-1001 --apply
//	go run ./examples/opsctl db migrate --apply
//
// See package examples/internal/opsctl and docs/operations.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/payrail/payrail/examples/internal/config"
	"github.com/payrail/payrail/examples/internal/opsctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	cfg, err := config.Load()
	if err != nil {
		fmt.Fprintf(os.Stderr, "opsctl: %v\n", err)
		os.Exit(opsctl.ExitUsage)
	}
	code := opsctl.Run(ctx, opsctl.Env{Config: cfg, Stdout: os.Stdout, Stderr: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}
