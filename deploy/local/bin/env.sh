# Shared settings for the local stack scripts. Sourced, not run.
# Everything the stack installs lives under KEEL_CACHE (outside the clone, reused across runs);
# everything it writes at run time lives under KEEL_STATE.
KEEL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
KEEL_CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
KEEL_TOOLS="${KEEL_TOOLS:-$KEEL_CACHE/tools}"
# One folder for all run-time state. It sits under /var/tmp rather than in the clone because the
# non-root Postgres user must be able to reach its data directory.
KEEL_STATE="${KEEL_STATE:-/var/tmp/keel-$(id -un)}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$KEEL_CACHE/target}"
# `target` in the clone points at the shared target dir, so binaries are where DESIGN section 8 says
# (target/release/keelctl) while builds are reused across clones.
if [ ! -e "$KEEL_ROOT/target" ] && [ "$CARGO_TARGET_DIR" != "$KEEL_ROOT/target" ]; then
  mkdir -p "$CARGO_TARGET_DIR" && ln -s "$CARGO_TARGET_DIR" "$KEEL_ROOT/target"
fi
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
# The Kafka-compatible broker: nisshi (crates.io), built once into KEEL_TOOLS.
NISSHI_BIN="${NISSHI_BIN:-$KEEL_TOOLS/bin/nisshi}"
NISSHI_VERSION="0.8.1"
# Where each broker keeps its log: `postgres` (a database of its own, the default: see
# docs/decisions.md) or `sqlite` (a file in the broker's folder).
KEEL_BROKER_STORAGE="${KEEL_BROKER_STORAGE:-postgres}"
# The local DynamoDB endpoint (the runbook lock, journals and reconciliation audit): moto, from PyPI,
# in a virtual environment of its own.
MOTO_VERSION="5.2.5"
MOTO_VENV="$KEEL_TOOLS/moto-$MOTO_VERSION"
MOTO_BIN="$MOTO_VENV/bin/moto_server"
# schemathesis (PyPI): the OpenAPI contract checked against the live ingress (make test only).
SCHEMATHESIS_VERSION="4.32.5"
SCHEMATHESIS_VENV="$KEEL_TOOLS/schemathesis-$SCHEMATHESIS_VERSION"
# cargo-fuzz (crates.io): the fuzz targets of every JSON body the API takes (make test, make fuzz).
CARGO_FUZZ_VERSION="0.13.2"
# sqlx-cli, for the compile-checked queries' data (.sqlx/): the version of the workspace's sqlx.
SQLX_CLI_VERSION="0.8.6"
# Postgres refuses to run as root; the stack runs it as this user when started as root.
PG_USER="${PG_USER:-keel}"
# The local clusters require a password (scram); keel-local makes it once, under KEEL_STATE (never in
# the repository), and libpq, sqlx and the harness read it through this password file.
export PGPASSFILE="${PGPASSFILE:-$KEEL_STATE/secrets/pgpass}"
# keel-local, the harness and keelctl's local database operations find the tools here.
PROMETHEUS_BIN=/usr/bin/prometheus PROMTOOL_BIN=/usr/bin/promtool
export KEEL_PG_BIN="$PG_BIN" KEEL_PG_USER="$PG_USER" KEEL_NISSHI_BIN="$NISSHI_BIN" KEEL_MOTO_BIN="$MOTO_BIN"
export KEEL_PROMETHEUS_BIN="$PROMETHEUS_BIN" KEEL_SCHEMATHESIS_BIN="$SCHEMATHESIS_VENV/bin/schemathesis"

log() { printf '\033[1m[keel]\033[0m %s\n' "$*" >&2; }

# Runs a command as the Postgres user (as is, when not root).
as_pg_user() {
  if [ "$(id -u)" = 0 ]; then runuser -u "$PG_USER" -- "$@"; else "$@"; fi
}

# Waits until a TCP port on 127.0.0.1 accepts connections, or fails after $2 seconds.
wait_for_port() {
  local port=$1 seconds=${2:-30} i
  for ((i = 0; i < seconds * 10; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  log "nothing listens on 127.0.0.1:$port after ${seconds}s"
  return 1
}

# Stops the process in PIDFILE (SIGTERM, then SIGKILL after $2 seconds, 10 by default) and removes
# the file.
stop_pidfile() {
  local pidfile=$1 seconds=${2:-10} pid i
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -TERM "$pid" 2>/dev/null; then
    for ((i = 0; i < seconds * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

# Stops, with SIGKILL, every process noted in DIR (one file per pid, written by the test harness as
# it starts a process), if it still is one of ours: a Keel binary, the broker or moto (a pid can be
# reused). Removes DIR.
stop_noted() {
  local dir=$1 noted pid
  for noted in "$dir"/*; do
    [ -f "$noted" ] || continue
    pid=$(basename "$noted")
    if grep -qaE "$CARGO_TARGET_DIR|$NISSHI_BIN|$MOTO_VENV" "/proc/$pid/cmdline" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$dir"
}
