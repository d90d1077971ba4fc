#!/usr/bin/env bash
# fuzz.sh SECONDS [TARGET...]: runs every cargo fuzz target (fuzz/fuzz_targets; or those named) for SECONDS each, one after
# another, and prints a table of targets, runs, seconds and crashes. `make test` runs it for a short
# bound; `make fuzz` for an hour in all (FUZZ_SECONDS per target, 1200 by default).
#
# Each target's corpus grows under $KEEL_STATE/fuzz/corpus/TARGET, seeded from fuzz/seeds/TARGET (in
# the repository); a crash is kept under $KEEL_STATE/fuzz/artifacts/TARGET and fails the run.
# libFuzzer's coverage instrumentation without a sanitizer: Keel has no unsafe code of its own, and
# this builds on the stable toolchain.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$KEEL_ROOT/fuzz"
seconds=${1:?usage: fuzz.sh SECONDS_PER_TARGET [TARGET...]}
shift
cargo_fuzz="$KEEL_TOOLS/bin/cargo-fuzz"
targets=${*:-$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^keel-fuzz$')}
log "building the fuzz targets ($(echo $targets | tr '\n' ' '))"
"$cargo_fuzz" build --sanitizer none

failed=0 table=""
for target in $targets; do
  corpus="$KEEL_STATE/fuzz/corpus/$target" artifacts="$KEEL_STATE/fuzz/artifacts/$target/"
  mkdir -p "$corpus" "$artifacts"
  log "fuzzing $target for ${seconds}s"
  out="$KEEL_STATE/fuzz/$target.log"
  if "$cargo_fuzz" run --sanitizer none "$target" "$corpus" "seeds/$target" -- \
      -max_total_time="$seconds" -artifact_prefix="$artifacts" -print_final_stats=1 >"$out" 2>&1; then
    crashes=0
  else
    crashes=$(find "$artifacts" -type f | wc -l)
    failed=1
    tail -40 "$out" >&2
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -1)
  took=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$out" | tail -1)
  table+="$(printf '%-12s %12s %8s %8s %8s' "$target" "${runs:-?}" "${took:-?}" "$(find "$corpus" -type f | wc -l)" "$crashes")"$'\n'
done
printf '%-12s %12s %8s %8s %8s\n' target runs seconds corpus crashes
printf '%s' "$table"
exit $failed
