#!/bin/sh
# Container entry point: apply migrations (waiting for PostgreSQL), then run redeemd in the
# foreground. Settings come from REDEEMD_* variables (see docker-compose.yml).
set -eu
i=0
until redeemctl migrate --dir /usr/share/redeemd/sql; do
    i=$((i + 1))
    [ "$i" -ge 30 ] && { echo "redeemd: PostgreSQL not reachable, giving up" >&2; exit 1; }
    sleep 2
done
exec redeemd "$@"
