#!/usr/bin/env bash
# make down: stops everything `make up` started (services first, so they drain, then the broker and
# the database). State stays in $KEEL_STATE for the next `make up`.
set -euo pipefail
source "$(dirname "$0")/env.sh"

for dir in "$KEEL_STATE"/us-*; do
  [ -d "$dir" ] || continue
  for name in generator ingress ingestion matching notification settlement; do
    pidfile="$dir/pids/$name.pid"
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -TERM "$pid" 2>/dev/null; then
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
  bash "$(dirname "$0")/tansu.sh" stop "$dir/kafka" 0
  bash "$(dirname "$0")/postgres.sh" stop "$dir/tm-postgres" 0
  bash "$(dirname "$0")/postgres.sh" stop "$dir/st-postgres" 0
  log "stopped $(basename "$dir")"
done
