#!/usr/bin/env bash
# Installs what the Service Bus test peer (internal/testkit/sbpeer, started
# by the bus/servicebus and examples/internal/e2e tests) runs on: Debian's
# Python 3 binding of Qpid Proton, for /usr/bin/python3. Pinned to
# bookworm's version; if the mirror no longer carries that exact version (a
# point release replaced it), the current bookworm one is installed with a
# warning. Idempotent: does nothing when the module imports.
set -euo pipefail

pinned=0.37.0-2+b1

if /usr/bin/python3 -c 'import proton' >/dev/null 2>&1; then
  echo "python3-qpid-proton already installed ($(dpkg-query -W -f='${Version}' python3-qpid-proton 2>/dev/null || echo '?'))"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if ! apt-get install -y -qq "python3-qpid-proton=$pinned" >/dev/null; then
  echo "WARNING: python3-qpid-proton=$pinned is not available; installing the distribution's current version" >&2
  apt-get install -y -qq python3-qpid-proton >/dev/null
fi
/usr/bin/python3 -c 'import proton; print("python3-qpid-proton", ".".join(map(str, proton.VERSION)), "installed")'
