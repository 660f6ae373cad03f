#!/usr/bin/env bash
# The SDK core's module-graph budget. An embedder that imports only the core
# (payments with the in-memory bus, the mock gateway and the memory
# idempotency store) must see at most $max modules in `go list -m all`,
# itself included: no cloud SDK, gRPC or test server may creep back into the
# root go.mod (which lists the test dependencies of the root's packages too,
# and every line of it takes part in the embedder's version selection).
# Builds a scratch embedder outside the repository, outside the workspace,
# with the checkout replacing github.com/payrail/payrail.
# 26 since the SDK's back-off is github.com/cenkalti/backoff/v5 (no
# dependencies of its own) instead of a hand-written copy of it.
set -euo pipefail
cd "$(dirname "$0")/.."
max=26
root=$PWD
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

cat >"$dir/go.mod" <<EOF
module example.com/embedder

go 1.26.0

require github.com/payrail/payrail v0.0.0

replace github.com/payrail/payrail => $root
EOF
cat >"$dir/main.go" <<'EOF'
package main

import (
	"context"
	"log"

	"github.com/payrail/payrail/bus"
	_ "github.com/payrail/payrail/bus/inmemory"
	"github.com/payrail/payrail/gateway"
	_ "github.com/payrail/payrail/gateway/mock"
	"github.com/payrail/payrail/idempotency"
	_ "github.com/payrail/payrail/idempotency/memory"
	"github.com/payrail/payrail/payments"
)

func main() {
	ctx := context.Background()
	topic, err := bus.OpenTopic(ctx, "inmemory://payments")
	if err != nil {
		log.Fatal(err)
	}
	gw, err := gateway.Open(ctx, "mock://")
	if err != nil {
		log.Fatal(err)
	}
	idem, err := idempotency.Open(ctx, "memory://")
	if err != nil {
		log.Fatal(err)
	}
	p, err := payments.New(payments.WithGateway(gw), payments.WithTopic(topic), payments.WithIdempotencyStore(idem))
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
}
EOF

cd "$dir"
export GOWORK=off GOFLAGS=-mod=mod
go mod tidy
go build -o /dev/null .
n=$(go list -m all | wc -l)
echo "core module graph: $n modules in an embedder's go list -m all (budget $max)"
if [ "$n" -gt "$max" ]; then
  go list -m all
  echo "the SDK core's module graph is over budget: see go mod graph / go mod why -m in an embedder"
  exit 1
fi
