//! The one module that knows redb: tables, transactions, schema version, and what is
//! durable when.
//!
//! # Assumptions and durability
//! Everything lives in one redb file. redb commits are copy-on-write with a checksummed
//! commit slot: a crash leaves either the previous or the new state, never a mix. Every
//! [`Store::write`] commits with `Durability::Immediate` (fsync) before it returns `Ok`, so a
//! change the API has acknowledged survives a crash or power cut. A write whose closure
//! fails leaves nothing behind: the transaction is dropped, which aborts it. A commit that
//! fails on the disk is all or nothing, but which one only a reopen tells (see below).
//!
//! # I/O errors
//! After an I/O error redb refuses further writes (it may have half-written pages): every
//! later write fails with `PreviousIo` until the database is closed and opened again, which
//! runs redb's recovery and yields the last commit that reached the disk whole. The store
//! does not reopen itself behind the server's back (read transactions and the verification
//! view hold the old handle, and a disk that just failed is likely to fail again); it
//! reports [`StoreError::is_unavailable`], the API answers 503 `storage_unavailable`, and
//! the operator restarts the server once the disk is fixed. redb also refuses new reads
//! of the file after an I/O error, so until the restart only verifications served from
//! the current view (keys already used since the last commit) still answer.
//!
//! A failed commit is usually rolled back by that recovery, but not always: redb 4.6
//! writes the header once more after the commit's last fsync, and if that write (or an
//! fsync whose data did reach the disk) fails, the commit reports an error and is durable
//! all the same. So a 503 means "not acknowledged, outcome unknown", never "acknowledged";
//! what holds without exception is that an acknowledged change is durable and a change is
//! all or nothing. `tests/fault.rs` shows all of this.
//!
//! # Processes
//! The server opens the file in `ConcurrencyMode::SingleWriter`: it is the one writer, and
//! a `backup` process may open the same file read-only at the same time. A second writer
//! (`users …`, `import`, another `serve`) is refused with [`StoreError::Locked`].
//!
//! # Tables
//! | table | key | value |
//! | --- | --- | --- |
//! | `meta` | name | u64 (`schema_version`, `next_key_seq`) |
//! | `users` | user id | [`User`] record |
//! | `usernames` | username | user id |
//! | `keys` | key id | [`Key`] record (hash only, never the secret) |
//! | `key_hashes` | blake3 of the token | key id |
//! | `user_keys` | (user id, key seq) | key id, newest = highest seq |
//! | `audit` | sequence number | [`AuditEvent`] record |
//! | `buckets` | key id the buckets belong to (`Key::limit_id`) | [`Buckets`] record |
//! | `sessions` | blake3 of the session secret | [`Session`] record |
//!
//! Token-bucket levels and usage counters (`last_used_at`, `request_count`) are the one
//! exception to "durable before acknowledged": they change on every request, so the limiter
//! keeps them in memory and writes them here in one transaction per flush interval and at
//! shutdown. A crash loses at most one interval of consumption; see `limiter`.
//!
//! Records are encoded by [`codec`]: a format-version byte, then postcard.

pub mod check;
pub mod codec;
#[doc(hidden)]
pub mod fault;
mod hot;
pub mod snapshot;

use std::path::{Path, PathBuf};

use redb::{
    ConcurrencyMode, Database, DatabaseError, Durability, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, TableHandle, WriteTransaction,
};

use crate::domain::ratelimit::Buckets;
use crate::domain::session::Session;
use crate::domain::{AuditEvent, Key, KeyHash, KeyId, Timestamp, User, UserId, Username};
use hot::Verification;

/// The schema this binary writes. Bump it when a table or record layout changes, and add a
/// step to [`migrate`].
pub const SCHEMA_VERSION: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const USERNAMES: TableDefinition<&str, &str> = TableDefinition::new("usernames");
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
const KEY_HASHES: TableDefinition<[u8; 32], &str> = TableDefinition::new("key_hashes");
const USER_KEYS: TableDefinition<(&str, u64), &str> = TableDefinition::new("user_keys");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
const BUCKETS: TableDefinition<&str, &[u8]> = TableDefinition::new("buckets");
const SESSIONS: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("sessions");

const SCHEMA_VERSION_KEY: &str = "schema_version";
const NEXT_KEY_SEQ: &str = "next_key_seq";

/// redb's page cache. The working set of a busy server is its hot keys and the upper
/// levels of each B-tree; 64 MiB holds that for millions of keys and keeps RSS modest.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Why the store failed. Each message names the file and says what to do, and carries the
/// underlying error's text itself: no variant hands it on as a `source()` as well, so an
/// error chain printed whole (`{:#}`, as the command line does) says it once.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the data file {0} is held by a running iblueprint server; stop the server first (or use `iblueprint backup` for a copy)"
    )]
    Locked(PathBuf),
    #[error(
        "the data file {path} has schema version {found}, newer than this binary knows ({SCHEMA_VERSION}); upgrade iblueprint"
    )]
    NewerSchema { path: PathBuf, found: u64 },
    #[error("{path} is not an iblueprint data file ({reason})")]
    NotADataFile { path: PathBuf, reason: String },
    #[error("there is no data file at {0}; pass --data FILE or set IBLUEPRINT_DATA")]
    Missing(PathBuf),
    #[error(
        "the data file {0} was not shut down cleanly; start `iblueprint serve` on it once (it recovers on open), then try again"
    )]
    NeedsRecovery(PathBuf),
    #[error(
        "the data file {path} is damaged or truncated ({reason}); restore it from a backup (copy a redb backup into place, or `iblueprint import` one into a new file), or point --data at the right file"
    )]
    Damaged { path: PathBuf, reason: String },
    #[error(
        "the data file {0} is a folder; point --data (or IBLUEPRINT_DATA) at a file, e.g. {file}",
        file = .0.join("iblueprint.redb").display()
    )]
    Folder(PathBuf),
    #[error("cannot open the data file {path}: {error}")]
    Open { path: PathBuf, error: std::io::Error },
    #[error("stored record in table `{table}` is corrupt: {reason}")]
    Corrupt { table: &'static str, reason: String },
    #[error("database error: {0}")]
    Database(redb::Error),
}

impl From<redb::Error> for StoreError {
    fn from(err: redb::Error) -> Self {
        StoreError::Database(err)
    }
}

impl StoreError {
    /// The data file failed underneath us (an I/O error, or redb refusing to continue after
    /// one), as opposed to a bug or a corrupt record: the change is unconfirmed (see the
    /// module docs), and trying again after the disk is fixed and the server restarted may
    /// succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Database(redb::Error::Io(_) | redb::Error::PreviousIo))
    }
}

// redb has a separate error type per operation; all of them mean "the database failed".
macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(err: $t) -> Self {
                StoreError::Database(err.into())
            }
        }
    )*};
}
from_redb!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError, redb::SetDurabilityError);

pub struct Store {
    // Declared first so it is dropped first: its read transaction must end before the
    // database closes, or redb records the file as not shut down cleanly.
    hot: hot::Hot,
    db: Database,
    path: PathBuf,
    /// Held from `begin_write` until the view is refreshed, so views are installed in commit
    /// order: without it, a slower writer could put back a view older than a revocation
    /// another writer has already acknowledged.
    writer: std::sync::Mutex<()>,
}

impl Store {
    /// Opens the data file as its one writer, creating it (0600, and its folder 0700) when
    /// missing, and migrating an older schema. An existing file is vetted read-only first,
    /// so a file we refuse (not ours, newer schema) is left exactly as it was.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        refuse_folder(path)?;
        create_private(path)?;
        Store::open_file(path).map_err(|err| as_damage(path, err))
    }

    fn open_file(path: &Path) -> Result<Store, StoreError> {
        if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
            vet_read_only(path)?;
        }
        let db = builder().create(path).map_err(|err| open_data_error(path, err))?;
        Store::from_database(db, path)
    }

    /// Like [`Store::open`], over a storage backend of the caller's (for fault injection,
    /// see [`fault`]); `path` is the file it stands for, for messages. The file must exist.
    pub fn open_with_backend(path: &Path, backend: impl redb::StorageBackend) -> Result<Store, StoreError> {
        if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
            vet_read_only(path)?;
        }
        let db = builder().create_with_backend(backend).map_err(|err| open_error(path, err))?;
        Store::from_database(db, path)
    }

    fn from_database(db: Database, path: &Path) -> Result<Store, StoreError> {
        let store = Store { hot: hot::Hot::default(), db, path: path.to_owned(), writer: std::sync::Mutex::new(()) };
        store.prepare_schema()?;
        store.hot.refresh(&store.db, Verification::Changes);
        Ok(store)
    }

    /// Like [`Store::open`], but a missing file is an error: for commands that should never
    /// start a new, empty database by accident (a mistyped `--data`).
    pub fn open_existing(path: &Path) -> Result<Store, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.to_owned()));
        }
        Store::open(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A consistent snapshot for reading. Cheap; never blocks on writers.
    pub fn read(&self) -> Result<ReadTxn, StoreError> {
        Ok(ReadTxn { txn: self.db.begin_read()? })
    }

    /// Runs `change` in one write transaction and commits it durably (fsync) when it
    /// returns `Ok`. When `change` fails nothing is written; when the commit itself fails on
    /// the disk, see "I/O errors" above.
    pub fn write<T, E: From<StoreError>>(&self, change: impl FnOnce(&mut WriteTxn) -> Result<T, E>) -> Result<T, E> {
        self.commit(change, Verification::Changes)
    }

    /// The limiter's write-behind, in one transaction committed like [`Store::write`]'s:
    /// bucket `levels` are saved, and `usage` (requests, last use) is added to key records.
    /// That is all it can write, and none of it is anything a verification decides on, so
    /// the verification view is refreshed as after any commit but the
    /// [generation](Store::generation) stays: what callers derived from lookups (the
    /// per-thread memo of verified keys) stays valid, instead of being rebuilt after every
    /// flush, for every key in use. It still shows the usage counters of when it was made:
    /// show them from a fresh read.
    pub fn write_usage<'a>(
        &self,
        levels: impl IntoIterator<Item = (&'a KeyId, &'a Buckets)>,
        usage: impl IntoIterator<Item = (&'a KeyId, u64, Timestamp)>,
    ) -> Result<(), StoreError> {
        let change = |tx: &mut WriteTxn| {
            for (id, buckets) in levels {
                tx.put_buckets(id, buckets)?;
            }
            for (id, requests, last_used) in usage {
                tx.add_usage(id, requests, last_used)?;
            }
            Ok::<_, StoreError>(())
        };
        self.commit(change, Verification::Unchanged)
    }

    fn commit<T, E: From<StoreError>>(
        &self,
        change: impl FnOnce(&mut WriteTxn) -> Result<T, E>,
        verification: Verification,
    ) -> Result<T, E> {
        // redb allows one write transaction at a time anyway, so this lock costs nothing
        // extra; it only extends that exclusion over the view refresh.
        let _writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut txn = self.db.begin_write().map_err(StoreError::from)?;
        txn.set_durability(Durability::Immediate).map_err(StoreError::from)?;
        let mut wtx = WriteTxn { txn };
        let value = change(&mut wtx)?;
        if let Err(err) = wtx.txn.commit() {
            let err = StoreError::from(err);
            if err.is_unavailable() {
                tracing::error!(
                    error = %err,
                    data = %self.path.display(),
                    "committing to the data file failed; the change is unconfirmed, and nothing can be written until the disk is fixed and the server restarted"
                );
            }
            return Err(err.into());
        }
        self.hot.refresh(&self.db, verification);
        Ok(value)
    }

    /// The verification lookup: the key whose token hashes to `hash`, and its owner. Reads
    /// a shared view that every commit refreshes; see `hot`.
    pub fn key_and_owner(&self, hash: &KeyHash) -> Result<Option<(Key, User)>, StoreError> {
        self.hot.key_and_owner(&self.db, hash)
    }

    /// Names the state [`Store::key_and_owner`] answers from, as far as a verification
    /// decides on it; every commit but [`Store::write_usage`]'s changes it, and no other
    /// store or state ever has the same. What a caller derived from lookups made after
    /// reading generation `g` is current for as long as this still returns `g`.
    pub fn generation(&self) -> u64 {
        self.hot.generation()
    }

    /// Makes sure the file carries the current schema and every table exists. A file that
    /// already does is not written to at all, so merely opening a data file (say for a
    /// dry run, or an import that is then refused) leaves it byte-identical.
    fn prepare_schema(&self) -> Result<(), StoreError> {
        let read = self.read()?;
        let tables: Vec<String> = read.txn.list_tables()?.map(|t| t.name().to_owned()).collect();
        let version = if tables.iter().any(|t| t == META.name()) {
            read.txn.open_table(META)?.get(SCHEMA_VERSION_KEY)?.map(|v| v.value())
        } else {
            None
        };
        drop(read);
        let needs_migration = check_schema(&self.path, &tables, version)?;
        let complete = all_table_names().iter().all(|name| tables.iter().any(|t| t == name));
        if version == Some(SCHEMA_VERSION) && complete {
            return Ok(());
        }
        self.write(|tx| {
            if let Some(old) = needs_migration {
                migrate(tx, old)?;
            }
            // Create every table so read transactions never meet a missing one.
            tx.txn.open_table(META)?.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION)?;
            tx.txn.open_table(USERS)?;
            tx.txn.open_table(USERNAMES)?;
            tx.txn.open_table(KEYS)?;
            tx.txn.open_table(KEY_HASHES)?;
            tx.txn.open_table(USER_KEYS)?;
            tx.txn.open_table(AUDIT)?;
            tx.txn.open_table(BUCKETS)?;
            tx.txn.open_table(SESSIONS)?;
            Ok(())
        })
    }
}

/// Every table of the current schema, by name.
fn all_table_names() -> [&'static str; 9] {
    [
        META.name(),
        USERS.name(),
        USERNAMES.name(),
        KEYS.name(),
        KEY_HASHES.name(),
        USER_KEYS.name(),
        AUDIT.name(),
        BUCKETS.name(),
        SESSIONS.name(),
    ]
}

fn builder() -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_concurrency_mode(ConcurrencyMode::SingleWriter).set_cache_size(CACHE_BYTES);
    builder
}

/// Decides from the table names and stored version whether this is our file and whether it
/// needs migrating (`Some(old version)`). A fresh, empty file is ours.
fn check_schema(path: &Path, tables: &[String], version: Option<u64>) -> Result<Option<u64>, StoreError> {
    match version {
        Some(v) if v > SCHEMA_VERSION => Err(StoreError::NewerSchema { path: path.to_owned(), found: v }),
        Some(v) if v < SCHEMA_VERSION => Ok(Some(v)),
        Some(_) => Ok(None),
        None if tables.is_empty() => Ok(None),
        None => Err(StoreError::NotADataFile {
            path: path.to_owned(),
            reason: "a redb file without an iblueprint schema version".into(),
        }),
    }
}

/// Checks an existing file without writing to it. A file that was not shut down cleanly
/// cannot be opened read-only; the writable open repairs it and checks the schema again.
fn vet_read_only(path: &Path) -> Result<(), StoreError> {
    let db = match builder().open_read_only(path) {
        Ok(db) => db,
        Err(DatabaseError::RepairAborted) => return Ok(()),
        Err(err) => return Err(open_data_error(path, err)),
    };
    let read = db.begin_read()?;
    let tables: Vec<String> = read.list_tables()?.map(|t| t.name().to_owned()).collect();
    let version = if tables.iter().any(|t| t == META.name()) {
        read.open_table(META)?.get(SCHEMA_VERSION_KEY)?.map(|v| v.value())
    } else {
        None
    };
    check_schema(path, &tables, version).map(|_| ())
}

/// Brings an older schema up to [`SCHEMA_VERSION`] inside the opening transaction.
/// Version 1 is the first schema, so there is nothing to migrate yet.
fn migrate(_tx: &mut WriteTxn, from: u64) -> Result<(), StoreError> {
    Err(StoreError::Corrupt { table: "meta", reason: format!("unknown old schema version {from}") })
}

/// A private copy of the file at `path`, for the offline readers (`check`, reading a backup
/// to import) that must let redb recover, repair or verify a file without ever writing to
/// the original. Beside it, on a disk that held the file once already (the system's temp
/// folder may be a small tmpfs), or in the temp folder when that folder is not writable.
fn private_copy(path: &Path) -> Result<tempfile::NamedTempFile, StoreError> {
    let failed = |error| StoreError::Open { path: path.to_owned(), error };
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let copy = tempfile::NamedTempFile::new_in(folder).or_else(|_| tempfile::NamedTempFile::new()).map_err(failed)?;
    std::fs::copy(path, copy.path()).map_err(failed)?;
    Ok(copy)
}

/// Runs `read` on a file from outside, which redb may panic on when it is damaged in a way
/// it does not expect (a malformed allocator state, say): `None` then, never a crash. The
/// panic message is kept off the terminal, as the caller reports the damage in its own
/// words. Only the offline commands read such files, one at a time.
fn surviving_panics<T>(read: impl FnOnce() -> T) -> Option<T> {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
    std::panic::set_hook(report);
    outcome.ok()
}

fn open_error(path: &Path, err: DatabaseError) -> StoreError {
    match err {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => StoreError::Locked(path.to_owned()),
        DatabaseError::Storage(redb::StorageError::Io(source)) if source.kind() == std::io::ErrorKind::InvalidData => {
            StoreError::NotADataFile { path: path.to_owned(), reason: source.to_string() }
        }
        DatabaseError::Storage(redb::StorageError::Io(error)) => StoreError::Open { path: path.to_owned(), error },
        DatabaseError::Storage(redb::StorageError::Corrupted(reason)) => {
            StoreError::NotADataFile { path: path.to_owned(), reason }
        }
        DatabaseError::UpgradeRequired(v) => StoreError::NotADataFile {
            path: path.to_owned(),
            reason: format!("written by an older redb file format {v}"),
        },
        other => StoreError::Database(other.into()),
    }
}

/// [`open_error`] for the data file itself: a page redb finds corrupt, or a read past the
/// file's end (a truncated copy), means the file is damaged, and says what to do then.
fn open_data_error(path: &Path, err: DatabaseError) -> StoreError {
    match err {
        DatabaseError::Storage(redb::StorageError::Corrupted(reason)) => {
            StoreError::Damaged { path: path.to_owned(), reason }
        }
        other => as_damage(path, open_error(path, other)),
    }
}

/// An error met while opening the data file (and reading its schema), restated as damage
/// when the file is at fault, as in [`open_data_error`]. Only for opens: after a good open,
/// a failed read more likely means a failing disk, which [`StoreError::is_unavailable`]
/// reports.
fn as_damage(path: &Path, err: StoreError) -> StoreError {
    let reason = match &err {
        StoreError::Database(redb::Error::Corrupted(reason)) => reason.clone(),
        StoreError::Database(redb::Error::Io(error)) | StoreError::Open { error, .. }
            if error.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            "it ends before the data it records".to_owned()
        }
        _ => return err,
    };
    StoreError::Damaged { path: path.to_owned(), reason }
}

/// Creates the data file (mode 0600) and its folder (0700, and any folder above it that is
/// missing too) when they do not exist yet, for redb to initialise: the file holds password
/// and key hashes, which are for its owner alone, and redb would create it readable by
/// everyone (0644 under the usual umask). What the operator made already keeps its mode.
fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let failed = |error| StoreError::Open { path: path.to_owned(), error };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(failed)?;
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        // The usual case (or another process made it a moment ago): it keeps its mode.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(failed(error)),
    }
}

/// A folder where the data file should be is refused up front, before redb's own open
/// turns it into an "Is a directory" that does not say which file or what to do.
fn refuse_folder(path: &Path) -> Result<(), StoreError> {
    if path.is_dir() { Err(StoreError::Folder(path.to_owned())) } else { Ok(()) }
}

fn decode<T: serde::de::DeserializeOwned>(table: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    codec::decode(bytes).map_err(|err| StoreError::Corrupt { table, reason: err.to_string() })
}

/// The reads both kinds of transaction offer. Implemented once, here, over whichever table
/// type the transaction hands out.
pub trait Reads {
    #[doc(hidden)]
    type Table<'t, K: redb::Key + 'static, V: redb::Value + 'static>: ReadableTable<K, V>
    where
        Self: 't;
    #[doc(hidden)]
    fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        def: TableDefinition<K, V>,
    ) -> Result<Self::Table<'_, K, V>, StoreError>;

    fn user(&self, id: &UserId) -> Result<Option<User>, StoreError> {
        let users = self.table(USERS)?;
        let found = users.get(id.as_str())?;
        found.map(|v| decode("users", v.value())).transpose()
    }

    fn user_by_name(&self, name: &Username) -> Result<Option<User>, StoreError> {
        let id = self.table(USERNAMES)?.get(name.as_str())?.map(|v| v.value().to_owned());
        match id.as_deref().and_then(UserId::parse) {
            Some(id) => self.user(&id),
            None => Ok(None),
        }
    }

    /// All users, ordered by id. User counts are small (people, not keys).
    fn users(&self) -> Result<Vec<User>, StoreError> {
        let users = self.table(USERS)?;
        let mut out = Vec::new();
        for entry in users.range::<&str>(..)? {
            let (_, value) = entry?;
            out.push(decode("users", value.value())?);
        }
        Ok(out)
    }

    fn user_count(&self) -> Result<u64, StoreError> {
        Ok(self.table(USERS)?.len()?)
    }

    fn key(&self, id: &KeyId) -> Result<Option<Key>, StoreError> {
        let keys = self.table(KEYS)?;
        let found = keys.get(id.as_str())?;
        found.map(|v| decode("keys", v.value())).transpose()
    }

    /// Up to `limit` of the user's keys, newest first, strictly older than `before_seq`.
    fn user_keys(&self, user: &UserId, before_seq: Option<u64>, limit: usize) -> Result<Vec<Key>, StoreError> {
        let index = self.table(USER_KEYS)?;
        let upper = before_seq.unwrap_or(u64::MAX);
        let mut out = Vec::with_capacity(limit.min(256));
        for entry in index.range((user.as_str(), 0u64)..(user.as_str(), upper))?.rev() {
            if out.len() == limit {
                break;
            }
            let (_, key_id) = entry?;
            let id = KeyId::parse(key_id.value())
                .ok_or_else(|| StoreError::Corrupt { table: "user_keys", reason: "bad key id".into() })?;
            match self.key(&id)? {
                Some(key) => out.push(key),
                None => {
                    return Err(StoreError::Corrupt { table: "user_keys", reason: format!("dangling entry {id}") });
                }
            }
        }
        Ok(out)
    }

    /// Saved token-bucket levels for a key's `limit_id`, if any were ever saved.
    fn buckets(&self, limit_id: &KeyId) -> Result<Option<Buckets>, StoreError> {
        let table = self.table(BUCKETS)?;
        let found = table.get(limit_id.as_str())?;
        found.map(|v| decode("buckets", v.value())).transpose()
    }

    fn session(&self, hash: &[u8; 32]) -> Result<Option<Session>, StoreError> {
        let table = self.table(SESSIONS)?;
        let found = table.get(hash)?;
        found.map(|v| decode("sessions", v.value())).transpose()
    }

    /// The most recent audit events, newest first, optionally only those about one user.
    fn audit_events(&self, about: Option<&UserId>, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        let audit = self.table(AUDIT)?;
        let mut out = Vec::new();
        for entry in audit.range::<u64>(..)?.rev() {
            if out.len() == limit {
                break;
            }
            let (_, value) = entry?;
            let event: AuditEvent = decode("audit", value.value())?;
            if about.is_none_or(|u| event.user_id.as_ref() == Some(u)) {
                out.push(event);
            }
        }
        Ok(out)
    }
}

/// A read-only snapshot.
pub struct ReadTxn {
    txn: ReadTransaction,
}

impl Reads for ReadTxn {
    type Table<'t, K: redb::Key + 'static, V: redb::Value + 'static> = redb::ReadOnlyTable<K, V>;
    fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        def: TableDefinition<K, V>,
    ) -> Result<redb::ReadOnlyTable<K, V>, StoreError> {
        Ok(self.txn.open_table(def)?)
    }
}

/// An open write transaction; see [`Store::write`].
pub struct WriteTxn {
    txn: WriteTransaction,
}

impl Reads for WriteTxn {
    type Table<'t, K: redb::Key + 'static, V: redb::Value + 'static> = redb::Table<'t, K, V>;
    fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
        &self,
        def: TableDefinition<K, V>,
    ) -> Result<redb::Table<'_, K, V>, StoreError> {
        Ok(self.txn.open_table(def)?)
    }
}

impl WriteTxn {
    /// Inserts a new user or replaces an existing one, keeping the username index in step.
    pub fn put_user(&mut self, user: &User) -> Result<(), StoreError> {
        let previous = self.user(&user.id)?;
        let mut names = self.txn.open_table(USERNAMES)?;
        if let Some(old) = previous.filter(|old| old.username != user.username) {
            names.remove(old.username.as_str())?;
        }
        names.insert(user.username.as_str(), user.id.as_str())?;
        self.txn.open_table(USERS)?.insert(user.id.as_str(), codec::encode(user).as_slice())?;
        Ok(())
    }

    /// Stores a new key, giving it the next sequence number (its place in "newest first").
    pub fn insert_key(&mut self, key: &mut Key) -> Result<(), StoreError> {
        key.seq = self.take_key_seq()?;
        self.put_key_with_indexes(key)
    }

    /// Writes a key record and both of its index entries, keeping its sequence number.
    fn put_key_with_indexes(&mut self, key: &Key) -> Result<(), StoreError> {
        self.txn.open_table(KEY_HASHES)?.insert(&key.hash.0, key.id.as_str())?;
        self.txn.open_table(USER_KEYS)?.insert((key.user_id.as_str(), key.seq), key.id.as_str())?;
        self.update_key(key)
    }

    /// The next free key sequence number.
    pub fn take_key_seq(&mut self) -> Result<u64, StoreError> {
        let mut meta = self.txn.open_table(META)?;
        let seq = meta.get(NEXT_KEY_SEQ)?.map_or(1, |v| v.value());
        meta.insert(NEXT_KEY_SEQ, seq + 1)?;
        Ok(seq)
    }

    /// Replaces a key's record. Its id, owner, hash and sequence never change.
    pub fn update_key(&mut self, key: &Key) -> Result<(), StoreError> {
        self.txn.open_table(KEYS)?.insert(key.id.as_str(), codec::encode(key).as_slice())?;
        Ok(())
    }

    pub fn put_session(&mut self, hash: &[u8; 32], session: &Session) -> Result<(), StoreError> {
        self.txn.open_table(SESSIONS)?.insert(hash, codec::encode(session).as_slice())?;
        Ok(())
    }

    pub fn delete_session(&mut self, hash: &[u8; 32]) -> Result<(), StoreError> {
        self.txn.open_table(SESSIONS)?.remove(hash)?;
        Ok(())
    }

    /// Drops sessions that have expired, and every session of `user` when one is given.
    pub fn prune_sessions(&mut self, now: Timestamp, user: Option<&UserId>) -> Result<usize, StoreError> {
        let mut table = self.txn.open_table(SESSIONS)?;
        let before = table.len()?;
        table.retain(|_, value| match codec::decode::<Session>(value) {
            Ok(session) => session.is_live(now) && user.is_none_or(|u| &session.user_id != u),
            Err(_) => false,
        })?;
        Ok(usize::try_from(before - table.len()?).unwrap_or(0))
    }

    pub fn put_buckets(&mut self, limit_id: &KeyId, buckets: &Buckets) -> Result<(), StoreError> {
        self.txn.open_table(BUCKETS)?.insert(limit_id.as_str(), codec::encode(buckets).as_slice())?;
        Ok(())
    }

    /// Adds `requests` to a key's request count and moves `last_used_at` forward. A key
    /// that no longer exists is skipped: usage of a vanished key has nowhere to go.
    pub fn add_usage(&mut self, key_id: &KeyId, requests: u64, last_used: Timestamp) -> Result<(), StoreError> {
        if let Some(mut key) = self.key(key_id)? {
            key.request_count = key.request_count.saturating_add(requests);
            key.last_used_at = key.last_used_at.max(Some(last_used));
            self.update_key(&key)?;
        }
        Ok(())
    }

    /// Appends an event; it commits or vanishes with the change it records. An event that
    /// cannot be written fails the transaction, so the change is not made either.
    pub fn append_audit(&mut self, event: &AuditEvent) -> Result<(), StoreError> {
        let mut audit = self.txn.open_table(AUDIT)?;
        let next = match audit.last()? {
            None => 1,
            Some((last, _)) => last.value().checked_add(1).ok_or(StoreError::Corrupt {
                table: "audit",
                reason: "the event sequence is at its maximum; no event can follow".into(),
            })?,
        };
        audit.insert(next, codec::encode(event).as_slice())?;
        Ok(())
    }

    /// Puts the audit trail's last sequence number at `seq`, for tests of what happens when
    /// no event can be appended.
    #[cfg(test)]
    pub(crate) fn set_last_audit_seq(&mut self, seq: u64, event: &AuditEvent) -> Result<(), StoreError> {
        self.txn.open_table(AUDIT)?.insert(seq, codec::encode(event).as_slice())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("test.redb");
        (dir, path)
    }

    #[test]
    fn a_new_file_and_its_folder_are_created_with_the_current_schema() {
        let (_dir, path) = temp();
        let store = Store::open(&path).unwrap();
        let read = store.read().unwrap();
        let version = read.table(META).unwrap().get(SCHEMA_VERSION_KEY).unwrap().map(|v| v.value());
        assert_eq!(version, Some(SCHEMA_VERSION));
        assert_eq!(read.user_count().unwrap(), 0);
    }

    #[test]
    fn a_newer_schema_is_refused_naming_both_versions() {
        let (_dir, path) = temp();
        drop(Store::open(&path).unwrap());
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META).unwrap().insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION + 1).unwrap();
            txn.commit().unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = Store::open(&path).err().expect("newer schema must be refused");
        let message = err.to_string();
        assert!(message.contains(&format!("schema version {}", SCHEMA_VERSION + 1)), "{message}");
        assert!(message.contains("upgrade iblueprint"), "{message}");
        assert!(std::fs::read(&path).unwrap() == before, "a refused open must not touch the file");
    }

    #[test]
    fn a_file_that_is_not_redb_is_refused_and_left_byte_identical() {
        let (_dir, path) = temp();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let garbage: Vec<u8> = (0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        std::fs::write(&path, &garbage).unwrap();
        let outcome = Store::open(&path);
        assert!(matches!(outcome, Err(StoreError::NotADataFile { .. })), "{:?}", outcome.err());
        assert!(std::fs::read(&path).unwrap() == garbage, "a refused file must be left byte-identical");
    }

    #[test]
    fn a_redb_file_of_another_program_is_refused() {
        let (_dir, path) = temp();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        {
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(TableDefinition::<u64, u64>::new("something_else")).unwrap().insert(1, 2).unwrap();
            txn.commit().unwrap();
        }
        assert!(matches!(Store::open(&path), Err(StoreError::NotADataFile { .. })));
    }

    #[test]
    fn a_second_writer_is_refused_with_a_message_that_says_what_to_do() {
        let (_dir, path) = temp();
        let _first = Store::open(&path).unwrap();
        let err = Store::open(&path).err().expect("second writer must be refused");
        assert!(matches!(err, StoreError::Locked(_)));
        assert!(err.to_string().contains("stop the server first"));
    }

    #[test]
    fn a_missing_file_is_not_created_by_open_existing() {
        let (_dir, path) = temp();
        assert!(matches!(Store::open_existing(&path), Err(StoreError::Missing(_))));
        assert!(!path.exists());
    }
}
