#!/usr/bin/env bash
# Builds examples/server, examples/worker and examples/opsctl with exactly
# the flags of the Dockerfile's build stage (static, trimmed, stripped,
# version-stamped) into ${OUT:-.cache/bin} and prints their sizes. CI runs
# it so that the image's build command is exercised even without a Docker
# engine; docs/deploy.md quotes its output.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.cache/bin}"
VERSION="${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}"
mkdir -p "$out"
for cmd in server worker opsctl; do
  # Keep in step with the RUN line of the Dockerfile's build stage.
  CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/payrail/payrail/examples/internal/app.Version=${VERSION}" \
    -tags "payrail_full${GOTAGS:+,$GOTAGS}" -o "$out/$cmd" "./examples/$cmd"
done
for cmd in server worker opsctl; do
  stat -c '%s %n' "$out/$cmd" | awk '{printf "%-24s %10d bytes %6.1f MiB\n", $2, $1, $1/1048576}'
done
