#!/bin/sh
# The image's entrypoint. ECS hands a task its configuration and its Secrets Manager entries as
# environment variables, and Keel's processes read some of them as files: each one that is set is
# written (readable by this user only) under $KEEL_RUN_DIR, a task volume since the root filesystem
# is read-only, and removed from the environment; the setting that names the file is pointed at
# it. Then the command runs: `keel-entrypoint keel-ingress`.
set -eu

run_dir="${KEEL_RUN_DIR:-/run/keel}"
umask 077
mkdir -p "$run_dir"

# file VARIABLE FILE SETTING: writes $VARIABLE to FILE and exports SETTING=its path.
file() {
  eval "value=\${$1-}"
  if [ -n "$value" ]; then
    printf '%s' "$value" >"$run_dir/$2"
    unset "$1"
    export "$3=$run_dir/$2"
  fi
}

file KEEL_CONFIG_TOML keel.toml KEEL_CONFIG
file KEEL_PARTICIPANT_CREDENTIALS_JSON participant-credentials.json KEEL_CREDENTIALS_FILE
file KEEL_REFERENCE_DATA_JSON reference-data.json KEEL_REFERENCE_DATA
file KEEL_OPERATORS_TOML operators.toml KEEL_OPERATORS__REGISTRY
unset value

if [ "$#" -eq 0 ]; then
  echo "keel-entrypoint: name the binary to run (keel-ingress, keelctl, ...)" >&2
  exit 64
fi
exec "$@"
