#!/usr/bin/env bash
# tansu.sh start|stop DIR PORT: one tansu broker on 127.0.0.1:PORT whose log is an SQLite file in
# DIR/data (it survives restarts).
set -euo pipefail
source "$(dirname "$0")/env.sh"
action=$1 dir=$2 port=$3

case "$action" in
start)
  mkdir -p "$dir/data"
  if [ -f "$dir/tansu.pid" ] && kill -0 "$(cat "$dir/tansu.pid")" 2>/dev/null; then exit 0; fi
  # The sqlite path is relative to the broker's working directory.
  (cd "$dir" && exec setsid "$TANSU_BIN" broker \
      --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine "sqlite://data/tansu.db" >"$dir/tansu.log" 2>&1 &
   echo $! >"$dir/tansu.pid")
  wait_for_port "$port" 30
  ;;
stop)
  stop_pidfile "$dir/tansu.pid" 5
  ;;
*) echo "usage: tansu.sh start|stop DIR PORT" >&2; exit 2 ;;
esac
