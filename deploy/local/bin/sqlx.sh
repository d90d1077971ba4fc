#!/usr/bin/env bash
# sqlx.sh prepare|check: the compile-checked queries (`sqlx::query!` and friends) against a database
# with every service's schema migrated. `prepare` writes their data to .sqlx/ (check it in; builds
# read it, so they need no database); `check` fails when .sqlx/ does not match the code (make test).
# Starts a throwaway Postgres cluster of its own and stops it.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$KEEL_ROOT"
action=$1
keel_local="$CARGO_TARGET_DIR/debug/keel-local"
# Always rebuilt: it carries the migrations it applies.
cargo build --quiet -p keel-localstack --bin keel-local
dir="$KEEL_STATE/sqlx/postgres" port="${KEEL_SQLX_PG_PORT:-54392}"
trap '"$keel_local" postgres stop "$dir" || true' EXIT
"$keel_local" postgres stop "$dir" || true
rm -rf "$dir"
"$keel_local" postgres start "$dir" "$port" keel_sqlx --shared-buffers 64MB
url="postgres://keel@127.0.0.1:$port/keel_sqlx"
"$keel_local" migrate "$url"
export PATH="$KEEL_TOOLS/bin:$PATH"
case "$action" in
prepare) DATABASE_URL="$url" cargo sqlx prepare --workspace ;;
check) DATABASE_URL="$url" cargo sqlx prepare --workspace --check ;;
*) echo "usage: sqlx.sh prepare|check" >&2; exit 2 ;;
esac
