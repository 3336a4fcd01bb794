#!/usr/bin/env bash
# Screenshots of the settings page for checking by eye: builds the binary and runs the
# end-to-end browser test (tests/browser.rs) with SCREENSHOTS_DIR set, so the same flow
# saves a full-page PNG of each page it passes through (setup, empty list, create form with
# and without errors, one-time secrets, the "…" menu, revoke confirmation, the key list,
# users, audit log, profile, avatar menu, sign-in, the member's 404).
#
# Usage: bash tests/browser/screenshots.sh OUTDIR
# Needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver).
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
mkdir -p "$1"
out="$(cd "$1" && pwd)"
cd "$(dirname "$0")/../.."

for tool in chromium chromedriver; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "$tool not found: install it with 'apt-get install chromium chromium-driver'" >&2
    exit 1
  fi
done

rm -f "$out"/[0-9][0-9]-*.png
SCREENSHOTS_DIR="$out" cargo test --test browser -- --exact \
  the_settings_page_works_end_to_end_in_a_real_browser --nocapture
echo "screenshots in $out:"
ls -1 "$out"/*.png
