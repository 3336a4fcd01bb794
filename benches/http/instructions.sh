#!/usr/bin/env bash
# Server instructions per request, counted by callgrind: the hello-world baseline, the same
# answering with the contract's six headers (`hello --auth-headers`, as in run.sh), then
# iblueprint's `GET /v1/health` (framework + middleware) and `GET /v1/auth` (+ verification
# and rate limiting, with a limited key). Unlike req/s, an instruction count does not move
# with whatever else the machine is doing, so this is the tool for working on the hot path
# on a busy or shared machine; `run.sh` remains the measure of the target itself.
#
# Usage: bash benches/http/instructions.sh     (REQUESTS=4000 per measured run)
#
# Each server runs under `valgrind --tool=callgrind`; after a warm-up of REQUESTS requests
# the counters are zeroed, exactly REQUESTS requests go over one keep-alive connection, the
# counters are dumped, and their total is divided by REQUESTS. The client is curl; its own
# cost is not counted (it is another process).
#
# PREBUILT=DIR skips the build and uses DIR/iblueprint, DIR/seed and DIR/hello instead
# (to compare two builds, or to measure while the tree is being edited). KEEP=DIR keeps the
# callgrind files there, for `callgrind_annotate --inclusive=yes DIR/callgrind.auth`.

set -euo pipefail

REQUESTS=${REQUESTS:-4000}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SCRIPT=instructions.sh
# shellcheck source=benches/http/common.sh
source "$HERE/common.sh"

need_tools valgrind callgrind_control curl
if [[ -n ${PREBUILT:-} ]]; then
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/iblueprint-$SCRIPT.XXXXXX")
    chmod 700 "$WORK"
    mkdir "$WORK/bin"
    cp "$PREBUILT/iblueprint" "$PREBUILT/seed" "$PREBUILT/hello" "$WORK/bin/"
else
    stage_release --bin iblueprint --examples -- iblueprint examples/seed examples/hello
fi

DATA="$WORK/data.redb"
SECRETS_FILE="$WORK/secrets"
"$WORK/bin/seed" --data "$DATA" --keys 1000 --per-hour 1000000000 --per-day 1000000000 \
    --secrets-out "$SECRETS_FILE" --secrets 1 >&2
HEADER="$WORK/auth-header"
(umask 077; printf 'Authorization: Bearer %s\n' "$(head -n 1 "$SECRETS_FILE")" >"$HEADER")

# requests PATH N: N keep-alive GETs on one connection; fails unless every answer is 200.
requests() {
    local path=$1 n=$2 urls=()
    for ((i = 0; i < n; i++)); do urls+=(-o /dev/null "$URL$path"); done
    local codes
    codes=$(curl -s -H @"$HEADER" -w '%{http_code}\n' "${urls[@]}" | sort | uniq -c | xargs)
    [[ $codes == "$n 200" ]] || die "GET $path: expected $n answers of 200, got: $codes"
}

# count NAME PATH COMMAND...: prints instructions per request of the server COMMAND.
count() {
    local name=$1 path=$2; shift 2
    local out="$WORK/callgrind.$name"
    start_server "$WORK/$name.stderr" RUST_LOG=warn -- valgrind --tool=callgrind --callgrind-out-file="$out" "$@"
    requests "$path" "$REQUESTS"
    callgrind_control --zero "$SERVER_PID" >/dev/null
    requests "$path" "$REQUESTS"
    callgrind_control --dump=measured "$SERVER_PID" >/dev/null
    stop_server
    local total
    total=$(awk '/^(summary|totals):/ { print $2; exit }' "$out.1")
    [[ -n $total ]] || die "no instruction total in $out.1"
    if [[ -n ${KEEP:-} ]]; then mkdir -p "$KEEP" && cp "$out.1" "$KEEP/callgrind.$name"; fi
    awk -v t="$total" -v n="$REQUESTS" 'BEGIN { printf "%.0f", t / n }'
}

log "counting $REQUESTS requests per server (under valgrind: this takes a minute or two)"
hello=$(count hello /v1/auth "$WORK/bin/hello" --listen 127.0.0.1:0)
headers=$(count hello+headers /v1/auth "$WORK/bin/hello" --listen 127.0.0.1:0 --auth-headers)
health=$(count health /v1/health "$WORK/bin/iblueprint" serve --listen 127.0.0.1:0 --data "$DATA")
auth=$(count auth /v1/auth "$WORK/bin/iblueprint" serve --listen 127.0.0.1:0 --data "$DATA")

printf '\n| server | instructions/request | vs hello |\n| --- | ---: | ---: |\n'
for row in "hello|$hello" "hello+headers|$headers" "iblueprint /v1/health|$health" "iblueprint /v1/auth|$auth"; do
    IFS='|' read -r name value <<<"$row"
    printf '| %s | %s | %s |\n' "$name" "$value" "$(awk -v h="$hello" -v v="$value" 'BEGIN { printf "%.2f", v / h }')"
done
