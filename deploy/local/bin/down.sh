#!/usr/bin/env bash
# make down: stops everything `make up` started (the generator and services first, so they drain,
# then the brokers, the databases and the ARC cluster). State stays in $KEEL_STATE for the next
# `make up`.
set -euo pipefail
source "$(dirname "$0")/env.sh"

stop_pidfile "$KEEL_STATE/arc/pids/generator.pid"
stop_pidfile "$KEEL_STATE/arc/pids/reconciler.pid"
for dir in "$KEEL_STATE"/us-*; do
  [ -d "$dir" ] || continue
  for name in generator ingress ingestion matching notification settlement; do
    stop_pidfile "$dir/pids/$name.pid"
  done
done
for dir in "$KEEL_STATE"/us-*; do
  [ -d "$dir" ] || continue
  bash "$(dirname "$0")/nisshi.sh" stop "$dir/kafka"
  for app in tm st kafka; do
    bash "$(dirname "$0")/postgres.sh" stop "$dir/$app-postgres"
  done
  log "stopped $(basename "$dir")"
done
for pidfile in "$KEEL_STATE"/arc/pids/endpoint-*.pid; do
  stop_pidfile "$pidfile"
done
log "stopped the ARC cluster"
bash "$(dirname "$0")/moto.sh" stop "$KEEL_STATE/dynamodb" 0
log "stopped the DynamoDB endpoint"
