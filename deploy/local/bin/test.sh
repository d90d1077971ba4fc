#!/usr/bin/env bash
# make test: everything CI runs. Installs what is missing, starts a throwaway Postgres cluster and
# DynamoDB endpoint for the system tests (each test makes its own database, broker and service processes in it), runs the
# unit, property and system tests, and stops everything it started, whatever happens.
set -euo pipefail
source "$(dirname "$0")/env.sh"
# Whole-crate builds: incremental state is kept per build and grew the shared target dir by tens
# of gigabytes over a day of runs; these runs gain nothing from it.
export CARGO_INCREMENTAL=0
cd "$KEEL_ROOT"

bash deploy/local/bin/install.sh --test

log "alert rules: promtool check and test (deploy/prometheus)"
"$PROMTOOL_BIN" check rules deploy/prometheus/alerts.yml
(cd deploy/prometheus && "$PROMTOOL_BIN" test rules alerts.test.yml)

test_pg="$KEEL_STATE/test/postgres"
# The Postgres cluster and DynamoDB endpoint are started and stopped by keel-local, the code behind
# `make up` and the harness's own clusters.
keel_local="$CARGO_TARGET_DIR/debug/keel-local"
test_pg_port="${KEEL_TEST_PG_PORT:-54390}"
test_dynamodb_port="${KEEL_TEST_DYNAMODB_PORT:-18490}"
# Every process a test stack starts is noted here by pid (tests/src/lib.rs, register_child).
export KEEL_TEST_PIDS="$KEEL_STATE/test/pids"
cleanup() {
  # Processes of a test that was itself killed: nothing may outlive the run.
  stop_noted "$KEEL_TEST_PIDS"
  # Primary and standby clusters of two-region tests that were not stopped.
  [ -x "$keel_local" ] || return 0
  for pidfile in "${TMPDIR:-/tmp}"/keel-tests/*/*/*-postgres/data/postmaster.pid; do
    [ -f "$pidfile" ] && "$keel_local" postgres stop "${pidfile%/data/postmaster.pid}" || true
  done
  "$keel_local" postgres stop "$test_pg" || true
  "$keel_local" moto stop "$KEEL_STATE/test/dynamodb" || true
}
trap cleanup EXIT
rm -rf "$KEEL_TEST_PIDS" && mkdir -p "$KEEL_TEST_PIDS"

# Stacks of failed tests are kept for inspection (passing ones remove themselves); not forever.
find "${TMPDIR:-/tmp}/keel-tests" -mindepth 1 -maxdepth 1 -mmin +720 -exec rm -rf {} + 2>/dev/null || true

log "production deployment: Terraform parsed, checkov, names from the code (deploy/terraform)"
bash deploy/local/bin/terraform-check.sh
bash deploy/docker/entrypoint.test.sh

log "format and lints (CODE_STYLE.md)"
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

log "building"
cargo build --workspace --bins --tests --quiet

log "unit and property tests"
cargo test --workspace --exclude keel-system-tests --quiet

log "fuzzing every JSON body the API takes, briefly (make fuzz runs an hour)"
bash deploy/local/bin/fuzz.sh "${KEEL_TEST_FUZZ_SECONDS:-20}"

log "compile-checked queries: .sqlx/ matches the code and the migrated schemas"
bash deploy/local/bin/sqlx.sh check

log "starting the test Postgres cluster on 127.0.0.1:$test_pg_port"
"$keel_local" postgres stop "$test_pg" || true
rm -rf "$test_pg"
"$keel_local" postgres start "$test_pg" "$test_pg_port"
export KEEL_TEST_PG="postgres://keel@127.0.0.1:$test_pg_port/postgres"
log "starting the test DynamoDB endpoint (moto) on 127.0.0.1:$test_dynamodb_port"
"$keel_local" moto stop "$KEEL_STATE/test/dynamodb" || true
"$keel_local" moto start "$KEEL_STATE/test/dynamodb" "$test_dynamodb_port"
export KEEL_TEST_DYNAMODB="http://127.0.0.1:$test_dynamodb_port"

log "system tests (real Postgres, real nisshi, the service binaries)"
# What tests keep for a person to look at (the console's screenshots).
export KEEL_ARTEFACTS="$KEEL_STATE/artefacts"
rm -rf "$KEEL_ARTEFACTS"
# One at a time: each test starts a whole stack, and the machine has two cores.
KEEL_BIN_DIR="$CARGO_TARGET_DIR/debug" cargo test -p keel-system-tests --quiet -- --test-threads=1
log "artefacts (the console's screenshots): $KEEL_ARTEFACTS"
