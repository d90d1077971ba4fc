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
  if [ -f "$dir/tansu.pid" ]; then
    pid=$(cat "$dir/tansu.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$dir/tansu.pid"
  fi
  ;;
*) echo "usage: tansu.sh start|stop DIR PORT" >&2; exit 2 ;;
esac
