#!/bin/sh
# A dated backup of iblueprint's data file, keeping the newest $IBLUEPRINT_BACKUP_KEEP.
# Run nightly by iblueprint-backup.service; installed as /usr/lib/iblueprint/iblueprint-backup.sh.
#
#   IBLUEPRINT_DATA         the data file      (default /var/lib/iblueprint/iblueprint.redb)
#   IBLUEPRINT_BACKUP_DIR   where backups go   (default /var/lib/iblueprint/backups)
#   IBLUEPRINT_BACKUP_KEEP  how many to keep   (default 14)
#   IBLUEPRINT_BIN          the binary         (default /usr/bin/iblueprint)
#
# Each run writes $IBLUEPRINT_BACKUP_DIR/iblueprint-YYYY-MM-DD.redb (UTC date; a second run
# on the same day replaces that day's file, atomically). `iblueprint backup` writes to a
# temporary file, checks it and renames it, so a failed run leaves the old backups as they
# were. Only after a successful backup are the oldest dated files beyond the count removed;
# nothing else in the folder is touched.
set -eu

data="${IBLUEPRINT_DATA:-/var/lib/iblueprint/iblueprint.redb}"
dir="${IBLUEPRINT_BACKUP_DIR:-/var/lib/iblueprint/backups}"
keep="${IBLUEPRINT_BACKUP_KEEP:-14}"
bin="${IBLUEPRINT_BIN:-/usr/bin/iblueprint}"

case "$keep" in
  '' | *[!0-9]*) echo "error: IBLUEPRINT_BACKUP_KEEP must be a whole number of backups, not '$keep'" >&2; exit 2 ;;
esac
if [ "$keep" -lt 1 ]; then
  echo "error: IBLUEPRINT_BACKUP_KEEP must be at least 1" >&2
  exit 2
fi

if [ ! -e "$data" ]; then
  echo "no data file at $data yet: nothing to back up"
  exit 0
fi

mkdir -p -- "$dir"
out="$dir/iblueprint-$(date -u +%Y-%m-%d).redb"
"$bin" backup --data "$data" --out "$out" --force

# Dated names sort by date; remove all but the newest $keep.
find "$dir" -mindepth 1 -maxdepth 1 -type f -name 'iblueprint-[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9].redb' |
  sort -r |
  tail -n +"$((keep + 1))" |
  while IFS= read -r old; do
    rm -f -- "$old"
    echo "removed old backup $old"
  done
