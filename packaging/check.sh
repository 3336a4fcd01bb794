#!/usr/bin/env bash
# Checks the packaging end to end (SPEC §10), where cargo test cannot:
#   1. builds the .deb with cargo-deb (installed if missing) and lists its contents and
#      maintainer scripts;
#   2. `systemd-analyze verify` on the units as the .deb installs them (and the offline
#      `systemd-analyze security` score), where systemd-analyze is available;
#   3. runs packaging/bundle.sh (binary tarball + vendored source tarball) and checks the
#      bundle's SHA256SUMS;
#   4. unpacks the vendored source in an empty folder and builds it with
#      `cargo build --offline --release --locked`, with CARGO_HOME pointed at an empty
#      folder (no registry cache to fall back on) and, where possible, no network at all
#      (a fresh network namespace); then runs the binary it built.
# Usage: bash packaging/check.sh. Takes a few minutes (two release builds); not run by
# .ci/run (see README, "Install air-gapped").
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
version="$(cargo pkgid --quiet | sed 's/.*[#@]//')"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
started=$SECONDS
step() { echo; echo "== $* ($((SECONDS - started))s)"; }
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

step "1. .deb"
if ! cargo deb --version >/dev/null 2>&1; then
  echo "cargo-deb missing: cargo install cargo-deb --locked"
  cargo install cargo-deb --locked --quiet
fi
cargo deb --version
rm -f target/debian/iblueprint_*.deb
cargo deb --quiet
deb="$(ls target/debian/iblueprint_"$version"-*.deb)"
echo "built $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb --info "$deb"
echo "-- contents"
dpkg-deb --contents "$deb"
mkdir -p "$work/control" "$work/debroot"
dpkg-deb --control "$deb" "$work/control"
echo "-- conffiles"
cat "$work/control/conffiles"
grep -qx /etc/iblueprint/iblueprint.toml "$work/control/conffiles"
for script in postinst prerm postrm; do
  sh -n "$work/control/$script"
done
echo "-- postinst: $(grep -c 'Automatically added by cargo-deb' "$work/control/postinst") generated snippets;" \
  "creates the user: $(grep -c '^[[:space:]]*systemd-sysusers ' "$work/control/postinst")x, enables:" \
  "$(grep -o 'deb-systemd-helper enable [a-z.-]*' "$work/control/postinst" | sed 's/.* //' | tr '\n' ' ')"

step "2. systemd units"
if ! command -v systemd-analyze >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "systemd-analyze missing: installing Debian's systemd package (not started)"
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null || true
fi
if command -v systemd-analyze >/dev/null 2>&1; then
  # Verify the units where the .deb puts them, in a root holding the package's files (so
  # the commands they run exist) and the host's own units (for the targets they name).
  dpkg-deb --extract "$deb" "$work/debroot"
  for dir in /usr/lib/systemd/system /lib/systemd/system; do
    [ -d "$dir" ] && cp -rn "$dir/." "$work/debroot/usr/lib/systemd/system/"
  done
  units=(iblueprint.service iblueprint-backup.service iblueprint-backup.timer)
  # verify exits 0 on warnings such as an unparsable value: any output is a failure.
  if ! out="$(systemd-analyze verify --root="$work/debroot" "${units[@]/#//usr/lib/systemd/system/}" 2>&1)" || [ -n "$out" ]; then
    echo "$out"
    echo "FAIL: systemd-analyze verify"
    exit 1
  fi
  echo "systemd-analyze verify: ${units[*]}: ok ($(systemd-analyze --version | head -n 1))"
  for unit in iblueprint.service iblueprint-backup.service; do
    systemd-analyze security --offline=true "$work/debroot/usr/lib/systemd/system/$unit" 2>/dev/null | tail -n 1 || true
  done
else
  echo "systemd-analyze: not available here; units not verified"
fi

step "3. bundle"
bash packaging/bundle.sh
arch="$(uname -m)"
mkdir -p "$work/bundle"
tar -xzf "dist/iblueprint-$version-$arch.tar.gz" -C "$work/bundle"
(cd "$work/bundle/iblueprint-$version-$arch" && sha256sum --quiet -c SHA256SUMS && echo "bundle SHA256SUMS: ok")
echo "-- dist/iblueprint-$version-$arch.tar.gz"
tar -tvzf "dist/iblueprint-$version-$arch.tar.gz"
(cd dist && sha256sum --quiet -c SHA256SUMS && echo "dist/SHA256SUMS: ok")

step "4. vendored source, offline, in an empty folder"
mkdir -p "$work/offline/cargo-home"
tar -xzf "dist/iblueprint-$version-vendored-src.tar.gz" -C "$work/offline"
echo "vendored crates: $(find "$work/offline/iblueprint-$version/vendor" -mindepth 1 -maxdepth 1 | wc -l)," \
  "$(du -sh "$work/offline/iblueprint-$version/vendor" | cut -f1) unpacked," \
  "$(du -h "dist/iblueprint-$version-vendored-src.tar.gz" | cut -f1) compressed"
build=(env CARGO_HOME="$work/offline/cargo-home" CARGO_NET_OFFLINE=true CARGO_TARGET_DIR="$work/offline/target"
  cargo build --offline --release --locked)
cd "$work/offline/iblueprint-$version"
# A new network namespace has no interfaces but loopback: nothing can be fetched.
if unshare --net true 2>/dev/null; then
  echo "network: none (unshare --net)"
  unshare --net "${build[@]}"
elif $sudo unshare --net true 2>/dev/null; then
  echo "network: none (sudo unshare --net)"
  $sudo unshare --net "${build[@]}"
else
  echo "network: present (no unshare here); CARGO_NET_OFFLINE=true and an empty CARGO_HOME"
  "${build[@]}"
fi
cd "$root"
echo "built: $("$work/offline/target/release/iblueprint" version)"
# No registry/ or git/ here: nothing was fetched or needed from outside the tarball.
echo "CARGO_HOME after the build holds: $(find "$work/offline/cargo-home" -mindepth 1 -maxdepth 1 -printf '%f ' | sed 's/^$/nothing/')"

step "done"
