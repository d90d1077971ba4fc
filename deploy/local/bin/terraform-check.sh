#!/usr/bin/env bash
# Offline checks of the production Terraform (deploy/terraform), without a terraform binary or the
# network: deploy/terraform/check.py (every .tf parses; every Keel name comes from keel-names.json;
# variables and outputs in their files; nothing that looks like a secret), then checkov's Terraform
# checks, where every failed check fails the run unless the resource carries an inline
#   #checkov:skip=CKV_...:<why>
# (offline checkov has no severities, so none is waved through; each skip is listed, with its
# reason, in deploy/terraform/README.md, "Checker findings", which check.py verifies).
#
# The tools come from PyPI into virtual environments of their own under KEEL_TOOLS, made once and
# reused: python-hcl2 and checkov each install a module named hcl2 (checkov's is its fork,
# bc-python-hcl2), so they cannot share one.
#
# Usage, from anywhere in the clone: bash deploy/local/bin/terraform-check.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
# As deploy/local/bin/env.sh lays them out (not sourced: nothing else of it is needed here).
KEEL_CACHE="${KEEL_CACHE:-$HOME/.cache/keel}"
KEEL_TOOLS="${KEEL_TOOLS:-$KEEL_CACHE/tools}"

PYTHON_HCL2_VERSION="8.1.4"
CHECKOV_VERSION="3.3.30"
tools="$KEEL_TOOLS/terraform-check-hcl2-$PYTHON_HCL2_VERSION-checkov-$CHECKOV_VERSION"

log() { printf '\033[1m[keel]\033[0m %s\n' "$*" >&2; }

# Makes the virtual environment $1 with the pinned package $2, unless a finished one is there.
venv() {
  local dir=$1 requirement=$2
  [ -f "$dir/.installed" ] && return 0
  log "installing $requirement into $dir (once)"
  rm -rf "$dir"
  python3 -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check --no-input "$requirement"
  touch "$dir/.installed"
}

command -v python3 >/dev/null || { log "python3 is needed"; exit 2; }
venv "$tools/hcl2" "python-hcl2==$PYTHON_HCL2_VERSION"
venv "$tools/checkov" "checkov==$CHECKOV_VERSION"

cd "$root"
log "names, layout, secrets: deploy/terraform/check.py (python-hcl2 $PYTHON_HCL2_VERSION)"
"$tools/hcl2/bin/python" deploy/terraform/check.py

log "checkov $CHECKOV_VERSION (terraform, offline; every failed check fails)"
# Offline: no guideline download, no Bridgecrew/Prisma mapping, no platform key, no version check.
env -u BC_API_KEY LOG_LEVEL=ERROR \
  BC_SKIP_MAPPING=TRUE \
  CHECKOV_SKIP_DOWNLOAD=true \
  SKIP_VERSION_CHECK=true \
  "$tools/checkov/bin/checkov" \
  --directory deploy/terraform \
  --framework terraform \
  --skip-download \
  --quiet \
  --compact \
  --output cli
log "checkov $CHECKOV_VERSION (the image's Dockerfile, offline)"
env -u BC_API_KEY LOG_LEVEL=ERROR BC_SKIP_MAPPING=TRUE CHECKOV_SKIP_DOWNLOAD=true SKIP_VERSION_CHECK=true \
  "$tools/checkov/bin/checkov" \
  --file deploy/docker/Dockerfile \
  --framework dockerfile \
  --skip-download \
  --quiet \
  --compact \
  --output cli
log "terraform check: ok"
