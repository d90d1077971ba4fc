#!/usr/bin/env bash
# Installs what the local stack needs and is missing: PostgreSQL 15 and Prometheus (Debian), the nisshi broker
# (crates.io, built once into $KEEL_TOOLS, about 21 minutes), moto (PyPI, into a virtual environment
# in $KEEL_TOOLS), sqlx-cli (crates.io, into $KEEL_TOOLS) and the non-root Postgres user. With
# --test, also what only the tests need: Chromium and its WebDriver (Debian) for the console's
# browser test.
set -euo pipefail
source "$(dirname "$0")/env.sh"
for_tests=false
[ "${1:-}" = "--test" ] && for_tests=true

# librdkafka is built with OpenSSL (TLS to MSK): its headers for the build.
if [ ! -f /usr/include/openssl/ssl.h ]; then
  log "installing OpenSSL's headers (libssl-dev) from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq libssl-dev pkg-config >/dev/null
fi

if [ ! -x "$PG_BIN/postgres" ]; then
  log "installing PostgreSQL 15 from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql-15 >/dev/null
fi

if [ ! -x "$PROMETHEUS_BIN" ] || [ ! -x "$PROMTOOL_BIN" ]; then
  log "installing Prometheus (and promtool) from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Its package would start a system-wide daemon where systemd runs; make up starts its own.
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

if [ "$(id -u)" = 0 ] && ! id "$PG_USER" >/dev/null 2>&1; then
  log "creating system user $PG_USER to run Postgres"
  useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
fi

if [ ! -x "$NISSHI_BIN" ] || ! "$NISSHI_BIN" --version 2>/dev/null | grep -q "$NISSHI_VERSION"; then
  log "installing nisshi $NISSHI_VERSION with cargo (once; about 21 minutes)"
  mkdir -p "$KEEL_TOOLS"
  # --ignore-rust-version: its locked rama asks for a newer rustc than the machine's, which builds
  # it fine. Postgres and SQLite (libsql) storage engines only.
  CARGO_TARGET_DIR="$KEEL_CACHE/nisshi-target" cargo install nisshi --locked --ignore-rust-version \
    --version "$NISSHI_VERSION" --no-default-features --features postgres,libsql --root "$KEEL_TOOLS"
  rm -rf "$KEEL_CACHE/nisshi-target"
fi

if [ ! -x "$MOTO_BIN" ]; then
  log "installing moto $MOTO_VERSION (the local DynamoDB endpoint) into $MOTO_VENV"
  python3 -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

if [ ! -x "$KEEL_TOOLS/bin/cargo-sqlx" ] || ! "$KEEL_TOOLS/bin/sqlx" --version 2>/dev/null | grep -q "$SQLX_CLI_VERSION"; then
  log "installing sqlx-cli $SQLX_CLI_VERSION (the compile-checked queries' data; once, a few minutes)"
  mkdir -p "$KEEL_TOOLS"
  CARGO_TARGET_DIR="$KEEL_CACHE/sqlx-target" cargo install sqlx-cli --locked --version "$SQLX_CLI_VERSION" \
    --no-default-features --features postgres,rustls --root "$KEEL_TOOLS"
  rm -rf "$KEEL_CACHE/sqlx-target"
fi

if $for_tests && { ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; }; then
  log "installing Chromium and chromedriver from Debian's packages (the console's browser test)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium chromium-driver >/dev/null
fi

if $for_tests && { [ ! -x "$KEEL_TOOLS/bin/cargo-fuzz" ] || ! "$KEEL_TOOLS/bin/cargo-fuzz" --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; }; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION (the fuzz targets; once, about a minute)"
  mkdir -p "$KEEL_TOOLS"
  CARGO_TARGET_DIR="$KEEL_CACHE/cargo-fuzz-target" cargo install cargo-fuzz --locked \
    --version "$CARGO_FUZZ_VERSION" --root "$KEEL_TOOLS"
  rm -rf "$KEEL_CACHE/cargo-fuzz-target"
fi

if $for_tests && [ ! -x "$SCHEMATHESIS_VENV/bin/schemathesis" ]; then
  log "installing schemathesis $SCHEMATHESIS_VERSION (the API contract against the live ingress) into $SCHEMATHESIS_VENV"
  python3 -m venv "$SCHEMATHESIS_VENV"
  "$SCHEMATHESIS_VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
