//! `iblueprint backup`: a consistent copy of the whole database in one file, safe to take
//! while the server runs.
//!
//! The data file is opened read-only beside the server and read in one transaction (one
//! commit's state). The copy goes to a temporary file in the destination folder, is
//! fsynced, re-opened and checked (redb's page checksums, plus every record decoded and
//! counted against the source), and only then renamed into place, so `--out` is either the
//! old file or a complete, checked backup, never a partial one.
//!
//! Rate-limit levels in a backup are those of the server's last flush (at most
//! `flush_interval_ms` old). Sessions are never included.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::{BackupArgs, BackupFormat, CliError};
use crate::domain::Timestamp;
use crate::import::{ExportHeader, read_jsonl};
use crate::store::SCHEMA_VERSION;
use crate::store::snapshot::{Counts, ReadOnlyStore, verify_copy};

pub fn run(args: BackupArgs) -> Result<(), CliError> {
    let now = crate::clock::now();
    let out = &args.out;
    if out.exists() && !args.force {
        return Err(CliError::usage(format!("{} already exists; pass --force to replace it", out.display())));
    }
    if same_file(out, &args.data.data) {
        return Err(CliError::usage(format!(
            "--out {} is the data file itself; write the backup somewhere else",
            out.display()
        )));
    }
    let store = ReadOnlyStore::open(&args.data.data).map_err(|e| CliError::Runtime(e.into()))?;
    let snapshot = store.read().map_err(|e| CliError::Runtime(e.into()))?;
    let expected = snapshot.counts(now).map_err(|e| CliError::Runtime(e.into()))?;

    let dir = destination_dir(out);
    let temp = tempfile::Builder::new()
        .prefix(".iblueprint-backup-")
        .tempfile_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let written = match args.format {
        BackupFormat::Redb => {
            snapshot.copy_to(temp.path()).map_err(|e| CliError::Runtime(e.into()))?;
            verify_copy(temp.path(), now).map_err(|e| CliError::Runtime(e.into()))?
        }
        BackupFormat::Jsonl => {
            write_jsonl(&snapshot, temp.as_file(), expected, now)?;
            let file = File::open(temp.path()).context("re-opening the export to check it")?;
            let (_, records) = read_jsonl(file).map_err(|e| CliError::Runtime(anyhow::anyhow!("{e}")))?;
            let mut counts = Counts::default();
            records.iter().for_each(|r| counts.add(r, now));
            counts
        }
    };
    if written != expected {
        return Err(CliError::Runtime(anyhow::anyhow!(
            "the backup does not match the data file (wrote {written:?}, expected {expected:?}); nothing was saved"
        )));
    }
    temp.as_file().sync_all().context("syncing the backup")?;
    let persisted = if args.force {
        temp.persist(out).map_err(|e| e.error)
    } else {
        temp.persist_noclobber(out).map_err(|e| e.error)
    };
    persisted.with_context(|| format!("moving the backup into place at {}", out.display()))?;
    File::open(&dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing the folder {}", dir.display()))?;

    let size = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    println!("saved {expected} to {} ({})", out.display(), human_size(size));
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn destination_dir(out: &Path) -> PathBuf {
    match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn write_jsonl(snapshot: &crate::store::ReadTxn, file: &File, counts: Counts, now: Timestamp) -> Result<(), CliError> {
    let mut writer = BufWriter::new(file);
    let header = ExportHeader::new(SCHEMA_VERSION, now, counts);
    let mut line = serde_json::to_vec(&header).context("encoding the export header")?;
    line.push(b'\n');
    writer.write_all(&line).context("writing the export")?;
    snapshot
        .for_each_record(|record| {
            serde_json::to_writer(&mut writer, &record)
                .map_err(|e| crate::store::StoreError::Corrupt { table: "export", reason: e.to_string() })?;
            writer
                .write_all(b"\n")
                .map_err(|e| crate::store::StoreError::Corrupt { table: "export", reason: e.to_string() })
        })
        .map_err(|e| CliError::Runtime(e.into()))?;
    writer.flush().context("writing the export")?;
    Ok(())
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}
