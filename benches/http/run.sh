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
#   3. runs wrk, with the same settings every time, against: the hello baseline;
#      `iblueprint serve` with RUST_LOG=warn; the same server on /v1/health (no verification:
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
# (10s), WARMUP (2s), ROUNDS (2), SMALL_KEYS (1000), LARGE_KEYS (1000000), SECRETS (1000),
# STARTS (5), SKIP_LARGE (set to 1 to skip the 1,000,000-key part), NICE (e.g. -10: renice
# this script and everything it starts, to be less disturbed by other work on the machine).
#
# Caveat, printed with the results: wrk and the server share this machine's cores, so the
# figures are client + server on the same CPUs, not server capacity. The "CPU µs/req"
# columns (from /proc/PID/stat and `time`) show where the CPU went.

set -euo pipefail

WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-64}
WRK_DURATION=${WRK_DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-2}
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

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'run.sh: error: %s\n' "$*" >&2; exit 1; }
now_us() { local t=${EPOCHREALTIME/./}; printf '%s' "$((10#$t))"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

if [[ -n $NICE ]]; then
    renice -n "$NICE" -p $$ >/dev/null || die "could not renice to $NICE"
fi

# --- tools -------------------------------------------------------------------------------

if ! command -v wrk >/dev/null 2>&1; then
    log "installing wrk"
    if ! apt-get install -y wrk >/dev/null 2>&1; then
        apt-get update >/dev/null
        apt-get install -y wrk >/dev/null
    fi
fi
command -v wrk >/dev/null 2>&1 || die "wrk is not installed and could not be installed"
command -v curl >/dev/null 2>&1 || die "curl is needed for the pre-flight request"

log "building (release): iblueprint, examples seed and hello"
build_started=$(now_us)
(cd "$ROOT" && cargo build --release --bin iblueprint --examples)
log "build took $(( ($(now_us) - build_started) / 1000000 )) s"
TARGET=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[[ -n $TARGET ]] || die "could not find cargo's target directory"

# --- state, clean-up ---------------------------------------------------------------------

WORK=$(mktemp -d "${TMPDIR:-/tmp}/iblueprint-http-bench.XXXXXX")
chmod 700 "$WORK"
SERVER_PID=
SERVER_FD=
cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir "$WORK/bin"
for bin in iblueprint examples/seed examples/hello; do
    [[ -x $TARGET/release/$bin ]] || die "missing $TARGET/release/$bin after the build"
    cp "$TARGET/release/$bin" "$WORK/bin/"
done
IBLUEPRINT="$WORK/bin/iblueprint"
SEED="$WORK/bin/seed"
HELLO="$WORK/bin/hello"

# Run the servers without any IBLUEPRINT_* settings from the caller's environment.
CLEAN_ENV=(env)
while IFS= read -r var; do CLEAN_ENV+=(-u "$var"); done < <(compgen -e | grep '^IBLUEPRINT_' || true)

# --- helpers -----------------------------------------------------------------------------

# start_server STDERR_TARGET [ENV_ARG...] -- COMMAND...
# Starts a server that prints "... listening on http://ADDR" on stdout; sets SERVER_PID,
# URL and STARTUP_MS (spawn → that line).
start_server() {
    local stderr_target=$1; shift
    local env_args=()
    while [[ $1 != -- ]]; do env_args+=("$1"); shift; done
    shift
    local fifo="$WORK/stdout.fifo" line started
    rm -f "$fifo"; mkfifo "$fifo"
    started=$(now_us)
    "${CLEAN_ENV[@]}" "${env_args[@]}" "$@" >"$fifo" 2>"$stderr_target" &
    SERVER_PID=$!
    exec {SERVER_FD}<"$fifo"
    if ! IFS= read -r -t 30 line <&"$SERVER_FD"; then
        die "server did not report its address within 30 s: $*"
    fi
    STARTUP_MS=$(awk -v us=$(( $(now_us) - started )) 'BEGIN { printf "%.1f", us / 1000 }')
    [[ $line == *"listening on http://"* ]] || die "unexpected first line from the server: $line"
    URL=${line##* }
}

# stop_server: SIGTERM (clean shutdown, final flush), wait, close the stdout pipe.
stop_server() {
    local status=0
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || status=$?
    SERVER_PID=
    exec {SERVER_FD}<&-
    [[ $status == 0 ]] || die "server exited with status $status on SIGTERM"
}

proc_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
proc_cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# check_ok URL_PATH: one request with the first secret must answer 200.
check_ok() {
    local header="$WORK/auth-header" code
    (umask 077; printf 'Authorization: Bearer %s\n' "$(head -n 1 "$SECRETS_FILE")" >"$header")
    code=$(curl -s -o /dev/null -w '%{http_code}' -H @"$header" "$URL$1")
    [[ $code == 200 ]] || die "GET $1 with a seeded key answered $code, not 200"
}

# to_ms VALUE UNIT → milliseconds
to_ms() {
    awk -v v="$1" -v u="$2" 'BEGIN { m = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1; printf "%.3f", v * m }'
}

# One row per measured run:
# server|group|round|keys|logging|path|req/s|p50|p99|server µs/req|wrk µs/req|RSS MiB|peak MiB|data bytes|start-up ms|load
ROWS=()

# measure SERVER GROUP ROUND KEYS LOGGING PATH DATA_BYTES
measure() {
    local server=$1 group=$2 round=$3 keys=$4 logging=$5 path=$6 data_bytes=$7
    local out="$WORK/wrk-$server-$group-$round-$logging-${path//\//_}.txt"
    local wrk_args=(-t"$WRK_THREADS" -c"$WRK_CONNECTIONS" --latency -s "$LUA" "$URL" -- "$SECRETS_FILE" "$path")
    check_ok "$path"
    wrk -d"$WARMUP" "${wrk_args[@]}" >/dev/null
    local load cpu_before cpu_after
    load=$(cut -d' ' -f1 /proc/loadavg)
    cpu_before=$(proc_cpu_ticks "$SERVER_PID")
    local TIMEFORMAT='%3U %3S'
    { time wrk -d"$WRK_DURATION" "${wrk_args[@]}" >"$out" ; } 2>"$out.time"
    cpu_after=$(proc_cpu_ticks "$SERVER_PID")
    local rss hwm
    rss=$(proc_kib "$SERVER_PID" VmRSS)
    hwm=$(proc_kib "$SERVER_PID" VmHWM)

    if grep -q 'Non-2xx or 3xx responses' "$out"; then
        cat "$out" >&2
        die "$server $path: $(grep 'Non-2xx or 3xx responses' "$out" | xargs) — a request failed"
    fi
    if grep -q 'Socket errors' "$out"; then
        cat "$out" >&2
        die "$server $path: $(grep 'Socket errors' "$out" | xargs)"
    fi
    local rps requests p99_value p99_unit p50_value p50_unit
    rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    requests=$(awk '/ requests in / { print $1 }' "$out")
    read -r p99_value p99_unit < <(awk '$1 == "99%" { v = $2; u = v; sub(/[a-z]+$/, "", v); sub(/^[0-9.]+/, "", u); print v, u }' "$out")
    read -r p50_value p50_unit < <(awk '$1 == "50%" { v = $2; u = v; sub(/[a-z]+$/, "", v); sub(/^[0-9.]+/, "", u); print v, u }' "$out")
    [[ -n $rps && -n $p99_value && -n $requests ]] || { cat "$out" >&2; die "$server $path: could not read wrk's output"; }
    local tick_us=$(( 1000000 / $(getconf CLK_TCK) ))
    local server_us wrk_us
    server_us=$(awk -v t=$(( cpu_after - cpu_before )) -v tu="$tick_us" -v n="$requests" 'BEGIN { printf "%.1f", t * tu / n }')
    wrk_us=$(awk -v n="$requests" '{ printf "%.1f", ($1 + $2) * 1e6 / n }' "$out.time")
    ROWS+=("$server|$group|$round|$keys|$logging|$path|$rps|$(to_ms "$p50_value" "$p50_unit")|$(to_ms "$p99_value" "$p99_unit")|$server_us|$wrk_us|$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')|$(awk -v k="$hwm" 'BEGIN { printf "%.1f", k / 1024 }')|$data_bytes|$STARTUP_MS|$load")
    log "$(printf '%-10s %-5s r%s %-4s %-10s %9.0f req/s  p99 %7.2f ms  server %5s µs CPU/req  RSS %s MiB' \
        "$server" "$group" "$round" "$logging" "$path" "$rps" "$(to_ms "$p99_value" "$p99_unit")" "$server_us" "$((rss / 1024))")"
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

# run_hello GROUP ROUND
run_hello() {
    start_server /dev/null -- "$HELLO" --listen 127.0.0.1:0
    measure hello "$1" "$2" - none /v1/auth -
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

# rounds GROUP KEYS: ROUNDS × (hello, iblueprint warn + /v1/health, iblueprint info)
rounds() {
    local group=$1 keys=$2 round
    for ((round = 1; round <= ROUNDS; round++)); do
        run_hello "$group" "$round"
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
    echo "| server | keys | round | logging | path | req/s | vs hello | p50 ms | p99 ms | server CPU µs/req | wrk CPU µs/req | RSS MiB (peak) | data file MiB | start-up ms | load |"
    echo "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for r in "${ROWS[@]}"; do
        IFS='|' read -r server group round keys logging path rps p50 p99 scpu wcpu rss hwm data startup load <<<"$r"
        vs_hello="-"
        [[ $server == iblueprint ]] && vs_hello=$(ratio "$rps" "$(rps_of hello "$group" "$round" none /v1/auth)")
        [[ $data != "-" ]] && data=$(mib "$data")
        if [[ $server == hello ]]; then
            keys="($SMALL_KEYS)"; [[ $group == large ]] && keys="($LARGE_KEYS)"
        fi
        printf '| %s | %s | %s | %s | %s | %.0f | %s | %s | %s | %s | %s | %s (%s) | %s | %s | %s |\n' \
            "$server" "$keys" "$round" "$logging" "$path" "$rps" "$vs_hello" "$p50" "$p99" "$scpu" "$wcpu" "$rss" "$hwm" "$data" "$startup" "$load"
    done

    echo
    echo "### Summary (means over $ROUNDS rounds)"
    echo
    echo "| data file | server | logging | path | req/s | vs hello (target ≥ 0.85) | vs 1k keys (target ≥ 0.90) | p99 ms | server CPU µs/req |"
    echo "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"
    groups=(small); [[ -z $SKIP_LARGE ]] && groups+=(large)
    for group in "${groups[@]}"; do
        keys=$SMALL_KEYS; [[ $group == large ]] && keys=$LARGE_KEYS
        for spec in "hello none /v1/auth" "iblueprint warn /v1/auth" "iblueprint info /v1/auth" "iblueprint warn /v1/health"; do
            read -r server logging path <<<"$spec"
            rps=$(mean_of "$server" "$group" "$logging" "$path" 7)
            vs_hello="-"; vs_small="-"
            if [[ $server == iblueprint ]]; then
                # Mean of the per-round ratios, each against the hello run of its own round.
                vs_hello=$(for ((n = 1; n <= ROUNDS; n++)); do
                    ratio "$(rps_of iblueprint "$group" "$n" "$logging" "$path")" "$(rps_of hello "$group" "$n" none /v1/auth)"; echo
                done | awk '{ t += $1 } END { printf "%.2f", t / NR }')
                if [[ $group == large && $path == /v1/auth ]]; then
                    vs_small=$(ratio "$rps" "$(mean_of iblueprint small "$logging" "$path" 7)")
                fi
            fi
            printf '| %s keys | %s | %s | %s | %.0f | %s | %s | %s | %s |\n' "$keys" "$server" "$logging" "$path" "$rps" "$vs_hello" "$vs_small" \
                "$(mean_of "$server" "$group" "$logging" "$path" 9)" "$(mean_of "$server" "$group" "$logging" "$path" 10)"
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
