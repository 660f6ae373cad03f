#!/usr/bin/env bash
# Installs promtool, which the tests of examples/deploy run to unit-test the Prometheus alerting
# rules (promtool check rules / promtool test rules). promtool ships in Debian's "prometheus"
# package; there is no promtool-only package in bookworm. Rather than installing the package
# (which would also install, and on systemd hosts start, a Prometheus server), this downloads the
# pinned .deb with apt-get and extracts it into .cache/promtool/; the tests look for promtool
# on PATH first, then at .cache/promtool/usr/bin/promtool. Idempotent: does nothing when
# promtool is already available.
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION="2.42.0+ds-5+deb12u1" # Debian bookworm's prometheus
DEST=.cache/promtool

if command -v promtool >/dev/null 2>&1; then
  echo "promtool: $(command -v promtool) ($(promtool --version 2>&1 | head -n1))"
  exit 0
fi
if [ -x "$DEST/usr/bin/promtool" ]; then
  echo "promtool: $DEST/usr/bin/promtool (cached)"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
download() { (cd "$tmp" && apt-get download -q "prometheus=$VERSION"); }
if ! download; then
  echo "prometheus=$VERSION not in the apt lists: running apt-get update"
  apt-get update -q
  download
fi
mkdir -p "$DEST"
dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"
mkdir -p "$DEST/usr/bin"
cp "$tmp/x/usr/bin/promtool" "$DEST/usr/bin/promtool"
echo "promtool: $DEST/usr/bin/promtool ($("$DEST/usr/bin/promtool" --version 2>&1 | head -n1))"
