#!/usr/bin/env bash
# moto.sh start|stop DIR PORT: the local DynamoDB endpoint (moto_server) on 127.0.0.1:PORT, its pid
# and log in DIR. moto keeps tables in memory: they last until it stops (DESIGN section 8; on AWS
# the runbook table is a DynamoDB global table).
set -euo pipefail
source "$(dirname "$0")/env.sh"
action=$1 dir=$2 port=$3

case "$action" in
start)
  mkdir -p "$dir"
  if [ -f "$dir/moto.pid" ] && kill -0 "$(cat "$dir/moto.pid")" 2>/dev/null; then exit 0; fi
  setsid "$MOTO_BIN" -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 </dev/null &
  echo $! >"$dir/moto.pid"
  wait_for_port "$port" 30
  ;;
stop)
  stop_pidfile "$dir/moto.pid" 5
  ;;
*) echo "usage: moto.sh start|stop DIR PORT" >&2; exit 2 ;;
esac
