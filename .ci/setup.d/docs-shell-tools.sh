#!/usr/bin/env bash
# Makes sure the programs the docs' shell blocks use are installed: bash, curl and jq.
# examples/internal/docshell runs every fenced shell block of README.md, docs/runbooks.md and
# docs/operations.md with them (it skips locally without them, and fails under CI=true).
# jq comes from Debian bookworm at a pinned version (bookworm-security's, else the bookworm point
# release's); apt-get update runs only when neither is in the apt lists. Idempotent: does
# nothing when all three are on PATH.
set -euo pipefail

JQ_VERSIONS="1.6-2.1+deb12u3 1.6-2.1+deb12u2" # Debian bookworm-security's jq, then bookworm's

missing=()
for tool in bash curl jq; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "docs shell tools: bash, curl $(curl --version | head -n1 | cut -d' ' -f2), $(jq --version)"
  exit 0
fi
for tool in "${missing[@]}"; do
  if [ "$tool" != jq ]; then
    echo "docs shell tools: $tool is missing; install it with the system's package manager" >&2
    exit 1
  fi
done

install() {
  for v in $JQ_VERSIONS; do
    DEBIAN_FRONTEND=noninteractive apt-get install -q -y --no-install-recommends "jq=$v" "libjq1=$v" && return 0
  done
  return 1
}
if ! install; then
  echo "jq ($JQ_VERSIONS) not in the apt lists: running apt-get update"
  apt-get update -q
  install
fi
echo "docs shell tools: $(jq --version)"
