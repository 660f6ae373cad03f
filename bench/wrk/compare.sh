#!/usr/bin/env bash
# compare.sh: the reference server and the trivial handler under the same
# wrk load, each pinned to one core (taskset), alternated round by round.
#
#   bench/wrk/compare.sh [rounds] [duration]        # e.g. 2 10s
#
# Environment: SERVERS="old=/path/to/server new=/path/to/server" compares
# several server binaries (default: one built from this checkout),
# ASYNC=1 sends Prefer: respond-async, CONNS (64), SERVER_CPU (1),
# LOAD_CPU (0), PPROF=127.0.0.1:6060 serves net/http/pprof from the server
# (PAYRAIL_PPROF_ADDR) for profiling while it runs.
#
# Each line ends with what the server process spent per request during the
# wrk run, from /proc/PID/stat before and after it: CPU time (user + system,
# µs) and minor page faults (first touches of memory; in a VM where a fault
# costs ~10 µs they are a visible share of the system time).
set -euo pipefail
rounds=${1:-2}
dur=${2:-10s}
conns=${CONNS:-64}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -z "${SERVERS:-}" ]; then
  (cd "$root" && go build -o "$tmp/server" ./examples/server)
  SERVERS="payrail=$tmp/server"
fi
(cd "$root" && go build -o "$tmp/trivial" ./bench/cmd/trivial)
[ "${ASYNC:-}" = 1 ] && export PAYRAIL_ASYNC=1

# per_request "minflt utime stime" (before) "…" (after) requests: the
# server's CPU time and minor faults per request over the run (clock ticks
# from /proc/PID/stat, CLK_TCK per second).
per_request() {
  awk -v b="$1" -v a="$2" -v n="${3:-0}" -v hz="$(getconf CLK_TCK)" 'BEGIN {
    if (split(b, x, " ") != 3 || split(a, y, " ") != 3) { print "cpu ? (server gone)"; exit }
    if (n <= 0) { print "cpu ? (no requests)"; exit }
    printf "cpu %.1f µs/req (user %.1f, sys %.1f), %.2f faults/req", \
      ((y[2]-x[2])+(y[3]-x[3]))*1e6/hz/n, (y[2]-x[2])*1e6/hz/n, (y[3]-x[3])*1e6/hz/n, (y[1]-x[1])/n }'
}

run() { # label binary...
  local label=$1; shift
  local port=18$((RANDOM % 900 + 100))
  if [ "$1" = trivial ]; then
    taskset -c "${SERVER_CPU:-1}" "$tmp/trivial" -addr "127.0.0.1:$port" >"$tmp/$label.log" 2>&1 &
  else
    env -i PATH="$PATH" HOME="$tmp" PORT="$port" PAYRAIL_API_KEYS=sk_a:merchant-a LOG_LEVEL=error \
      PAYRAIL_PPROF_ADDR="${PPROF:-}" taskset -c "${SERVER_CPU:-1}" "$1" >"$tmp/$label.log" 2>&1 &
  fi
  local pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "127.0.0.1:$port/" && break; sleep 0.1; done
  local before after
  before=$(awk '{print $10, $14, $15}' "/proc/$pid/stat" 2>/dev/null || true)
  taskset -c "${LOAD_CPU:-0}" wrk -t1 -c"$conns" -d"$dur" --latency -s "$here/payments.lua" "http://127.0.0.1:$port" >"$tmp/$label.wrk" 2>&1 || true
  after=$(awk '{print $10, $14, $15}' "/proc/$pid/stat" 2>/dev/null || true)
  printf '%-14s %s | %s | %s %s| %s\n' "$label" "$(grep Requests/sec "$tmp/$label.wrk")" "$(grep '^p50' "$tmp/$label.wrk")" \
    "$(grep '^status' "$tmp/$label.wrk" | tr '\n' ' ')" "$(grep Non-2xx "$tmp/$label.wrk" || true)" \
    "$(per_request "$before" "$after" "$(grep -o '[0-9]* requests in' "$tmp/$label.wrk" | cut -d' ' -f1)")"
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
}

for r in $(seq "$rounds"); do
  for s in $SERVERS; do run "${s%%=*}-$r" "${s#*=}"; done
  run "trivial-$r" trivial
done
