#!/usr/bin/env bash
# postgres.sh start DIR PORT [DATABASE...]: one Postgres 15 primary in DIR on 127.0.0.1:PORT, owned by
#   a non-root user, with the given databases created.
# postgres.sh standby DIR PORT PRIMARY_PORT NAME: a physical streaming standby of the primary on
#   PRIMARY_PORT, cloned with pg_basebackup, replicating as NAME; the primary lists NAME in
#   synchronous_standby_names, so a transaction that sets synchronous_commit=on waits for it (others
#   commit locally: synchronous_commit=local is the clusters' default).
# postgres.sh rebuild DIR PORT PRIMARY_PORT NAME: stops the cluster in DIR (a former primary, say),
#   keeps its data as DIR/data.replaced (the one kept before is removed) and clones it again as a
#   standby of PRIMARY_PORT, as `standby` does (keelctl's re-protection).
# postgres.sh promote DIR: makes a standby a primary.
# postgres.sh stop DIR: stops the cluster (fast shutdown).
set -euo pipefail
source "$(dirname "$0")/env.sh"
action=$1 dir=$2 port=${3:-}
shift $(($# < 3 ? $# : 3))

# A postmaster killed outright stays a zombie until something reaps it, and both pg_ctl and
# Postgres take a zombie's pid in its lock files (postmaster.pid, the socket's lock) for a running
# server. Lock files of a dead or zombie process are stale: removed.
clear_dead_lock() {
  local lock pid state
  for lock in "$1/data/postmaster.pid" "$1"/run/.s.PGSQL.*.lock; do
    [ -f "$lock" ] || continue
    pid=$(head -1 "$lock")
    state=$(sed -n 's/^[0-9]* (.*) \([A-Z]\).*/\1/p' "/proc/$pid/stat" 2>/dev/null || true)
    if [ -z "$state" ] || [ "$state" = Z ]; then
      rm -f "$lock" "${lock%.lock}"
    fi
  done
}

case "$action" in
start)
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown "$PG_USER" "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg_user "$PG_BIN/initdb" -D "$dir/data" -U keel --auth=trust -E UTF8 >"$dir/initdb.log"
    mkdir -p "$dir/run" && [ "$(id -u)" = 0 ] && chown "$PG_USER" "$dir/run"
    cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/run'
max_connections = 300
shared_buffers = ${PG_SHARED_BUFFERS:-512MB}
max_wal_size = 4GB
checkpoint_timeout = 15min
wal_compression = lz4
# Large values (a trade's state with both legs) are compressed with lz4 rather than pglz: several
# times cheaper in CPU for about the same size (measured: pglz was a visible share of the stores'
# CPU at 1,000 legs/s).
default_toast_compression = lz4
wal_level = replica
max_wal_senders = 10
fsync = on
synchronous_commit = local
hot_standby = on
wal_keep_size = 1GB
logging_collector = off
# Statement statistics, for finding where the database's time goes (CREATE EXTENSION
# pg_stat_statements in a database to read them).
shared_preload_libraries = 'pg_stat_statements'
CONF
  fi
  clear_dead_lock "$dir"
  if ! as_pg_user "$PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    as_pg_user "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null
  fi
  for db in "$@"; do
    as_pg_user "$PG_BIN/psql" -h 127.0.0.1 -p "$port" -U keel -d postgres -qtAc \
      "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 ||
      as_pg_user "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U keel "$db"
  done
  ;;
standby)
  primary_port=$1 name=$2
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown "$PG_USER" "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg_user "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U keel -D "$dir/data" \
      -X stream --checkpoint=fast -R -d "application_name=$name" >"$dir/basebackup.log" 2>&1
    mkdir -p "$dir/run" && [ "$(id -u)" = 0 ] && chown "$PG_USER" "$dir/run"
    cat >>"$dir/data/postgresql.conf" <<CONF
port = $port
unix_socket_directories = '$dir/run'
CONF
  fi
  clear_dead_lock "$dir"
  if ! as_pg_user "$PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    as_pg_user "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start >/dev/null
  fi
  as_pg_user "$PG_BIN/psql" -h 127.0.0.1 -p "$primary_port" -U keel -d postgres -qtA \
    -c "ALTER SYSTEM SET synchronous_standby_names = '\"$name\"'" -c "SELECT pg_reload_conf()" >/dev/null
  ;;
rebuild)
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg_user "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  fi
  # A cluster killed outright leaves postmaster.pid behind; make sure nothing still runs on it.
  clear_dead_lock "$dir"
  if as_pg_user "$PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    echo "postgres.sh: the cluster in $dir still runs; not rebuilding it" >&2
    exit 1
  fi
  if [ -d "$dir/data" ]; then
    rm -rf "$dir/data.replaced"
    mv "$dir/data" "$dir/data.replaced"
  fi
  exec bash "$0" standby "$dir" "$port" "$@"
  ;;
promote)
  as_pg_user "$PG_BIN/pg_ctl" -D "$dir/data" -w -t 60 promote >/dev/null
  ;;
stop)
  clear_dead_lock "$dir"
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_pg_user "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null || true
  fi
  ;;
*) echo "usage: postgres.sh start DIR PORT [DATABASE...] | standby DIR PORT PRIMARY_PORT NAME | rebuild DIR PORT PRIMARY_PORT NAME | promote DIR | stop DIR" >&2; exit 2 ;;
esac
