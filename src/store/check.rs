//! The offline consistency check behind `iblueprint check` (an fsck for the data file).
//!
//! redb's integrity check needs a writable handle and may repair what it finds, and a file
//! left by a crash must be recovered before it can be read at all. `check` must never
//! change the operator's file, so both happen on a private copy: the original is only ever
//! opened read-only, and only to hold off a writer while it is copied. On the copy it runs
//! redb's recovery (if the file was not shut down cleanly) and integrity check (every page
//! checksum), then decodes every record with the codec and checks the cross-table
//! invariants the store relies on: the username, key-hash and per-user key indexes point
//! exactly at the records they index, and nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use redb::{ConcurrencyMode, Database, DatabaseError, ReadableDatabase, ReadableTableMetadata};

use super::{
    AUDIT, BUCKETS, KEY_HASHES, KEYS, NEXT_KEY_SEQ, ReadTxn, Reads, SCHEMA_VERSION, SCHEMA_VERSION_KEY, SESSIONS,
    StoreError, USER_KEYS, USERNAMES, USERS, builder, decode, open_error, private_copy, refuse_folder,
    surviving_panics,
};
use crate::domain::ratelimit::Buckets;
use crate::domain::session::Session;
use crate::domain::{AuditEvent, Key, KeyId, Timestamp, User, UserId};

/// What a check found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// The file had not been shut down cleanly (a crash); redb's recovery ran on the copy.
    pub recovered: bool,
    pub users: u64,
    pub keys: u64,
    /// Keys whose revocation time has passed.
    pub revoked: u64,
    pub buckets: u64,
    pub audit: u64,
    pub sessions: u64,
    /// Every inconsistency, one line each; empty means the file is sound.
    pub problems: Vec<String>,
}

/// Checks the data file at `path` without writing to it; see the module docs.
pub fn check_file(path: &Path, now: Timestamp) -> Result<CheckReport, StoreError> {
    if !path.exists() {
        return Err(StoreError::Missing(path.to_owned()));
    }
    refuse_folder(path)?;
    // redb may panic on a file damaged in ways it does not expect (a malformed allocator
    // state, say), from the first open on: that is a finding, not a crash of `check`.
    surviving_panics(|| check_guarded(path, now)).unwrap_or_else(|| {
        Ok(CheckReport {
            problems: vec!["redb could not make sense of the file (it panicked reading it)".into()],
            ..CheckReport::default()
        })
    })
}

fn check_guarded(path: &Path, now: Timestamp) -> Result<CheckReport, StoreError> {
    // Read-only in exclusive-writer mode conflicts with a live server (and keeps one from
    // starting) while the copy is taken. A file that needs recovery cannot be opened
    // read-only at all; then the copy is taken unguarded and compared before and after.
    let guard = match Database::builder().set_concurrency_mode(ConcurrencyMode::ExclusiveWriter).open_read_only(path) {
        Ok(db) => Some(db),
        Err(DatabaseError::RepairAborted) => None,
        Err(err) => return Err(open_error(path, err)),
    };
    let before = stamp(path)?;
    let copy = private_copy(path)?;
    if guard.is_none() && stamp(path)? != before {
        return Err(StoreError::NotADataFile {
            path: path.to_owned(),
            reason: "it changed while it was being copied (did a server start?); try again with the server stopped"
                .into(),
        });
    }
    let mut report = CheckReport { recovered: guard.is_none(), ..CheckReport::default() };
    drop(guard);

    match check_copy(copy.path(), now, &mut report) {
        Ok(()) => {}
        Err(StoreError::Corrupt { table, reason }) => report.problems.push(format!("{table}: {reason}")),
        Err(err) => report.problems.push(err.to_string()),
    }
    Ok(report)
}

/// Length and modification time: enough to notice a writer touching the file mid-copy.
fn stamp(path: &Path) -> Result<(u64, Option<std::time::SystemTime>), StoreError> {
    let meta = std::fs::metadata(path).map_err(|error| StoreError::Open { path: path.to_owned(), error })?;
    Ok((meta.len(), meta.modified().ok()))
}

fn check_copy(copy: &Path, now: Timestamp, report: &mut CheckReport) -> Result<(), StoreError> {
    let mut db = builder().create(copy).map_err(|err| open_error(copy, err))?;
    if !db.check_integrity().map_err(|err| open_error(copy, err))? {
        report.problems.push("the file fails redb's integrity check (page checksums or allocator state)".into());
    }
    let read = ReadTxn { txn: db.begin_read()? };
    Walk { read: &read, now, report }.run()
}

struct Walk<'a> {
    read: &'a ReadTxn,
    now: Timestamp,
    report: &'a mut CheckReport,
}

impl Walk<'_> {
    fn problem(&mut self, message: String) {
        self.report.problems.push(message);
    }

    fn run(mut self) -> Result<(), StoreError> {
        let version = self.read.meta(SCHEMA_VERSION_KEY)?;
        if version != Some(SCHEMA_VERSION) {
            self.problem(format!("meta: schema version is {version:?}, this binary expects {SCHEMA_VERSION}"));
        }
        let users = self.users()?;
        let keys = self.keys(&users)?;
        self.key_hashes(&keys)?;
        self.user_keys(&keys)?;
        let next_seq = self.read.meta(NEXT_KEY_SEQ)?.unwrap_or(1);
        if let Some(max) = keys.values().map(|k| k.seq).max().filter(|max| *max >= next_seq) {
            self.problem(format!("meta: next_key_seq {next_seq} is not above the highest key seq {max}"));
        }
        self.records()
    }

    fn users(&mut self) -> Result<BTreeMap<String, User>, StoreError> {
        let mut users = BTreeMap::new();
        for entry in self.read.table(USERS)?.range::<&str>(..)? {
            let (id, value) = entry?;
            let id = id.value().to_owned();
            match decode::<User>("users", value.value()) {
                Ok(user) if user.id.as_str() != id => {
                    self.problem(format!("users: record {id} holds user {}", user.id))
                }
                Ok(user) => drop(users.insert(id, user)),
                Err(err) => self.problem(format!("users: record {id}: {err}")),
            }
        }
        self.report.users = users.len() as u64;
        let mut indexed = 0u64;
        for entry in self.read.table(USERNAMES)?.range::<&str>(..)? {
            let (name, id) = entry?;
            let (name, id) = (name.value(), id.value());
            indexed += 1;
            match users.get(id) {
                Some(user) if user.username.as_str() == name => {}
                Some(user) => {
                    self.problem(format!("usernames: {name:?} points at user {id}, whose name is {:?}", user.username))
                }
                None => self.problem(format!("usernames: {name:?} points at a missing user {id}")),
            }
        }
        if indexed != users.len() as u64 {
            self.problem(format!("usernames: {indexed} entries for {} users", users.len()));
        }
        Ok(users)
    }

    fn keys(&mut self, users: &BTreeMap<String, User>) -> Result<BTreeMap<String, Key>, StoreError> {
        let mut keys = BTreeMap::new();
        let mut seqs = BTreeSet::new();
        for entry in self.read.table(KEYS)?.range::<&str>(..)? {
            let (id, value) = entry?;
            let id = id.value().to_owned();
            let key = match decode::<Key>("keys", value.value()) {
                Ok(key) => key,
                Err(err) => {
                    self.problem(format!("keys: record {id}: {err}"));
                    continue;
                }
            };
            if key.id.as_str() != id {
                self.problem(format!("keys: record {id} holds key {}", key.id));
            }
            if !users.contains_key(key.user_id.as_str()) {
                self.problem(format!("keys: {id} belongs to a missing user {}", key.user_id));
            }
            if !seqs.insert(key.seq) {
                self.problem(format!("keys: {id} shares its seq {} with another key", key.seq));
            }
            if key.revoked_at.is_some_and(|at| at <= self.now) {
                self.report.revoked += 1;
            }
            keys.insert(id, key);
        }
        self.report.keys = keys.len() as u64;
        Ok(keys)
    }

    /// Every key has exactly one hash entry pointing back at it, and no entry points elsewhere.
    fn key_hashes(&mut self, keys: &BTreeMap<String, Key>) -> Result<(), StoreError> {
        let table = self.read.table(KEY_HASHES)?;
        for (id, key) in keys {
            match table.get(&key.hash.0)? {
                Some(found) if found.value() == id => {}
                Some(found) => self.problem(format!("key_hashes: the hash of {id} points at {}", found.value())),
                None => self.problem(format!("key_hashes: no entry for {id} (it could never verify)")),
            }
        }
        let entries = table.len()?;
        if entries != keys.len() as u64 {
            self.problem(format!("key_hashes: {entries} entries for {} keys", keys.len()));
        }
        Ok(())
    }

    /// Every key is listed once under its owner and seq, and nothing else is listed.
    fn user_keys(&mut self, keys: &BTreeMap<String, Key>) -> Result<(), StoreError> {
        let table = self.read.table(USER_KEYS)?;
        let mut entries = 0u64;
        for entry in table.range::<(&str, u64)>(..)? {
            let (place, id) = entry?;
            let ((user, seq), id) = (place.value(), id.value());
            entries += 1;
            match keys.get(id) {
                Some(key) if key.user_id.as_str() == user && key.seq == seq => {}
                Some(key) => self.problem(format!(
                    "user_keys: ({user}, {seq}) points at {id}, which is ({}, {})",
                    key.user_id, key.seq
                )),
                None => self.problem(format!("user_keys: ({user}, {seq}) points at a missing key {id}")),
            }
        }
        if entries != keys.len() as u64 {
            self.problem(format!("user_keys: {entries} entries for {} keys", keys.len()));
        }
        Ok(())
    }

    /// The tables nothing indexes: each record must decode.
    fn records(&mut self) -> Result<(), StoreError> {
        for entry in self.read.table(BUCKETS)?.range::<&str>(..)? {
            let (id, value) = entry?;
            if KeyId::parse(id.value()).is_none() {
                self.problem(format!("buckets: bad key id {:?}", id.value()));
            }
            match decode::<Buckets>("buckets", value.value()) {
                Ok(_) => self.report.buckets += 1,
                Err(err) => self.problem(format!("buckets: record {}: {err}", id.value())),
            }
        }
        for entry in self.read.table(AUDIT)?.range::<u64>(..)? {
            let (seq, value) = entry?;
            match decode::<AuditEvent>("audit", value.value()) {
                Ok(_) => self.report.audit += 1,
                Err(err) => self.problem(format!("audit: event {}: {err}", seq.value())),
            }
        }
        for entry in self.read.table(SESSIONS)?.range::<[u8; 32]>(..)? {
            let (_, value) = entry?;
            match decode::<Session>("sessions", value.value()) {
                Ok(session) if UserId::parse(session.user_id.as_str()).is_some() => self.report.sessions += 1,
                Ok(_) => self.problem("sessions: a session with a bad user id".into()),
                Err(err) => self.problem(format!("sessions: a record: {err}")),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{RateLimit, fixtures};

    /// A data file with one user and one key, closed; returns its path and the key.
    fn sound_file(dir: &tempfile::TempDir) -> (std::path::PathBuf, Key) {
        let path = dir.path().join("c.redb");
        let store = super::super::Store::open(&path).unwrap();
        let user = fixtures::user("alice");
        let mut key = fixtures::key(&user.id, RateLimit::UNLIMITED);
        store
            .write(|tx| {
                tx.put_user(&user)?;
                tx.insert_key(&mut key)
            })
            .unwrap();
        (path, key)
    }

    /// Damages the file with a raw redb transaction, as a bug or a bad restore might.
    fn damage(path: &Path, change: impl FnOnce(&redb::WriteTransaction)) {
        let db = builder().create(path).unwrap();
        let txn = db.begin_write().unwrap();
        change(&txn);
        txn.commit().unwrap();
    }

    fn problems(path: &Path) -> Vec<String> {
        check_file(path, Timestamp::from_unix(1)).unwrap().problems
    }

    #[test]
    fn a_sound_file_passes_with_its_counts_and_is_left_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = sound_file(&dir);
        let before = std::fs::read(&path).unwrap();
        let report = check_file(&path, Timestamp::from_unix(1)).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!((report.users, report.keys, report.revoked, report.audit), (1, 1, 0, 0));
        assert!(!report.recovered);
        assert!(std::fs::read(&path).unwrap() == before, "check must not write to the file");
    }

    #[test]
    fn a_hash_entry_pointing_nowhere_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = sound_file(&dir);
        damage(&path, |txn| {
            txn.open_table(KEY_HASHES).unwrap().insert(&[7u8; 32], "key_nothing").unwrap();
        });
        let found = problems(&path);
        assert!(found.iter().any(|p| p.starts_with("key_hashes: 2 entries for 1 keys")), "{found:?}");
    }

    #[test]
    fn a_key_missing_from_its_indexes_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let (path, key) = sound_file(&dir);
        damage(&path, |txn| {
            txn.open_table(KEY_HASHES).unwrap().remove(&key.hash.0).unwrap();
            txn.open_table(USER_KEYS).unwrap().remove((key.user_id.as_str(), key.seq)).unwrap();
        });
        let found = problems(&path);
        assert!(found.iter().any(|p| p.contains("no entry for") && p.contains(key.id.as_str())), "{found:?}");
        assert!(found.iter().any(|p| p.starts_with("user_keys: 0 entries for 1 keys")), "{found:?}");
    }

    #[test]
    fn an_undecodable_record_and_a_lost_username_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let (path, key) = sound_file(&dir);
        damage(&path, |txn| {
            txn.open_table(KEYS).unwrap().insert(key.id.as_str(), &[0xFFu8, 1, 2][..]).unwrap();
            txn.open_table(USERNAMES).unwrap().remove("alice").unwrap();
        });
        let found = problems(&path);
        assert!(found.iter().any(|p| p.starts_with(&format!("keys: record {}", key.id))), "{found:?}");
        assert!(found.iter().any(|p| p.starts_with("usernames: 0 entries for 1 users")), "{found:?}");
    }

    #[test]
    fn a_file_held_by_a_writer_is_refused_not_copied_torn() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = sound_file(&dir);
        let _server = super::super::Store::open(&path).unwrap();
        assert!(matches!(check_file(&path, Timestamp::from_unix(1)), Err(StoreError::Locked(_))));
    }
}
