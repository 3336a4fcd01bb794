#!/usr/bin/env bash
# The crash harness of tests/crash.rs on a release build, for longer runs than CI's 50 rounds:
# mixed load (create, rotate, revoke; verification from several threads), SIGKILL at a random
# moment, then `iblueprint check`, acknowledged changes, revoked keys and lost usage checked
# after every restart.
#
#   tests/crash/run.sh [ROUNDS] [SEED]      e.g. tests/crash/run.sh 500
#
# ROUNDS defaults to 200; SEED defaults to a fresh one, printed first so a failing run can be
# replayed (as far as thread timing allows) with the same SEED.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-200}"
seed="${2:-}"
if [[ -n "$seed" ]]; then export CRASH_SEED="$seed"; fi
export CRASH_ROUNDS="$rounds"
exec cargo test --release --test crash mixed_load -- --nocapture --test-threads 1
