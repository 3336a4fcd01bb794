# shellcheck shell=bash
# shellcheck disable=SC2034  # the globals set here (URL, WRK_*, …) are read by the scripts that source this file
# Shared by the load scripts in this folder (run.sh, tls.sh, backup.sh); source it, do not
# run it. It holds the plumbing all of them need, so each script only says what it measures:
#
#   log MSG / die MSG           progress and fatal errors on stderr (die names $SCRIPT)
#   now_us, mib BYTES, to_ms VALUE UNIT, proc_kib PID FIELD, proc_cpu_ticks PID,
#   proc_preemptions PID
#   need_tools TOOL...          installs wrk with apt-get when missing; fails on other tools
#   stage_release CARGO_ARGS... -- BIN...
#                               builds with `cargo build --release CARGO_ARGS`, makes $WORK
#                               (0700, removed on exit: it holds live secrets) and copies the
#                               binaries to $WORK/bin, so a concurrent build cannot swap them
#   start_server STDERR [VAR=VALUE...] -- COMMAND...
#                               starts a server that prints "… listening on URL" first on
#                               stdout, without the caller's IBLUEPRINT_* settings; sets
#                               SERVER_PID, URL and STARTUP_MS (spawn → that line)
#   stop_server                 SIGTERM, wait, and fail unless it exited 0
#   run_wrk OUT WRK_ARGS...     one measured wrk run (against SERVER_PID); fails on any
#                               non-2xx answer or socket error; sets WRK_RPS, WRK_REQUESTS,
#                               WRK_P50_MS, WRK_P99_MS, WRK_SERVER_US (server CPU per
#                               request), WRK_SERVER_KERNEL_US (the kernel's part of it),
#                               WRK_SERVER_PREEMPTED (times a server thread was preempted,
#                               per 1,000 requests), WRK_CLIENT_US (wrk's CPU per request),
#                               WRK_LOAD
#
# Caller sets: SCRIPT (its name, for messages) and ROOT (the repository).

log() { printf '==> %s\n' "$*" >&2; }
die() { printf '%s: error: %s\n' "${SCRIPT:-bench}" "$*" >&2; exit 1; }
now_us() { local t=${EPOCHREALTIME/./}; printf '%s' "$((10#$t))"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
proc_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
# proc_cpu_ticks PID → "TOTAL KERNEL": the process's CPU time (user + system) and its
# system part, in clock ticks, from one read of /proc/PID/stat.
proc_cpu_ticks() { awk '{ print $14 + $15, $15 }' "/proc/$1/stat"; }
# Involuntary context switches of all the process's threads: each is a thread taken off
# its CPU while it still had work (on these shared cores, mostly for wrk). A thread that
# ends between the listing and the read is skipped, not an error.
proc_preemptions() {
    { cat "/proc/$1/task/"*/status 2>/dev/null || true; } |
        awk '$1 == "nonvoluntary_ctxt_switches:" { n += $2 } END { print n + 0 }'
}

# to_ms VALUE UNIT → milliseconds (wrk prints latencies as 12.3us, 4.5ms, 1.2s, 1m)
to_ms() {
    awk -v v="$1" -v u="$2" 'BEGIN { m = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1; printf "%.3f", v * m }'
}

need_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 && continue
        if [[ $tool == wrk ]]; then
            log "installing wrk"
            apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
            command -v wrk >/dev/null 2>&1 || die "wrk is not installed and could not be installed"
        else
            die "$tool is needed and not installed"
        fi
    done
}

WORK=
SERVER_PID=
SERVER_FD=
_cleanup() {
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    [[ -n $WORK ]] && rm -rf "$WORK"
}
trap _cleanup EXIT
trap 'exit 130' INT TERM

stage_release() {
    local cargo_args=() bin target
    while [[ $1 != -- ]]; do cargo_args+=("$1"); shift; done
    shift
    log "building (release): ${cargo_args[*]}"
    local started; started=$(now_us)
    (cd "$ROOT" && cargo build --release "${cargo_args[@]}") >&2
    log "build took $(( ($(now_us) - started) / 1000000 )) s"
    target=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    [[ -n $target ]] || die "could not find cargo's target directory"
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/iblueprint-$SCRIPT.XXXXXX")
    chmod 700 "$WORK"
    mkdir "$WORK/bin"
    for bin in "$@"; do
        [[ -x $target/release/$bin ]] || die "missing $target/release/$bin after the build"
        cp "$target/release/$bin" "$WORK/bin/"
    done
}

# Run the servers without any IBLUEPRINT_* settings from the caller's environment.
CLEAN_ENV=(env)
while IFS= read -r var; do CLEAN_ENV+=(-u "$var"); done < <(compgen -e | grep '^IBLUEPRINT_' || true)

start_server() {
    local stderr_target=$1; shift
    local env_args=()
    while [[ $1 != -- ]]; do env_args+=("$1"); shift; done
    shift
    local fifo="$WORK/stdout.fifo" line started
    rm -f "$fifo"; mkfifo "$fifo"
    started=$(now_us)
    "${CLEAN_ENV[@]}" "${env_args[@]}" "$@" >"$fifo" 2>>"$stderr_target" &
    SERVER_PID=$!
    exec {SERVER_FD}<"$fifo"
    IFS= read -r -t 30 line <&"$SERVER_FD" || die "server did not report its address within 30 s: $*"
    STARTUP_MS=$(awk -v us=$(( $(now_us) - started )) 'BEGIN { printf "%.1f", us / 1000 }')
    [[ $line == *" listening on http://"* || $line == *" listening on https://"* ]] \
        || die "unexpected first line from the server: $line"
    URL=${line##* }
}

stop_server() {
    local status=0
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || status=$?
    SERVER_PID=
    exec {SERVER_FD}<&-
    [[ $status == 0 ]] || die "server exited with status $status on SIGTERM"
}

run_wrk() {
    local out=$1; shift
    local cpu_before cpu_after kernel_before kernel_after preempted_before preempted_after
    local tick_us p50_value p50_unit p99_value p99_unit
    WRK_LOAD=$(cut -d' ' -f1 /proc/loadavg)
    read -r cpu_before kernel_before < <(proc_cpu_ticks "$SERVER_PID")
    preempted_before=$(proc_preemptions "$SERVER_PID")
    local TIMEFORMAT='%3U %3S'
    { time wrk "$@" >"$out" ; } 2>"$out.time"
    read -r cpu_after kernel_after < <(proc_cpu_ticks "$SERVER_PID")
    preempted_after=$(proc_preemptions "$SERVER_PID")
    if grep -q -e 'Non-2xx or 3xx responses' -e 'Socket errors' "$out"; then
        cat "$out" >&2
        die "$(grep -e 'Non-2xx or 3xx responses' -e 'Socket errors' "$out" | xargs) — a request failed"
    fi
    WRK_RPS=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
    WRK_REQUESTS=$(awk '/ requests in / { print $1 }' "$out")
    read -r p50_value p50_unit < <(awk '$1 == "50%" { v = $2; u = v; sub(/[a-z]+$/, "", v); sub(/^[0-9.]+/, "", u); print v, u }' "$out")
    read -r p99_value p99_unit < <(awk '$1 == "99%" { v = $2; u = v; sub(/[a-z]+$/, "", v); sub(/^[0-9.]+/, "", u); print v, u }' "$out")
    [[ -n $WRK_RPS && -n $WRK_REQUESTS && -n $p99_value ]] || { cat "$out" >&2; die "could not read wrk's output"; }
    WRK_P50_MS=$(to_ms "$p50_value" "$p50_unit")
    WRK_P99_MS=$(to_ms "$p99_value" "$p99_unit")
    tick_us=$(( 1000000 / $(getconf CLK_TCK) ))
    WRK_SERVER_US=$(awk -v t=$(( cpu_after - cpu_before )) -v tu="$tick_us" -v n="$WRK_REQUESTS" 'BEGIN { printf "%.1f", t * tu / n }')
    WRK_SERVER_KERNEL_US=$(awk -v t=$(( kernel_after - kernel_before )) -v tu="$tick_us" -v n="$WRK_REQUESTS" 'BEGIN { printf "%.1f", t * tu / n }')
    WRK_SERVER_PREEMPTED=$(awk -v p=$(( preempted_after - preempted_before )) -v n="$WRK_REQUESTS" 'BEGIN { printf "%.0f", p * 1000 / n }')
    WRK_CLIENT_US=$(awk -v n="$WRK_REQUESTS" '{ printf "%.1f", ($1 + $2) * 1e6 / n }' "$out.time")
}
