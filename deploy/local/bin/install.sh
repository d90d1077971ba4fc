#!/usr/bin/env bash
# Installs what the local stack needs and is missing: PostgreSQL 15 (Debian), the tansu broker
# (crates.io, built once into $KEEL_TOOLS, about 16 minutes), moto (PyPI, into a virtual environment
# in $KEEL_TOOLS) and the non-root Postgres user.
set -euo pipefail
source "$(dirname "$0")/env.sh"

if [ ! -x "$PG_BIN/postgres" ]; then
  log "installing PostgreSQL 15 from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql-15 >/dev/null
fi

if [ "$(id -u)" = 0 ] && ! id "$PG_USER" >/dev/null 2>&1; then
  log "creating system user $PG_USER to run Postgres"
  useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
fi

if [ ! -x "$TANSU_BIN" ] || ! "$TANSU_BIN" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
  log "installing tansu $TANSU_VERSION with cargo (once; about 16 minutes)"
  mkdir -p "$KEEL_TOOLS"
  CARGO_TARGET_DIR="$KEEL_CACHE/tansu-target" cargo install tansu --locked --version "$TANSU_VERSION" \
    --features libsql --root "$KEEL_TOOLS"
fi

if [ ! -x "$MOTO_BIN" ]; then
  log "installing moto $MOTO_VERSION (the local DynamoDB endpoint) into $MOTO_VENV"
  python3 -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi
