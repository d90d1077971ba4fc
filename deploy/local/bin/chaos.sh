#!/usr/bin/env bash
# make chaos: builds release binaries, starts a throwaway Postgres cluster and DynamoDB endpoint,
# and runs keel-chaos: RUNS chaos runs (1 by default; a release's worth is RUNS=500), each a fresh
# two-region stack under load with a seeded schedule of faults, checked for every invariant.
# SEED=... replays a run. Prints a table of runs, faults and anomalies.
set -euo pipefail
source "$(dirname "$0")/env.sh"
export CARGO_INCREMENTAL=0
cd "$KEEL_ROOT"

bash deploy/local/bin/install.sh
log "building release binaries"
cargo build --release --workspace --bins --quiet

chaos_pg="$KEEL_STATE/chaos/postgres"
chaos_pg_port="${KEEL_CHAOS_PG_PORT:-54396}"
chaos_dynamodb_port="${KEEL_CHAOS_DYNAMODB_PORT:-18496}"
keel_local="$CARGO_TARGET_DIR/release/keel-local"
export KEEL_TEST_PIDS="$KEEL_STATE/chaos/pids"
cleanup() {
  stop_noted "$KEEL_TEST_PIDS"
  for pidfile in "${TMPDIR:-/tmp}"/keel-tests/chaos_*/*/*-postgres/data/postmaster.pid; do
    [ -f "$pidfile" ] && "$keel_local" postgres stop "${pidfile%/data/postmaster.pid}" || true
  done
  "$keel_local" postgres stop "$chaos_pg" || true
  "$keel_local" moto stop "$KEEL_STATE/chaos/dynamodb" || true
}
trap cleanup EXIT
rm -rf "$KEEL_TEST_PIDS" && mkdir -p "$KEEL_TEST_PIDS"
"$keel_local" postgres stop "$chaos_pg" || true
rm -rf "$chaos_pg"
"$keel_local" postgres start "$chaos_pg" "$chaos_pg_port"
"$keel_local" moto stop "$KEEL_STATE/chaos/dynamodb" || true
"$keel_local" moto start "$KEEL_STATE/chaos/dynamodb" "$chaos_dynamodb_port"

KEEL_TEST_PG="postgres://keel@127.0.0.1:$chaos_pg_port/postgres" \
  KEEL_TEST_DYNAMODB="http://127.0.0.1:$chaos_dynamodb_port" \
  KEEL_BIN_DIR="$CARGO_TARGET_DIR/release" "$CARGO_TARGET_DIR/release/keel-chaos"
