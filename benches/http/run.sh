#!/usr/bin/env bash
# HTTP load test of `GET /v1/auth` (forward-auth: the verification every request pays),
# next to an actix-web hello-world baseline, with 1,000 and with 1,000,000 keys in the data
# file. Issue 3, "What it must show → Benchmarks":
#
#   - iblueprint at least 0.85 of the hello baseline's requests/s, p99 reported;
#   - with 1,000,000 keys: requests/s within 10% of the 1,000-key run; server RSS,
#     data-file size and start-up time reported (start-up target: under 1 s, independent of
#     the number of keys).
#
# Usage (from anywhere in the repository):
#
#   bash benches/http/run.sh
#
# What it does:
#   1. installs wrk if missing (apt-get), builds `iblueprint` and the `seed` and `hello`
#      examples with --release, and copies the three binaries into a fresh temporary
#      directory (so a concurrent build cannot swap them mid-run). The directory is removed
#      on exit: it holds live secrets.
#   2. seeds a data file with 1,000 keys (per_hour = per_day = 10^9, so nothing is refused)
#      and writes 1,000 of the secrets to a file;
#   3. runs wrk, with the same settings every time, against: the hello baseline; the hello
#      baseline answering with the six headers /v1/auth answers with (`hello --auth-headers`:
#      the framework's and the client's cost of the contract's response, with no work behind
#      it); `iblueprint serve` with RUST_LOG=warn; the same server on /v1/health (no verification:
#      framework + middleware only, same request bytes but the path); `iblueprint serve` with
#      its default info logging (one line per request) going to /dev/null. This is repeated
#      ROUNDS times, alternating, so drifting background load hits both sides alike;
#   4. seeds 1,000,000 keys (timed; 1,000 secrets spread across the whole set) and repeats 3;
#   5. starts and stops each server STARTS more times to report start-up time (spawn → the
#      "listening on" line) as min / median / max;
#   6. prints every run, then a summary averaged over the rounds, as Markdown tables.
#
# Each iblueprint row's "vs hello" is against the hello run of the same round and data
# file. Every wrk run is preceded by an unmeasured warm-up with the same settings (which
# also loads the keys' rate-limit buckets into memory). The script fails if any request got
# a non-2xx answer or a socket error, or if a server does not exit cleanly on SIGTERM.
#
# Settings (environment variables): WRK_THREADS (2), WRK_CONNECTIONS (64), WRK_DURATION
# (10s), WARMUP (2s), ROUNDS (4: one round's ratio moves by several points on a shared
# 2-core machine), SMALL_KEYS (1000), LARGE_KEYS (1000000), SECRETS (1000), STARTS (5),
# SKIP_LARGE (set to 1 to skip the 1,000,000-key part), NICE (e.g. -10: renice this script
# and everything it starts, to be less disturbed by other work on the machine).
#
# Caveat, printed with the results: wrk and the server share this machine's cores, so the
# figures are client + server on the same CPUs, not server capacity. The "CPU µs/req"
# columns (from /proc/PID/stat and `time`) show where the CPU went, the server's with its
# kernel part in brackets. "Preempted /1k req" counts the server's involuntary context
# switches (/proc/PID/task/*/status) per 1,000 requests. It rises sharply once the server
# needs more CPU per request than wrk: wrk then waits for answers, and every response
# wakes it on the server's time.

set -euo pipefail

WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-64}
WRK_DURATION=${WRK_DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-4}
SMALL_KEYS=${SMALL_KEYS:-1000}
LARGE_KEYS=${LARGE_KEYS:-1000000}
SECRETS=${SECRETS:-1000}
STARTS=${STARTS:-5}
SKIP_LARGE=${SKIP_LARGE:-}
NICE=${NICE:-}
LIMIT=1000000000

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LUA="$HERE/auth.lua"

SCRIPT=run.sh
# shellcheck source=benches/http/common.sh
source "$HERE/common.sh"

if [[ -n $NICE ]]; then
    renice -n "$NICE" -p $$ >/dev/null || die "could not renice to $NICE"
fi

need_tools wrk curl
stage_release --bin iblueprint --examples -- iblueprint examples/seed examples/hello
IBLUEPRINT="$WORK/bin/iblueprint"
SEED="$WORK/bin/seed"
HELLO="$WORK/bin/hello"

# --- helpers -----------------------------------------------------------------------------

# check_ok URL_PATH: one request with the first secret must answer 200.
check_ok() {
    local header="$WORK/auth-header" code
    (umask 077; printf 'Authorization: Bearer %s\n' "$(head -n 1 "$SECRETS_FILE")" >"$header")
    code=$(curl -s -o /dev/null -w '%{http_code}' -H @"$header" "$URL$1")
    [[ $code == 200 ]] || die "GET $1 with a seeded key answered $code, not 200"
}

# One row per measured run:
# server|group|round|keys|logging|path|req/s|p50|p99|server µs/req|wrk µs/req|RSS MiB|peak MiB|data bytes|start-up ms|load|server kernel µs/req|server preempted per 1k req
ROWS=()

# measure SERVER GROUP ROUND KEYS LOGGING PATH DATA_BYTES
measure() {
    local server=$1 group=$2 round=$3 keys=$4 logging=$5 path=$6 data_bytes=$7
    local out="$WORK/wrk-$server-$group-$round-$logging-${path//\//_}.txt"
    local wrk_args=(-t"$WRK_THREADS" -c"$WRK_CONNECTIONS" --latency -s "$LUA" "$URL" -- "$SECRETS_FILE" "$path")
    check_ok "$path"
    wrk -d"$WARMUP" "${wrk_args[@]}" >/dev/null
    run_wrk "$out" -d"$WRK_DURATION" "${wrk_args[@]}"
    local rss hwm
    rss=$(proc_kib "$SERVER_PID" VmRSS)
    hwm=$(proc_kib "$SERVER_PID" VmHWM)
    ROWS+=("$server|$group|$round|$keys|$logging|$path|$WRK_RPS|$WRK_P50_MS|$WRK_P99_MS|$WRK_SERVER_US|$WRK_CLIENT_US|$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')|$(awk -v k="$hwm" 'BEGIN { printf "%.1f", k / 1024 }')|$data_bytes|$STARTUP_MS|$WRK_LOAD|$WRK_SERVER_KERNEL_US|$WRK_SERVER_PREEMPTED")
    log "$(printf '%-10s %-5s r%s %-4s %-10s %9.0f req/s  p99 %7.2f ms  server %5s µs CPU/req (kernel %s), preempted %s/1k  RSS %s MiB' \
        "$server" "$group" "$round" "$logging" "$path" "$WRK_RPS" "$WRK_P99_MS" "$WRK_SERVER_US" "$WRK_SERVER_KERNEL_US" "$WRK_SERVER_PREEMPTED" "$((rss / 1024))")"
}

# seed NAME KEYS → sets DATA, SECRETS_FILE, SEED_SECONDS, DATA_BYTES
seed() {
    local name=$1 keys=$2
    DATA="$WORK/$name.redb"
    SECRETS_FILE="$WORK/$name.secrets"
    log "seeding $keys keys into $DATA"
    local started; started=$(now_us)
    "$SEED" --data "$DATA" --keys "$keys" --per-hour "$LIMIT" --per-day "$LIMIT" \
        --secrets-out "$SECRETS_FILE" --secrets "$SECRETS" >&2
    SEED_SECONDS=$(awk -v us=$(( $(now_us) - started )) 'BEGIN { printf "%.1f", us / 1e6 }')
    DATA_BYTES=$(stat -c %s "$DATA")
}

# run_hello GROUP ROUND [--auth-headers]
run_hello() {
    local server=hello
    [[ ${3:-} == --auth-headers ]] && server=hello+headers
    start_server /dev/null -- "$HELLO" --listen 127.0.0.1:0 ${3:+"$3"}
    measure "$server" "$1" "$2" - none /v1/auth -
    stop_server
}

# run_iblueprint GROUP ROUND KEYS LOGGING [EXTRA_PATH...]
run_iblueprint() {
    local group=$1 round=$2 keys=$3 logging=$4; shift 4
    local stderr_target env_args=()
    if [[ $logging == warn ]]; then
        stderr_target="$WORK/server-warn.log"
        env_args=(RUST_LOG=warn)
    else
        stderr_target=/dev/null
        env_args=(-u RUST_LOG)
    fi
    local data_bytes; data_bytes=$(stat -c %s "$DATA")
    start_server "$stderr_target" "${env_args[@]}" -- "$IBLUEPRINT" serve --listen 127.0.0.1:0 --data "$DATA"
    measure iblueprint "$group" "$round" "$keys" "$logging" /v1/auth "$data_bytes"
    local path
    for path in "$@"; do
        measure iblueprint "$group" "$round" "$keys" "$logging" "$path" "$data_bytes"
    done
    stop_server
}

# startup_times LABEL COMMAND... → "min / median / max" ms over $STARTS starts
STARTUPS=()
startup_times() {
    local label=$1; shift
    local times=() i
    for ((i = 0; i < STARTS; i++)); do
        start_server /dev/null RUST_LOG=warn -- "$@"
        times+=("$STARTUP_MS")
        stop_server
    done
    STARTUPS+=("$label|$(printf '%s\n' "${times[@]}" | sort -n | awk '{ a[NR] = $1 } END { printf "%s / %s / %s", a[1], a[int((NR + 1) / 2)], a[NR] }')")
}

# rounds GROUP KEYS: ROUNDS × (hello, hello+headers, iblueprint warn + /v1/health, iblueprint info)
rounds() {
    local group=$1 keys=$2 round
    for ((round = 1; round <= ROUNDS; round++)); do
        run_hello "$group" "$round"
        run_hello "$group" "$round" --auth-headers
        run_iblueprint "$group" "$round" "$keys" warn /v1/health
        run_iblueprint "$group" "$round" "$keys" info
    done
}

# --- the runs ----------------------------------------------------------------------------

total_started=$(now_us)
log "wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION --latency (warm-up $WARMUP), $ROUNDS rounds; $(nproc) cores shared by wrk and the server"

seed small "$SMALL_KEYS"
SMALL_SEED_SECONDS=$SEED_SECONDS SMALL_DATA_BYTES=$DATA_BYTES SMALL_DATA=$DATA
rounds small "$SMALL_KEYS"
startup_times "iblueprint, $SMALL_KEYS keys" "$IBLUEPRINT" serve --listen 127.0.0.1:0 --data "$SMALL_DATA"
startup_times "hello" "$HELLO" --listen 127.0.0.1:0
SMALL_FINAL_BYTES=$(stat -c %s "$SMALL_DATA")

if [[ -z $SKIP_LARGE ]]; then
    seed large "$LARGE_KEYS"
    LARGE_SEED_SECONDS=$SEED_SECONDS LARGE_DATA_BYTES=$DATA_BYTES LARGE_DATA=$DATA
    rounds large "$LARGE_KEYS"
    startup_times "iblueprint, $LARGE_KEYS keys" "$IBLUEPRINT" serve --listen 127.0.0.1:0 --data "$LARGE_DATA"
    LARGE_FINAL_BYTES=$(stat -c %s "$LARGE_DATA")
fi
total_seconds=$(( ($(now_us) - total_started) / 1000000 ))

# --- report ------------------------------------------------------------------------------

# field ROW N → the Nth |-separated field (1-based)
field() { cut -d'|' -f"$2" <<<"$1"; }
# rps_of SERVER GROUP ROUND LOGGING PATH → req/s of that run
rps_of() {
    local r
    for r in "${ROWS[@]}"; do
        IFS='|' read -r s g n _ l p rps _ <<<"$r"
        if [[ $s == "$1" && $g == "$2" && $n == "$3" && $l == "$4" && $p == "$5" ]]; then echo "$rps"; return; fi
    done
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b > 0) printf "%.2f", a / b; else printf "-" }'; }
# mean_ratio SERVER GROUP LOGGING PATH BASELINE → mean over the rounds of req/s against that
# round's BASELINE (a hello variant) run, then the lowest and highest round in brackets: a
# single round here moves by several points, and the spread shows how far a mean can be read
mean_ratio() {
    local n
    for ((n = 1; n <= ROUNDS; n++)); do
        ratio "$(rps_of "$1" "$2" "$n" "$3" "$4")" "$(rps_of "$5" "$2" "$n" none /v1/auth)"; echo
    done | awk 'NR == 1 { lo = hi = $1 } { t += $1; if ($1 < lo) lo = $1; if ($1 > hi) hi = $1 }
        END { printf "%.2f", t / NR; if (NR > 1) printf " (%.2f–%.2f)", lo, hi }'
}
# mean of the rows matching SERVER GROUP LOGGING PATH, column N
mean_of() {
    local r total=0 count=0
    for r in "${ROWS[@]}"; do
        IFS='|' read -r s g _ _ l p _ <<<"$r"
        if [[ $s == "$1" && $g == "$2" && $l == "$3" && $p == "$4" ]]; then
            total=$(awk -v t="$total" -v v="$(field "$r" "$5")" 'BEGIN { print t + v }'); count=$((count + 1))
        fi
    done
    awk -v t="$total" -v c="$count" 'BEGIN { if (c > 0) printf "%.1f", t / c; else printf "" }'
}

{
    echo
    echo "## HTTP: GET /v1/auth, wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION --latency, $ROUNDS rounds"
    echo
    echo "$(nproc) cores, shared by wrk and the server (both servers: actix's default worker count, $(nproc)). Figures are client + server on the same CPUs, not server capacity."
    echo "Load = 1-minute load average just before the run (other work on the machine shows there). Hello rows: (n) = the data-file size of the iblueprint runs they are compared with."
    echo
    echo "| server | keys | round | logging | path | req/s | vs hello | p50 ms | p99 ms | server CPU µs/req (kernel) | server preempted /1k req | wrk CPU µs/req | RSS MiB (peak) | data file MiB | start-up ms | load |"
    echo "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for r in "${ROWS[@]}"; do
        IFS='|' read -r server group round keys logging path rps p50 p99 scpu wcpu rss hwm data startup load skernel spreempted <<<"$r"
        vs_hello="-"
        [[ $server != hello ]] && vs_hello=$(ratio "$rps" "$(rps_of hello "$group" "$round" none /v1/auth)")
        [[ $data != "-" ]] && data=$(mib "$data")
        if [[ $server == hello* ]]; then
            keys="($SMALL_KEYS)"; [[ $group == large ]] && keys="($LARGE_KEYS)"
        fi
        printf '| %s | %s | %s | %s | %s | %.0f | %s | %s | %s | %s (%s) | %s | %s | %s (%s) | %s | %s | %s |\n' \
            "$server" "$keys" "$round" "$logging" "$path" "$rps" "$vs_hello" "$p50" "$p99" "$scpu" "$skernel" "$spreempted" "$wcpu" "$rss" "$hwm" "$data" "$startup" "$load"
    done

    echo
    echo "### Summary (means over $ROUNDS rounds)"
    echo
    echo "| data file | server | logging | path | req/s | vs hello (target ≥ 0.85) | vs hello+headers | vs 1k keys (target ≥ 0.90) | p99 ms | server CPU µs/req (kernel) | server preempted /1k req | wrk CPU µs/req |"
    echo "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    groups=(small); [[ -z $SKIP_LARGE ]] && groups+=(large)
    for group in "${groups[@]}"; do
        keys=$SMALL_KEYS; [[ $group == large ]] && keys=$LARGE_KEYS
        for spec in "hello none /v1/auth" "hello+headers none /v1/auth" "iblueprint warn /v1/auth" "iblueprint info /v1/auth" "iblueprint warn /v1/health"; do
            read -r server logging path <<<"$spec"
            rps=$(mean_of "$server" "$group" "$logging" "$path" 7)
            vs_hello="-"; vs_headers="-"; vs_small="-"
            if [[ $server != hello ]]; then
                # Means of the per-round ratios, each against the baseline run of its own round.
                vs_hello=$(mean_ratio "$server" "$group" "$logging" "$path" hello)
            fi
            if [[ $server == iblueprint ]]; then
                vs_headers=$(mean_ratio "$server" "$group" "$logging" "$path" hello+headers)
                if [[ $group == large && $path == /v1/auth ]]; then
                    vs_small=$(ratio "$rps" "$(mean_of iblueprint small "$logging" "$path" 7)")
                fi
            fi
            printf '| %s keys | %s | %s | %s | %.0f | %s | %s | %s | %s | %s (%s) | %s | %s |\n' "$keys" "$server" "$logging" "$path" "$rps" "$vs_hello" "$vs_headers" "$vs_small" \
                "$(mean_of "$server" "$group" "$logging" "$path" 9)" "$(mean_of "$server" "$group" "$logging" "$path" 10)" \
                "$(mean_of "$server" "$group" "$logging" "$path" 17)" "$(mean_of "$server" "$group" "$logging" "$path" 18)" \
                "$(mean_of "$server" "$group" "$logging" "$path" 11)"
        done
    done

    echo
    echo "| start-up (spawn → listening line), $STARTS starts, RUST_LOG=warn | min / median / max ms |"
    echo "| --- | --- |"
    for s in "${STARTUPS[@]}"; do echo "| ${s%%|*} | ${s#*|} |"; done
    echo
    echo "| data file | keys | seeding s | size after seeding MiB | size after the runs MiB |"
    echo "| --- | ---: | ---: | ---: | ---: |"
    echo "| small | $SMALL_KEYS | $SMALL_SEED_SECONDS | $(mib "$SMALL_DATA_BYTES") | $(mib "$SMALL_FINAL_BYTES") |"
    if [[ -z $SKIP_LARGE ]]; then
        echo "| large | $LARGE_KEYS | $LARGE_SEED_SECONDS | $(mib "$LARGE_DATA_BYTES") | $(mib "$LARGE_FINAL_BYTES") |"
    fi
    echo
    echo "Whole run without the build: ${total_seconds} s.${NICE:+ Run at nice $NICE.}"
}
