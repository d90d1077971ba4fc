#!/usr/bin/env bash
# make bench: builds release binaries, starts a throwaway Postgres cluster, and runs keel-bench
# (which starts its own broker and services) at increasing rates. Prints one summary table.
# KEEL_BENCH_RATES=250,500,... sets the offered rates in legs/s.
set -euo pipefail
source "$(dirname "$0")/env.sh"
# Whole-crate builds: incremental state is kept per build and grew the shared target dir by tens
# of gigabytes over a day of runs; these runs gain nothing from it.
export CARGO_INCREMENTAL=0
cd "$KEEL_ROOT"

bash deploy/local/bin/install.sh
log "building release binaries"
cargo build --release --workspace --bins --quiet

bench_pg="$KEEL_STATE/bench/postgres"
bench_pg_port="${KEEL_BENCH_PG_PORT:-54391}"
keel_local="$CARGO_TARGET_DIR/release/keel-local"
cleanup() {
  "$keel_local" postgres stop "$bench_pg" || true
  "$keel_local" moto stop "$KEEL_STATE/bench/dynamodb" || true
  stop_noted "$KEEL_TEST_PIDS"
}
export KEEL_TEST_PIDS="$KEEL_STATE/bench/pids"
trap cleanup EXIT
rm -rf "$KEEL_TEST_PIDS" && mkdir -p "$KEEL_TEST_PIDS"
"$keel_local" postgres stop "$bench_pg" || true
rm -rf "$bench_pg"
"$keel_local" postgres start "$bench_pg" "$bench_pg_port"
# keelctl's runbook store, for the drills.
bench_dynamodb_port="${KEEL_BENCH_DYNAMODB_PORT:-18491}"
"$keel_local" moto stop "$KEEL_STATE/bench/dynamodb" || true
"$keel_local" moto start "$KEEL_STATE/bench/dynamodb" "$bench_dynamodb_port"

KEEL_TEST_PG="postgres://keel@127.0.0.1:$bench_pg_port/postgres" \
  KEEL_TEST_DYNAMODB="http://127.0.0.1:$bench_dynamodb_port" KEEL_BIN_DIR="$CARGO_TARGET_DIR/release" "$CARGO_TARGET_DIR/release/keel-bench"
