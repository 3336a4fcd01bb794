#!/usr/bin/env bash
# Air-gapped bundle: everything a machine without network needs, in dist/.
#
#   dist/iblueprint-<version>-<arch>.tar.gz          the release binary, the production
#       config, the systemd units with their sysusers/tmpfiles entries, the backup script,
#       the proxy examples, README.md and SHA256SUMS of all of these
#   dist/iblueprint-<version>-vendored-src.tar.gz    the source with every dependency in
#       vendor/ and .cargo/config.toml pointing there: builds with
#       `cargo build --offline --release --locked` and nothing else but a Rust toolchain
#   dist/SHA256SUMS                                  of the two tarballs
#
# Usage: bash packaging/bundle.sh   (from anywhere; needs git, cargo and network for
# `cargo vendor`, or a warm ~/.cargo registry). The tarballs are reproducible for a given
# commit and lock file: sorted, owned by 0:0, with the last commit's time as every mtime.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

version="$(cargo pkgid --quiet | sed 's/.*[#@]//')"
arch="$(uname -m)"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
dist="$root/dist"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# tar with fixed order, owners and times, so the same input gives the same bytes.
reproducible_tar() { # archive dir name
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
    --format=gnu -C "$2" -cf - "$3" | gzip -n -9 >"$1"
}

mkdir -p "$dist"
rm -f "$dist"/iblueprint-"$version"-*.tar.gz "$dist/SHA256SUMS"

echo "== release build"
cargo build --release --locked --bin iblueprint

echo "== binary bundle"
name="iblueprint-$version-$arch"
stage="$work/$name"
install -D -m 0755 target/release/iblueprint "$stage/iblueprint"
strip "$stage/iblueprint" 2>/dev/null || true
install -D -m 0644 packaging/iblueprint.toml "$stage/iblueprint.toml"
install -D -m 0644 config/iblueprint.toml "$stage/iblueprint.toml.sample"
install -D -m 0755 packaging/systemd/iblueprint-backup.sh "$stage/iblueprint-backup.sh"
for unit in iblueprint.service iblueprint-backup.service iblueprint-backup.timer; do
  install -D -m 0644 "packaging/systemd/$unit" "$stage/systemd/$unit"
done
install -D -m 0644 packaging/systemd/sysusers.d/iblueprint.conf "$stage/systemd/sysusers.d/iblueprint.conf"
install -D -m 0644 packaging/systemd/tmpfiles.d/iblueprint.conf "$stage/systemd/tmpfiles.d/iblueprint.conf"
install -D -m 0644 packaging/nginx/iblueprint.conf "$stage/examples/nginx/iblueprint.conf"
install -D -m 0644 packaging/caddy/Caddyfile "$stage/examples/caddy/Caddyfile"
install -D -m 0644 README.md "$stage/README.md"
(cd "$stage" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs sha256sum >SHA256SUMS)
reproducible_tar "$dist/$name.tar.gz" "$work" "$name"

echo "== vendored source"
src_name="iblueprint-$version"
src="$work/$src_name"
mkdir -p "$src"
# The working tree as git sees it: tracked and new files, minus ignored ones (target/, data/).
git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' file; do [ -e "$file" ] && printf '%s\0' "$file"; done |
  tar --null -T - -cf - | tar -xf - -C "$src"
mkdir -p "$src/.cargo"
# cargo vendor prints the source replacement for .cargo/config.toml on stdout.
if ! (cd "$src" && cargo vendor --locked --versioned-dirs vendor >.cargo/config.toml 2>"$work/vendor.log"); then
  cat "$work/vendor.log" >&2
  exit 1
fi
grep -q 'replace-with = "vendored-sources"' "$src/.cargo/config.toml"
cat >>"$src/.cargo/config.toml" <<'EOF'

# Air-gapped: never reach for the network, even without --offline.
[net]
offline = true
EOF
reproducible_tar "$dist/$src_name-vendored-src.tar.gz" "$work" "$src_name"

(cd "$dist" && sha256sum "$name.tar.gz" "$src_name-vendored-src.tar.gz" >SHA256SUMS)
echo "== dist/"
ls -l "$dist"
cat "$dist/SHA256SUMS"
