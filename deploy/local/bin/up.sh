#!/usr/bin/env bash
# make up: installs what is missing, then runs both applications in us-east-1 on this machine:
# trade matching (its Postgres, ingress, ingestion, matching, notification), settlement (its own
# Postgres and the settlement service), a tansu broker and the generator.
# Safe to run again: what already runs is left running.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$KEEL_ROOT"

bash deploy/local/bin/install.sh
log "building release binaries"
cargo build --release --workspace --bins --quiet
bin="$CARGO_TARGET_DIR/release"

region=us-east-1
dir="$KEEL_STATE/$region"
mkdir -p "$dir/logs" "$dir/pids"
export KEEL_CONFIG="$KEEL_ROOT/deploy/local/config/$region.toml"

log "starting Postgres (trade matching, $region) on 127.0.0.1:54321"
bash deploy/local/bin/postgres.sh start "$dir/tm-postgres" 54321 keel_tm
log "starting Postgres (settlement, $region) on 127.0.0.1:54322"
bash deploy/local/bin/postgres.sh start "$dir/st-postgres" 54322 keel_st
log "starting tansu ($region) on 127.0.0.1:19092"
bash deploy/local/bin/tansu.sh start "$dir/kafka" 19092

running() { [ -f "$dir/pids/$1.pid" ] && kill -0 "$(cat "$dir/pids/$1.pid")" 2>/dev/null; }
start() {
  local name=$1; shift
  if running "$name"; then return; fi
  env "$@" setsid "$bin/keel-$name" >>"$dir/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/pids/$name.pid"
}
start ingress KEEL_LISTEN=127.0.0.1:8081
start ingestion KEEL_OPS_LISTEN=127.0.0.1:9111
start matching KEEL_OPS_LISTEN=127.0.0.1:9112
start notification KEEL_OPS_LISTEN=127.0.0.1:9113
start settlement KEEL_OPS_LISTEN=127.0.0.1:9121

for port in 8081 9111 9112 9113 9121; do
  for _ in $(seq 300); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { log "a service on $port is not ready; see $dir/logs"; exit 1; }
done

if ! running generator; then
  setsid "$bin/keel-generator" --ingress http://127.0.0.1:8081 --rate "${KEEL_GENERATOR_RATE:-5}" \
    >>"$dir/logs/generator.log" 2>&1 </dev/null &
  echo $! >"$dir/pids/generator.pid"
fi

cat <<INFO

Keel is up (trade matching and settlement, $region). State and logs: $dir

  ingress API       http://127.0.0.1:8081   (OpenAPI: /openapi.yaml; credentials: deploy/local/participants.json)
  ingestion ops     http://127.0.0.1:9111   (/healthz /readyz /metrics)
  matching ops      http://127.0.0.1:9112
  notification ops  http://127.0.0.1:9113
  settlement ops    http://127.0.0.1:9121
  Postgres (TM)     postgres://keel@127.0.0.1:54321/keel_tm  (schemas ingress, ingestion, matching, notification)
  Postgres (ST)     postgres://keel@127.0.0.1:54322/keel_st  (schema settlement: the ledger)
  tansu (Kafka)     127.0.0.1:19092
  generator         ${KEEL_GENERATOR_RATE:-5} legs/s (KEEL_GENERATOR_RATE to change; logs/generator.log)

Try:  curl -s -X POST http://127.0.0.1:8081/oauth2/token -d 'grant_type=client_credentials&client_id=im-alpha&client_secret=im-alpha-local-secret'
      then GET /v1/accounts/IM-ALPHA-FUND-001/positions with the token
Check the ledger: target/release/keelctl ledger verify
Stop: make down
INFO
