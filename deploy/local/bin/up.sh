#!/usr/bin/env bash
# make up: installs what is missing, then runs the two-region system on this machine
# (DESIGN section 8):
#   - the local ARC cluster: three keel-arc-endpoint processes sharing one state file;
#   - the local DynamoDB endpoint (moto), where keelctl keeps the runbook lock, journals and audit;
#   - per application, a Postgres primary in its active region and a streaming standby in the other
#     (trade matching and settlement are active in KEEL_TM_ACTIVE and KEEL_ST_ACTIVE, us-east-1 by
#     default; they may differ);
#   - per region, a nisshi broker (its log in a Postgres cluster of its own, or with
#     KEEL_BROKER_STORAGE=sqlite in a file) and every service (warm: a service whose processing
#     control is Off waits, and a standby region's ingress answers 503 naming the active one);
#   - the trade generator, which follows the active region.
# KEEL_REPLICATION__SYNCHRONOUS=true makes ingress acknowledge only what the standby has flushed.
# Safe to run again: what already runs is left running.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$KEEL_ROOT"

bash deploy/local/bin/install.sh
log "building release binaries"
cargo build --release --workspace --bins --quiet
bin="$CARGO_TARGET_DIR/release"
export KEEL_CONFIG="$KEEL_ROOT/deploy/local/config/keel.toml"
regions=(us-east-1 us-west-2)
tm_active="${KEEL_TM_ACTIVE:-us-east-1}"
st_active="${KEEL_ST_ACTIVE:-us-east-1}"
declare -A kafka_port=([us-east-1]=19092 [us-west-2]=29092)
declare -A ingress_port=([us-east-1]=8081 [us-west-2]=8082)
declare -A ops_base=([us-east-1]=91 [us-west-2]=92)
declare -A tm_pg=([us-east-1]=54321 [us-west-2]=54331)
declare -A st_pg=([us-east-1]=54322 [us-west-2]=54332)
declare -A kafka_pg=([us-east-1]=54323 [us-west-2]=54333)

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
# start PIDFILE LOG COMMAND...: runs COMMAND in the background unless it already runs.
start() {
  local pidfile=$1 logfile=$2; shift 2
  if running "$pidfile"; then return; fi
  setsid "$@" >>"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

arc="$KEEL_STATE/arc"
mkdir -p "$arc/logs" "$arc/pids"
log "starting the ARC cluster on 127.0.0.1:18301-18303 (a fresh state starts trade matching in $tm_active, settlement in $st_active)"
for i in 1 2 3; do
  start "$arc/pids/endpoint-$i.pid" "$arc/logs/endpoint-$i.log" "$bin/keel-arc-endpoint" \
    --listen "127.0.0.1:1830$i" --state "$arc/state.json" --regions us-east-1,us-west-2 \
    --active "trade-matching=$tm_active" --active "settlement=$st_active"
done
for i in 1 2 3; do wait_for_port "1830$i" 30; done

log "starting the local DynamoDB endpoint (moto) on 127.0.0.1:18400: the runbook lock, journals and audit"
bash deploy/local/bin/moto.sh start "$KEEL_STATE/dynamodb" 18400

# On an existing state the routing controls, not KEEL_*_ACTIVE, say where each application is
# active: after a handover its primary database is in the other region.
controls=$("$bin/keelctl" --json controls list) || { log "cannot read the routing controls"; exit 1; }
processing_region() { # APP FALLBACK
  for region in "${regions[@]}"; do
    grep -q "\"$1-$region-processing\": true" <<<"$controls" && { echo "$region"; return; }
  done
  echo "$2"
}
tm_active=$(processing_region trade-matching "$tm_active")
st_active=$(processing_region settlement "$st_active")

# database APP DB ACTIVE PORTS-ARRAY: the primary in ACTIVE, a standby in every other region.
database() {
  local app=$1 db=$2 active=$3; local -n ports=$4
  log "starting Postgres ($app primary, $active) on 127.0.0.1:${ports[$active]}"
  [ -f "$KEEL_STATE/$active/$app-postgres/data/standby.signal" ] &&
    log "WARNING: $app's database in $active, where $app processes, is still a standby: finish the handover by promoting it (runbooks/routing-controls.md)"
  bash deploy/local/bin/postgres.sh start "$KEEL_STATE/$active/$app-postgres" "${ports[$active]}" "$db"
  for region in "${regions[@]}"; do
    [ "$region" = "$active" ] && continue
    local data="$KEEL_STATE/$region/$app-postgres/data"
    if [ -f "$data/PG_VERSION" ] && [ ! -f "$data/standby.signal" ]; then
      # A former primary, left by a handover: it may hold writes the new primary lacks, so it is
      # neither started (two primaries) nor overwritten (runbooks/routing-controls.md).
      log "WARNING: $app's database in $region is a former primary, not a standby of $active; not starting it (runbooks/routing-controls.md, re-protect)"
      continue
    fi
    log "starting Postgres ($app standby, $region) on 127.0.0.1:${ports[$region]}"
    bash deploy/local/bin/postgres.sh standby "$KEEL_STATE/$region/$app-postgres" "${ports[$region]}" \
      "${ports[$active]}" "${db}_${region//-/_}"
  done
}
database tm keel_tm "$tm_active" tm_pg
database st keel_st "$st_active" st_pg

for region in "${regions[@]}"; do
  dir="$KEEL_STATE/$region"
  mkdir -p "$dir/logs" "$dir/pids"
  if [ "$KEEL_BROKER_STORAGE" = sqlite ]; then
    storage="sqlite://data/nisshi.db"
  else
    bash deploy/local/bin/postgres.sh start "$dir/kafka-postgres" "${kafka_pg[$region]}" keel_kafka
    storage="postgres://keel@127.0.0.1:${kafka_pg[$region]}/keel_kafka"
  fi
  log "starting nisshi ($region) on 127.0.0.1:${kafka_port[$region]} ($KEEL_BROKER_STORAGE storage)"
  bash deploy/local/bin/nisshi.sh start "$dir/kafka" "${kafka_port[$region]}" "$storage"
  b=${ops_base[$region]}
  start "$dir/pids/ingress.pid" "$dir/logs/ingress.log" env KEEL_REGION="$region" KEEL_LISTEN="127.0.0.1:${ingress_port[$region]}" "$bin/keel-ingress"
  start "$dir/pids/ingestion.pid" "$dir/logs/ingestion.log" env KEEL_REGION="$region" KEEL_OPS_LISTEN="127.0.0.1:${b}11" "$bin/keel-ingestion"
  start "$dir/pids/matching.pid" "$dir/logs/matching.log" env KEEL_REGION="$region" KEEL_OPS_LISTEN="127.0.0.1:${b}12" "$bin/keel-matching"
  start "$dir/pids/notification.pid" "$dir/logs/notification.log" env KEEL_REGION="$region" KEEL_OPS_LISTEN="127.0.0.1:${b}13" "$bin/keel-notification"
  start "$dir/pids/settlement.pid" "$dir/logs/settlement.log" env KEEL_REGION="$region" KEEL_OPS_LISTEN="127.0.0.1:${b}21" "$bin/keel-settlement"
done

for port in 8081 9111 9112 9113 9121 8082 9211 9212 9213 9221; do
  for _ in $(seq 300); do
    curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || { log "a service on $port is not ready; see $KEEL_STATE/*/logs"; exit 1; }
done

# It starts at the active region's ingress, follows refusals to whichever region is active, and runs
# only while the `generator` routing control is On.
standby_region=us-west-2; [[ $tm_active == us-west-2 ]] && standby_region=us-east-1
start "$arc/pids/generator.pid" "$KEEL_STATE/generator.log" "$bin/keel-generator" \
  --ingress "http://127.0.0.1:${ingress_port[$tm_active]},http://127.0.0.1:${ingress_port[$standby_region]}" \
  --control-endpoints "http://127.0.0.1:18301,http://127.0.0.1:18302,http://127.0.0.1:18303" \
  --rate "${KEEL_GENERATOR_RATE:-5}"

# Reconciliation runs continuously and exports the gaps per hop as metrics.
start "$arc/pids/reconciler.pid" "$KEEL_STATE/reconciler.log" "$bin/keelctl" reconcile --watch \
  --metrics-listen 127.0.0.1:9190 --interval-seconds 15

cat <<INFO

Keel is up in two regions. State and logs: $KEEL_STATE
  trade matching active in $tm_active, settlement active in $st_active (standby databases in the other region)

  region      ingress                 ops: ingestion matching notification settlement   Kafka
  us-east-1   http://127.0.0.1:8081   9111 9112 9113 9121                                127.0.0.1:19092
  us-west-2   http://127.0.0.1:8082   9211 9212 9213 9221                                127.0.0.1:29092
  (nisshi brokers, $KEEL_BROKER_STORAGE storage; with Postgres storage their clusters are on 54323 / 54333)

  Postgres    trade matching 54321 (us-east-1) / 54331 (us-west-2), db keel_tm
              settlement     54322 (us-east-1) / 54332 (us-west-2), db keel_st
  ARC         http://127.0.0.1:18301 18302 18303 (state: $arc/state.json)
  DynamoDB    http://127.0.0.1:18400 (moto: runbook lock, journals, audit; in memory)
  reconciler  http://127.0.0.1:9190/metrics (keel_reconcile_gaps per hop, every 15 s)
  generator   ${KEEL_GENERATOR_RATE:-5} legs/s ($KEEL_STATE/generator.log)

Status:   target/release/keelctl status
Controls: target/release/keelctl controls set generator=Off
Ledger:   target/release/keelctl ledger verify
Rotate:   target/release/keelctl rotate --app trade-matching --to us-west-2 --dry-run
Stop:     make down
INFO
