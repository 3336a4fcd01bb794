#!/usr/bin/env bash
# Backup and import at scale (issue 5, "Figures in the README"):
#
#   - `iblueprint backup` (redb and jsonl) and `iblueprint import` times with KEYS keys
#     (default 1,000,000) in the data file;
#   - the server's requests/s on GET /v1/auth while backups run back to back, as a ratio of
#     its requests/s without them, in the same run.
#
# Usage: bash benches/http/backup.sh        (KEYS=100000 for a quicker run)
#
# Builds release binaries, copies them to a temporary folder (removed on exit: it holds
# secrets), seeds the data file with the `seed` tool, then measures. wrk and the server
# share this machine's cores, and so does the backup process: the ratio is what a busy
# 2-core VM sees, not server capacity.

set -euo pipefail

KEYS=${KEYS:-1000000}
SECRETS=${SECRETS:-1000}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-64}
WRK_DURATION=${WRK_DURATION:-10s}
LIMIT=1000000000

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

SCRIPT=backup.sh
# shellcheck source=benches/http/common.sh
source "$HERE/common.sh"
seconds_since() { awk -v us=$(( $(now_us) - $1 )) 'BEGIN { printf "%.2f", us / 1e6 }'; }

need_tools wrk
stage_release --bin iblueprint --example seed -- iblueprint examples/seed
BIN="$WORK/bin/iblueprint"
DATA="$WORK/data.redb"

log "seeding $KEYS keys"
started=$(now_us)
"$WORK/bin/seed" --data "$DATA" --keys "$KEYS" --per-hour "$LIMIT" --per-day "$LIMIT" \
    --secrets-out "$WORK/secrets" --secrets "$SECRETS" >&2
SEED_S=$(seconds_since "$started")

timed() { # timed LABEL COMMAND... → prints "LABEL seconds"
    local label=$1; shift
    local t0; t0=$(now_us)
    "$@" >/dev/null
    printf '%s %s\n' "$label" "$(seconds_since "$t0")"
}

log "backup and import, server stopped"
RESULTS=$(
    timed backup_redb "$BIN" backup --data "$DATA" --out "$WORK/b.redb"
    timed backup_jsonl "$BIN" backup --data "$DATA" --out "$WORK/b.jsonl" --format jsonl
    timed import_redb "$BIN" import "$WORK/b.redb" --data "$WORK/from-redb.redb"
    timed import_jsonl "$BIN" import "$WORK/b.jsonl" --data "$WORK/from-jsonl.redb"
)
get() { awk -v k="$1" '$1 == k { print $2 }' <<<"$RESULTS"; }

log "starting the server"
start_server /dev/null RUST_LOG=warn -- "$BIN" serve --listen 127.0.0.1:0 --data "$DATA"
WRK_ARGS=(-t"$WRK_THREADS" -c"$WRK_CONNECTIONS" --latency -s "$HERE/auth.lua" "$URL" -- "$WORK/secrets")

log "warm-up, then $WRK_DURATION without a backup"
wrk -d2s "${WRK_ARGS[@]}" >/dev/null
run_wrk "$WORK/quiet.txt" -d"$WRK_DURATION" "${WRK_ARGS[@]}"
QUIET_RPS=$WRK_RPS QUIET_P99=$WRK_P99_MS

log "$WRK_DURATION with backups running back to back"
: >"$WORK/live-backups"
(
    while [[ ! -e $WORK/stop ]]; do
        t0=$(now_us)
        "$BIN" backup --data "$DATA" --out "$WORK/live.redb" --force >/dev/null
        printf '%s\n' "$(seconds_since "$t0")" >>"$WORK/live-backups"
    done
) &
LOOP=$!
run_wrk "$WORK/busy.txt" -d"$WRK_DURATION" "${WRK_ARGS[@]}"
BUSY_RPS=$WRK_RPS BUSY_P99=$WRK_P99_MS
touch "$WORK/stop"
wait "$LOOP"
stop_server
LIVE_BACKUPS=$(wc -l <"$WORK/live-backups")
LIVE_MEDIAN=$(sort -n "$WORK/live-backups" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')

cat <<EOF

## Backup and import with $KEYS keys ($(nproc) cores, shared)

| step | time (s) | size |
| --- | ---: | ---: |
| seed (bench tool, for reference) | $SEED_S | $(mib "$(stat -c %s "$DATA")") MiB data file |
| backup, redb (server stopped) | $(get backup_redb) | $(mib "$(stat -c %s "$WORK/b.redb")") MiB |
| backup, jsonl (server stopped) | $(get backup_jsonl) | $(mib "$(stat -c %s "$WORK/b.jsonl")") MiB |
| import redb → new data file | $(get import_redb) | |
| import jsonl → new data file | $(get import_jsonl) | |
| backup, redb, beside the busy server (median of $LIVE_BACKUPS) | $LIVE_MEDIAN | |

| GET /v1/auth, wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION | requests/s | p99 (ms) |
| --- | ---: | ---: |
| no backup | $QUIET_RPS | $QUIET_P99 |
| backups back to back | $BUSY_RPS | $BUSY_P99 |
| ratio | $(awk -v a="$BUSY_RPS" -v b="$QUIET_RPS" 'BEGIN { printf "%.2f", a / b }') | |
EOF
