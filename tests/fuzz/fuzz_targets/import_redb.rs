//! The redb-file import path (`import::read_backup` → `store::snapshot::read_foreign`):
//! a foreign redb file is copied aside, opened with redb's integrity check, migrated if
//! old, and read under a panic guard. Arbitrary bytes must give an error or records;
//! never a crash, a hang or a memory blow-up. Records that come back are checked like an
//! import checks them.
//!
//! Each run writes the input to a file and redb opens, checks and (for a valid file)
//! migrates a copy of it, so this target is I/O bound: run it with `TMPDIR` on a tmpfs
//! (run.sh uses /dev/shm) to keep the exec rate useful.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use iblueprint::import;
use libfuzzer_sys::fuzz_target;

fn input_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| std::env::temp_dir().join(format!("iblueprint-fuzz-{}.redb", std::process::id())))
}

fuzz_target!(|data: &[u8]| {
    let path = input_path();
    if std::fs::write(path, data).is_err() {
        return;
    }
    if let Ok(records) = import::read_backup(path) {
        let _ = import::validate(&records);
    }
});
