#!/usr/bin/env bash
# Makes sure the PostgreSQL and Redis servers the idempotency and payment
# store tests use are up on 127.0.0.1:5432 and 127.0.0.1:6379 (trust auth,
# database "test"). The go-svc machines start both before a session; this
# starts one that has stopped, with the machine notes' start commands, and
# waits until it answers. Idempotent; does nothing when both are up.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 -t 2 2>/dev/null; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

wait_for() { # name check
  for _ in $(seq 1 60); do
    if "$2"; then echo "$1 is up"; return 0; fi
    sleep 0.5
  done
  echo "$1 did not come up within 30s" >&2
  return 1
}

if pg_up; then
  echo "PostgreSQL is up"
else
  echo "PostgreSQL is down: starting it"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  wait_for PostgreSQL pg_up
fi
# The tests connect to database "test" as role postgres.
if [ "$(psql -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'test'")" != "1" ]; then
  psql -h 127.0.0.1 -U postgres -d postgres -c 'CREATE DATABASE test'
fi

if redis_up; then
  echo "Redis is up"
else
  echo "Redis is down: starting it"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for Redis redis_up
fi
