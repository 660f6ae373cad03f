#!/usr/bin/env bash
# Installs DynamoDB Local (AWS's jar, 1.25.1) for the DynamoDB idempotency
# store tests into .cache/dynamodblocal/emulator/. The jar ships inside the
# npm package amplify-dynamodb-simulator, pinned with its sha512 integrity by
# internal/testkit/dynamodblocal/package-lock.json. Only that package's
# tarball is fetched (npm pack), checked against the lockfile's integrity and
# its emulator/ folder extracted: the wrapper's Node dependencies are not
# needed and not installed. The tests start the jar themselves (Java 17) on a
# free port. Idempotent: does nothing when the pinned version is in place.
set -euo pipefail
cd "$(dirname "$0")/../.."

lock="$PWD/internal/testkit/dynamodblocal/package-lock.json"
dest=.cache/dynamodblocal
pkg=amplify-dynamodb-simulator

read -r version integrity < <(node -e '
  const p = require(process.argv[1]).packages["node_modules/" + process.argv[2]];
  console.log(p.version, p.integrity);' "$lock" "$pkg")

if ! command -v java >/dev/null 2>&1; then
  echo "java not found: installing Debian's openjdk-17-jre-headless"
  apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi

if [ -f "$dest/installed-$version" ] && [ -f "$dest/emulator/DynamoDBLocal.jar" ]; then
  echo "DynamoDB Local from $pkg@$version already installed in $dest"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack "$pkg@$version" --silent >/dev/null)
tgz="$tmp/$pkg-$version.tgz"
got=$(node -e '
  const c = require("crypto"), fs = require("fs");
  console.log("sha512-" + c.createHash("sha512").update(fs.readFileSync(process.argv[1])).digest("base64"));' "$tgz")
if [ "$got" != "$integrity" ]; then
  echo "$pkg@$version: integrity $got does not match the lockfile's $integrity" >&2
  exit 1
fi
tar -xzf "$tgz" -C "$tmp" package/emulator
rm -rf "$dest"
mkdir -p "$dest"
mv "$tmp/package/emulator" "$dest/emulator"
touch "$dest/installed-$version"
echo "DynamoDB Local from $pkg@$version installed in $dest"
