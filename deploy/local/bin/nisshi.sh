#!/usr/bin/env bash
# nisshi.sh start DIR PORT STORAGE: one nisshi broker on 127.0.0.1:PORT, its pid and log in DIR.
#   STORAGE is its storage engine: `postgres://keel@127.0.0.1:PG_PORT/DATABASE` (the database must
#   exist; nisshi creates its tables) or `sqlite://data/nisshi.db` (relative to DIR). Its log and
#   records survive restarts.
# nisshi.sh stop DIR: stops it (SIGTERM, then SIGKILL after 5 s).
set -euo pipefail
source "$(dirname "$0")/env.sh"
action=$1 dir=$2

case "$action" in
start)
  port=$3 storage=$4
  mkdir -p "$dir/data"
  if [ -f "$dir/nisshi.pid" ] && kill -0 "$(cat "$dir/nisshi.pid")" 2>/dev/null; then exit 0; fi
  # nisshi reads a .env file in its working directory and resolves sqlite paths against it: its own
  # folder. Each broker gets its own cluster id.
  (cd "$dir" && exec setsid "$NISSHI_BIN" broker \
      --cluster-id "keel-$port" \
      --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine "$storage" >>"$dir/nisshi.log" 2>&1 </dev/null &
   echo $! >"$dir/nisshi.pid")
  wait_for_port "$port" 60
  ;;
stop)
  stop_pidfile "$dir/nisshi.pid" 5
  ;;
*) echo "usage: nisshi.sh start DIR PORT STORAGE | stop DIR" >&2; exit 2 ;;
esac
