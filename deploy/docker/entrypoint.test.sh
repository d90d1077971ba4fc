#!/usr/bin/env bash
# The entrypoint does, for every variable deploy/terraform/keel-names.json says it turns into a
# file (environment.files): writes the file, private, points the setting at it, and takes the
# variable out of the environment; then runs the command. With no command it refuses.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
names="$here/../terraform/keel-names.json"
run_dir="$(mktemp -d)"
trap 'rm -rf "$run_dir"' EXIT
fail() { echo "entrypoint test: $*" >&2; exit 1; }

mapfile -t files < <(python3 -c 'import json,sys; [print(f["variable"], f["setting"]) for f in json.load(open(sys.argv[1]))["environment"]["files"]]' "$names")
[ "${#files[@]}" -gt 0 ] || fail "keel-names.json lists no files"

given=(PATH="$PATH" KEEL_RUN_DIR="$run_dir")
for entry in "${files[@]}"; do
  variable="${entry% *}"
  given+=("$variable=content of $variable")
done
seen="$(env -i "${given[@]}" sh "$here/entrypoint.sh" env)"

for entry in "${files[@]}"; do
  variable="${entry% *}" setting="${entry#* }"
  file="$(sed -n "s/^$setting=//p" <<<"$seen")"
  [ -n "$file" ] || fail "$setting not set for $variable"
  [ "$(cat "$file")" = "content of $variable" ] || fail "$file does not hold $variable"
  [ "$(stat -c %a "$file")" = 600 ] || fail "$file is readable by others"
  grep -q "^$variable=" <<<"$seen" && fail "$variable left in the environment"
done

# A variable not given makes no file and no setting.
seen="$(env -i PATH="$PATH" KEEL_RUN_DIR="$run_dir/empty" sh "$here/entrypoint.sh" env)"
made="$(grep '^KEEL_' <<<"$seen" | grep -v '^KEEL_RUN_DIR=' || true)"
[ -z "$made" ] || fail "settings made from nothing: $made"
if env -i PATH="$PATH" KEEL_RUN_DIR="$run_dir" sh "$here/entrypoint.sh" 2>/dev/null; then
  fail "ran with no command"
fi
echo "entrypoint: ok (${#files[@]} files)"
