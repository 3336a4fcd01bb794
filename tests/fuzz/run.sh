#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600), one after another, and prints a
# summary per target: executions, exec/s, coverage (cov/ft), corpus size, crashes.
#
#   tests/fuzz/run.sh [SECONDS]
#
# cargo-fuzz needs nightly-only rustc flags (-Zsanitizer=address and friends); on a stable
# toolchain RUSTC_BOOTSTRAP=1 unlocks them, which is what this script does. Corpora grow in
# tests/fuzz/corpus/<target> (seeded from tests/fuzz/seeds/<target>), findings land in
# tests/fuzz/artifacts/<target>, logs in tests/fuzz/logs; all three are ignored by git.
# Reproduce a finding with: RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz <target> <file>
# Skip the build (run what is built) with FUZZ_NO_BUILD=1.
set -euo pipefail

seconds="${1:-600}"
fuzz_dir="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$fuzz_dir/../.." && pwd)"
# FUZZ_TARGETS="codec token" runs a subset.
read -r -a targets <<<"${FUZZ_TARGETS:-token codec import_jsonl import_redb}"
export RUSTC_BOOTSTRAP=1

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

cd "$repo"
build_start=$(date +%s)
[ -n "${FUZZ_NO_BUILD:-}" ] || cargo fuzz build --fuzz-dir "$fuzz_dir"
echo "built the fuzz targets in $(($(date +%s) - build_start))s"
bin_dir="$fuzz_dir/target/$(rustc -vV | sed -n 's/^host: //p')/release"

# The redb target writes a file per run; a tmpfs keeps it CPU bound rather than disk bound.
scratch="$(mktemp -d "${FUZZ_TMPDIR:-/dev/shm}/iblueprint-fuzz.XXXXXX" 2>/dev/null || mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

mkdir -p "$fuzz_dir/logs"
summary=()
failed=0
for target in "${targets[@]}"; do
    corpus="$fuzz_dir/corpus/$target"
    mkdir -p "$corpus" "$fuzz_dir/artifacts/$target"
    if [ -d "$fuzz_dir/seeds/$target" ]; then
        cp -n "$fuzz_dir/seeds/$target"/* "$corpus"/ 2>/dev/null || true
    fi
    if [ "$target" = import_redb ]; then
        cp -n "$repo/tests/fixtures/schema-v1.redb" "$corpus/" 2>/dev/null || true
    fi
    dict=()
    [ -f "$fuzz_dir/dict/$target.dict" ] && dict=("-dict=$fuzz_dir/dict/$target.dict")
    log="$fuzz_dir/logs/$target.log"
    echo "== $target: ${seconds}s (log: $log)"
    status=0
    # The binaries built above, run directly: `cargo fuzz run` would rebuild the library
    # whenever a source file changed since, and every target should test the same build.
    TMPDIR="$scratch" "$bin_dir/$target" -artifact_prefix="$fuzz_dir/artifacts/$target/" \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 "${dict[@]}" \
        "$corpus" >"$log" 2>&1 || status=$?
    # The last status line looks like: #123 DONE cov: 1 ft: 2 corp: 3/4b lim: 5 exec/s: 6 rss: 7Mb
    last="$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)"
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
    cov="$(sed -nE 's/.* cov: ([0-9]+) ft: ([0-9]+).*/\1\/\2/p' <<<"$last")"
    corp="$(sed -nE 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<<"$last")"
    rss="$(sed -nE 's/.* rss: ([0-9]+Mb).*/\1/p' <<<"$last")"
    if [ "$status" -eq 0 ]; then outcome=ok; else outcome="FAILED (exit $status, see $log and artifacts/$target)"; failed=1; fi
    summary+=("$(printf '%-13s execs %-11s exec/s %-7s cov/ft %-12s corpus %-14s rss %-7s %s' \
        "$target" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${corp:-?}" "${rss:-?}" "$outcome")")
    echo "${summary[-1]}"
done

echo
echo "== summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
exit "$failed"
