#!/usr/bin/env bash
# Installs fauxqs 1.9.2, the SNS/SQS emulator the sns-sqs bus driver
# (bus/snssqs) and its end-to-end test run against, into .cache/fauxqs with
# npm ci from the lockfile internal/testkit/fauxqs/package-lock.json (every
# package pinned with its integrity). The tests start it themselves with
# internal/testkit/fauxqs/launcher.mjs on a free port (Node.js 20; fauxqs 2.x
# needs Node 22.5). One transitive dependency, cookie 2 (used by
# light-my-request, behind fastify.inject, which the emulator does not
# call), declares node >= 22; npm's warning about it is silenced and the
# emulator runs on Node 20 (the tests exercise it). Idempotent: does
# nothing when the installed tree matches the lockfile.
set -euo pipefail
cd "$(dirname "$0")/../.."

src=internal/testkit/fauxqs
dest=.cache/fauxqs

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node and npm are required for the fauxqs SNS/SQS emulator" >&2
  exit 1
fi

want=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)
if [ -f "$dest/installed.sha256" ] && [ "$(cat "$dest/installed.sha256")" = "$want" ] &&
  [ -f "$dest/node_modules/fauxqs/package.json" ]; then
  echo "fauxqs $(node -p 'require(process.argv[1]).version' "$PWD/$dest/node_modules/fauxqs/package.json") already installed in $dest"
  exit 0
fi

mkdir -p "$dest"
rm -f "$dest/installed.sha256"
cp "$src/package.json" "$src/package-lock.json" "$dest/"
(cd "$dest" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
echo "$want" >"$dest/installed.sha256"
echo "fauxqs $(node -p 'require(process.argv[1]).version' "$PWD/$dest/node_modules/fauxqs/package.json") installed in $dest"
