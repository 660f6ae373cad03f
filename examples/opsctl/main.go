// Command opsctl is payrail's operations CLI: it lists, inspects, purges
// and releases idempotency keys in the store named by IDEMPOTENCY_URL,
// applies the PostgreSQL schemas (db migrate), provisions the message bus
// and inspects and redrives its dead letters, and checks a deployment's
// configuration. It reads the same environment (and .env file) as
// examples/server. Commands that change something are dry runs unless
// --apply is given; -o json prints stable JSON for scripts; `opsctl
// completion bash|zsh|fish|powershell` prints a completion script.
//
//	go run ./examples/opsctl keys ls --stuck
//	go run ./examples/opsctl keys release --merchant acme order-1001 --apply
//	go run ./examples/opsctl db migrate --apply
//	go run ./examples/opsctl --help
//
// Exit status: 0 done, 1 failed, 2 usage or configuration error, 3 partly
// done. See package examples/internal/opsctl and docs/opsctl.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/payrail/payrail/examples/internal/config"
	"github.com/payrail/payrail/examples/internal/opsctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	code := opsctl.Run(ctx, opsctl.Env{LoadConfig: config.Load, Stdout: os.Stdout, Stderr: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}
