#!/usr/bin/env bash
# The entrypoint writes each variable it knows to its file, private, points the setting at it,
# takes the variable out of the environment, and runs the command; with no command it refuses.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
run_dir="$(mktemp -d)"
trap 'rm -rf "$run_dir"' EXIT

seen="$(env -i PATH="$PATH" KEEL_RUN_DIR="$run_dir" \
  KEEL_CONFIG_TOML=$'region = "us-east-1"\n' \
  KEEL_OPERATORS_TOML='[[operators]]' \
  sh "$here/entrypoint.sh" env)"

fail() { echo "entrypoint test: $*" >&2; exit 1; }
grep -qx "KEEL_CONFIG=$run_dir/keel.toml" <<<"$seen" || fail "KEEL_CONFIG not pointed at the file"
grep -qx "KEEL_OPERATORS__REGISTRY=$run_dir/operators.toml" <<<"$seen" || fail "operators registry not pointed at the file"
grep -q "^KEEL_CONFIG_TOML=" <<<"$seen" && fail "KEEL_CONFIG_TOML left in the environment"
grep -q "^KEEL_CREDENTIALS_FILE=" <<<"$seen" && fail "an unset variable produced a file setting"
[ "$(cat "$run_dir/keel.toml")" = 'region = "us-east-1"' ] || fail "keel.toml does not hold the configuration"
[ "$(stat -c %a "$run_dir/keel.toml")" = 600 ] || fail "keel.toml is readable by others"
if env -i PATH="$PATH" KEEL_RUN_DIR="$run_dir" sh "$here/entrypoint.sh" 2>/dev/null; then
  fail "ran with no command"
fi
echo "entrypoint: ok"
