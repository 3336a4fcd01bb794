#!/usr/bin/env bash
# Throughput of `GET /v1/auth` over HTTPS as a ratio of plain HTTP, with keep-alive (issue 6:
# target ≥ 0.7), and p99 latency of both. Same binary, same data file, same wrk settings;
# only `tls.cert`/`tls.key` differ.
#
# Usage (from anywhere in the repository):
#
#   bash benches/http/tls.sh
#
# What it does:
#   1. installs wrk if missing (apt-get), builds `iblueprint` and the `seed` example with
#      --release, and copies both into a fresh temporary directory (removed on exit: it holds
#      live secrets and a private key);
#   2. makes a self-signed ECDSA P-256 certificate for 127.0.0.1 with openssl (wrk does not
#      verify certificates, so no CA is needed), and seeds one data file with KEYS keys
#      (per_hour = per_day = 10^9, nothing is refused), writing SECRETS of their secrets;
#   3. ROUNDS times, alternating which goes first: starts `iblueprint serve` on that data
#      file over plain HTTP, then over HTTPS (RUST_LOG=warn, so logging is not measured),
#      and drives each with wrk using benches/http/auth.lua (one request per secret in
#      turn, keep-alive connections: the TLS handshake is paid once per connection, as
#      behind a proxy or with any pooling client), after an unmeasured warm-up;
#   4. prints every run and a summary as Markdown tables: req/s, p50, p99, server and wrk
#      CPU per request, the TLS/plain ratio (mean of the per-round ratios), and the protocol
#      and cipher an OpenSSL client with default settings (as wrk is) negotiates.
#
# The script fails if any request got a non-2xx answer or a socket error, or if a server
# does not exit cleanly on SIGTERM.
#
# Settings (environment variables): WRK_THREADS (2), WRK_CONNECTIONS (64), WRK_DURATION
# (10s), WARMUP (2s), ROUNDS (3), KEYS (1000), SECRETS (1000).
#
# Caveat, printed with the results: wrk (which does its own TLS, with OpenSSL) and the
# server share this machine's cores, so the figures are client + server on the same CPUs,
# not server capacity; TLS costs both sides, so the ratio here is lower than the server
# alone would see.

set -euo pipefail

WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNECTIONS=${WRK_CONNECTIONS:-64}
WRK_DURATION=${WRK_DURATION:-10s}
WARMUP=${WARMUP:-2s}
ROUNDS=${ROUNDS:-3}
KEYS=${KEYS:-1000}
SECRETS=${SECRETS:-1000}
LIMIT=1000000000

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LUA="$HERE/auth.lua"

SCRIPT=tls.sh
# shellcheck source=benches/http/common.sh
source "$HERE/common.sh"

need_tools wrk curl openssl
stage_release --bin iblueprint --example seed -- iblueprint examples/seed
IBLUEPRINT="$WORK/bin/iblueprint"
SEED="$WORK/bin/seed"

log "making a self-signed ECDSA P-256 certificate for 127.0.0.1"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null || die "openssl could not make a certificate"

DATA="$WORK/bench.redb"
SECRETS_FILE="$WORK/bench.secrets"
log "seeding $KEYS keys"
"$SEED" --data "$DATA" --keys "$KEYS" --per-hour "$LIMIT" --per-day "$LIMIT" \
    --secrets-out "$SECRETS_FILE" --secrets "$SECRETS" >&2

# --- helpers -----------------------------------------------------------------------------

# start_server_in plain|tls: the same server and data file, with or without TLS.
start_server_in() {
    local mode=$1 tls_env=()
    [[ $mode == tls ]] && tls_env=(IBLUEPRINT_TLS_CERT="$WORK/cert.pem" IBLUEPRINT_TLS_KEY="$WORK/key.pem")
    start_server "$WORK/server.log" RUST_LOG=warn "${tls_env[@]}" -- "$IBLUEPRINT" serve --listen 127.0.0.1:0 --data "$DATA"
    if [[ $mode == tls ]]; then
        [[ $URL == https://* ]] || die "the TLS server announced $URL"
    else
        [[ $URL == http://* ]] || die "the plain server announced $URL"
    fi
}

# One row per run: mode|round|req/s|p50 ms|p99 ms|server CPU µs/req|wrk CPU µs/req|load
ROWS=()

measure() {
    local mode=$1 round=$2
    local out="$WORK/wrk-$mode-$round.txt" header="$WORK/auth-header" code
    (umask 077; printf 'Authorization: Bearer %s\n' "$(head -n 1 "$SECRETS_FILE")" >"$header")
    code=$(curl -sk -o /dev/null -w '%{http_code}' -H @"$header" "$URL/v1/auth")
    [[ $code == 200 ]] || die "$mode: GET /v1/auth with a seeded key answered $code, not 200"
    local wrk_args=(-t"$WRK_THREADS" -c"$WRK_CONNECTIONS" --latency -s "$LUA" "$URL" -- "$SECRETS_FILE" /v1/auth)
    wrk -d"$WARMUP" "${wrk_args[@]}" >/dev/null
    run_wrk "$out" -d"$WRK_DURATION" "${wrk_args[@]}"
    ROWS+=("$mode|$round|$WRK_RPS|$WRK_P50_MS|$WRK_P99_MS|$WRK_SERVER_US|$WRK_CLIENT_US|$WRK_LOAD")
    log "$(printf '%-5s round %s  %9.0f req/s  p50 %6.2f ms  p99 %6.2f ms  CPU/req: server %5s µs, wrk %5s µs' "$mode" "$round" "$WRK_RPS" "$WRK_P50_MS" "$WRK_P99_MS" "$WRK_SERVER_US" "$WRK_CLIENT_US")"
}

NEGOTIATED=
run() {
    start_server_in "$1"
    if [[ $1 == tls && -z $NEGOTIATED ]]; then
        # What an OpenSSL client with default settings (as wrk is) negotiates with the server.
        NEGOTIATED=$(openssl s_client -connect "${URL#https://}" </dev/null 2>/dev/null | grep -m1 -E '^New, ' || true)
        NEGOTIATED=${NEGOTIATED#New, }
    fi
    measure "$1" "$2"
    stop_server
}

# --- the runs ----------------------------------------------------------------------------

log "wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION --latency (warm-up $WARMUP), $ROUNDS rounds; $(nproc) cores shared by wrk and the server"
for ((round = 1; round <= ROUNDS; round++)); do
    if (( round % 2 == 1 )); then
        run plain "$round"; run tls "$round"
    else
        run tls "$round"; run plain "$round"
    fi
done

# --- report ------------------------------------------------------------------------------

value_of() { # MODE ROUND COLUMN
    local r
    for r in "${ROWS[@]}"; do
        IFS='|' read -r m n _ <<<"$r"
        if [[ $m == "$1" && $n == "$2" ]]; then cut -d'|' -f"$3" <<<"$r"; return; fi
    done
}
mean_of() { # MODE COLUMN
    local r total=0 count=0
    for r in "${ROWS[@]}"; do
        IFS='|' read -r m _ <<<"$r"
        if [[ $m == "$1" ]]; then
            total=$(awk -v t="$total" -v v="$(cut -d'|' -f"$2" <<<"$r")" 'BEGIN { print t + v }'); count=$((count + 1))
        fi
    done
    awk -v t="$total" -v c="$count" 'BEGIN { printf "%.2f", t / c }'
}

{
    echo
    echo "## GET /v1/auth over HTTPS vs plain HTTP, keep-alive; wrk -t$WRK_THREADS -c$WRK_CONNECTIONS -d$WRK_DURATION --latency, $ROUNDS rounds, $KEYS keys"
    echo
    echo "$(nproc) cores, shared by wrk and the server (actix's default worker count, $(nproc)); RUST_LOG=warn."
    echo "wrk does its own TLS (OpenSSL) on the same cores, so client-side TLS cost is in these figures too."
    echo "Certificate: self-signed ECDSA P-256. Negotiated by an OpenSSL client with default settings, as wrk is: ${NEGOTIATED:-unknown}."
    echo
    echo "Load = 1-minute load average just before the run (other work on the machine shows there)."
    echo
    echo "| round | mode | req/s | p50 ms | p99 ms | server CPU µs/req | wrk CPU µs/req | load | TLS / plain |"
    echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for ((round = 1; round <= ROUNDS; round++)); do
        plain=$(value_of plain "$round" 3); tls=$(value_of tls "$round" 3)
        for mode in plain tls; do
            ratio="-"
            [[ $mode == tls ]] && ratio=$(awk -v a="$tls" -v b="$plain" 'BEGIN { printf "%.2f", a / b }')
            printf '| %s | %s | %.0f | %s | %s | %s | %s | %s | %s |\n' "$round" "$mode" "$(value_of "$mode" "$round" 3)" \
                "$(value_of "$mode" "$round" 4)" "$(value_of "$mode" "$round" 5)" "$(value_of "$mode" "$round" 6)" \
                "$(value_of "$mode" "$round" 7)" "$(value_of "$mode" "$round" 8)" "$ratio"
        done
    done
    ratio=$(for ((round = 1; round <= ROUNDS; round++)); do
        awk -v a="$(value_of tls "$round" 3)" -v b="$(value_of plain "$round" 3)" 'BEGIN { printf "%.4f\n", a / b }'
    done | awk '{ t += $1 } END { printf "%.2f", t / NR }')
    echo
    echo "| mode | mean req/s | mean p50 ms | mean p99 ms | server CPU µs/req | wrk CPU µs/req |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    for mode in plain tls; do
        printf '| %s | %.0f | %s | %s | %s | %s |\n' "$mode" "$(mean_of "$mode" 3)" "$(mean_of "$mode" 4)" "$(mean_of "$mode" 5)" \
            "$(mean_of "$mode" 6)" "$(mean_of "$mode" 7)"
    done
    echo
    echo "TLS / plain throughput (mean of per-round ratios): **$ratio** (target ≥ 0.7)"
}
