//! Whole-database access for `backup`, the JSON-lines export and `import`.
//!
//! A backup is taken inside one read transaction, so it is a consistent snapshot even while
//! the server keeps writing: redb readers see the state of one commit. Sessions are left
//! out of every backup and export: they are per-browser and short-lived, and a restored
//! server should not honour cookies issued to the old one.

use std::path::Path;

use redb::{
    ConcurrencyMode, Database, DatabaseError, Durability, ReadOnlyDatabase, ReadableDatabase, ReadableTable,
    TableDefinition,
};

use super::{
    AUDIT, BUCKETS, KEY_HASHES, KEYS, META, NEXT_KEY_SEQ, ReadTxn, Reads, SCHEMA_VERSION, SCHEMA_VERSION_KEY, SESSIONS,
    StoreError, USER_KEYS, USERNAMES, USERS, WriteTxn, as_damage, builder, check_schema, codec, decode,
    open_data_error, open_error, refuse_folder,
};
use crate::domain::ratelimit::Buckets;
use crate::domain::{AuditEvent, Key, KeyId, Timestamp, User};

/// One stored record, as backups and exports carry them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    User(User),
    Key(Key),
    Buckets { limit_id: KeyId, buckets: Buckets },
    Audit { seq: u64, event: AuditEvent },
}

/// What a snapshot holds, for reports and for checking a copy against its source.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub users: u64,
    pub keys: u64,
    /// Keys whose revocation time has passed when counted.
    pub revoked: u64,
    pub buckets: u64,
    pub audit: u64,
}

/// "2 users, 5 keys (1 revoked), 3 rate-limit states and 9 audit events": how reports and
/// error messages say what a file holds.
impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Counts { users, keys, revoked, buckets, audit } = self;
        write!(
            f,
            "{users} users, {keys} keys ({revoked} revoked), {buckets} rate-limit states and {audit} audit events"
        )
    }
}

impl Counts {
    pub fn add(&mut self, record: &Record, now: Timestamp) {
        match record {
            Record::User(_) => self.users += 1,
            Record::Key(key) => {
                self.keys += 1;
                if key.revoked_at.is_some_and(|at| at <= now) {
                    self.revoked += 1;
                }
            }
            Record::Buckets { .. } => self.buckets += 1,
            Record::Audit { .. } => self.audit += 1,
        }
    }
}

/// A data file opened read-only: beside a running server (which opened it in
/// `SingleWriter` mode), or a backup file being checked or imported.
pub struct ReadOnlyStore {
    db: ReadOnlyDatabase,
}

impl ReadOnlyStore {
    /// Opens the file beside a running server, if there is one (for `backup`).
    pub fn open(path: &Path) -> Result<ReadOnlyStore, StoreError> {
        ReadOnlyStore::open_in(path, builder())
    }

    /// Opens the file for a command that needs the server stopped even when it only reads
    /// (`import`, dry runs and merges that add nothing included), without writing to it: a
    /// read-only handle in exclusive-writer mode is refused ([`StoreError::Locked`]) while
    /// a server holds the file, and keeps one from starting while it lives.
    pub fn open_unheld(path: &Path) -> Result<ReadOnlyStore, StoreError> {
        let mut exclusive = Database::builder();
        exclusive.set_concurrency_mode(ConcurrencyMode::ExclusiveWriter);
        match ReadOnlyStore::open_in(path, exclusive) {
            // This mode measures the file against its header and takes a truncated one for
            // one that needs recovery; the shared reader does not, and finds it truncated
            // when it reads. Ask it which, so a damaged file is not sent to `serve`.
            Err(StoreError::NeedsRecovery(_)) => {
                ReadOnlyStore::open(path).and(Err(StoreError::NeedsRecovery(path.to_owned())))
            }
            opened => opened,
        }
    }

    fn open_in(path: &Path, builder: redb::Builder) -> Result<ReadOnlyStore, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing(path.to_owned()));
        }
        refuse_folder(path)?;
        ReadOnlyStore::open_file(path, builder).map_err(|err| as_damage(path, err))
    }

    fn open_file(path: &Path, builder: redb::Builder) -> Result<ReadOnlyStore, StoreError> {
        let db = builder.open_read_only(path).map_err(|err| match err {
            DatabaseError::RepairAborted => StoreError::NeedsRecovery(path.to_owned()),
            other => open_data_error(path, other),
        })?;
        let store = ReadOnlyStore { db };
        let read = store.read()?;
        let tables: Vec<String> = read.txn.list_tables()?.map(|t| redb::TableHandle::name(&t).to_owned()).collect();
        let version = read.meta(SCHEMA_VERSION_KEY)?;
        if check_schema(path, &tables, version)?.is_some() {
            // Older schemas are migrated by a writable open; a read-only reader cannot.
            return Err(StoreError::NotADataFile {
                path: path.to_owned(),
                reason: format!(
                    "schema version {} needs migrating; open it with `iblueprint serve` once",
                    version.unwrap_or(0)
                ),
            });
        }
        Ok(store)
    }

    pub fn read(&self) -> Result<ReadTxn, StoreError> {
        Ok(ReadTxn { txn: self.db.begin_read()? })
    }
}

impl ReadTxn {
    pub(super) fn meta(&self, name: &str) -> Result<Option<u64>, StoreError> {
        match self.txn.open_table(META) {
            Ok(table) => Ok(table.get(name)?.map(|v| v.value())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Calls `visit` with every record, users first, then keys, buckets and audit events.
    /// Each record is decoded (and so validated) on the way; a bad one stops the walk with
    /// an error naming its table and key.
    pub fn for_each_record(&self, mut visit: impl FnMut(Record) -> Result<(), StoreError>) -> Result<(), StoreError> {
        for entry in self.table(USERS)?.range::<&str>(..)? {
            let (id, value) = entry?;
            visit(Record::User(decode_at("users", id.value(), value.value())?))?;
        }
        for entry in self.table(KEYS)?.range::<&str>(..)? {
            let (id, value) = entry?;
            visit(Record::Key(decode_at("keys", id.value(), value.value())?))?;
        }
        for entry in self.table(BUCKETS)?.range::<&str>(..)? {
            let (id, value) = entry?;
            let limit_id = KeyId::parse(id.value()).ok_or_else(|| StoreError::Corrupt {
                table: "buckets",
                reason: format!("bad key id {:?}", id.value()),
            })?;
            visit(Record::Buckets { limit_id, buckets: decode_at("buckets", id.value(), value.value())? })?;
        }
        for entry in self.table(AUDIT)?.range::<u64>(..)? {
            let (seq, value) = entry?;
            let seq = seq.value();
            visit(Record::Audit { seq, event: decode_at("audit", &seq.to_string(), value.value())? })?;
        }
        Ok(())
    }

    pub fn counts(&self, now: Timestamp) -> Result<Counts, StoreError> {
        let mut counts = Counts::default();
        self.for_each_record(|record| {
            counts.add(&record, now);
            Ok(())
        })?;
        Ok(counts)
    }

    /// Writes this snapshot as a new data file at `dest` (which must not exist yet),
    /// table by table, committed with fsync. Sessions are not copied.
    pub fn copy_to(&self, dest: &Path) -> Result<(), StoreError> {
        let db = Database::builder().create(dest).map_err(|err| open_error(dest, err))?;
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        copy_table(self, &txn, META)?;
        copy_table(self, &txn, USERS)?;
        copy_table(self, &txn, USERNAMES)?;
        copy_table(self, &txn, KEYS)?;
        copy_table(self, &txn, KEY_HASHES)?;
        copy_table(self, &txn, USER_KEYS)?;
        copy_table(self, &txn, AUDIT)?;
        copy_table(self, &txn, BUCKETS)?;
        txn.open_table(SESSIONS)?;
        txn.commit()?;
        Ok(())
    }
}

fn copy_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    src: &ReadTxn,
    dest: &redb::WriteTransaction,
    def: TableDefinition<K, V>,
) -> Result<(), StoreError> {
    let mut out = dest.open_table(def)?;
    for entry in src.table(def)?.range::<K::SelfType<'_>>(..)? {
        let (key, value) = entry?;
        out.insert(key.value(), value.value())?;
    }
    Ok(())
}

fn decode_at<T: serde::de::DeserializeOwned>(table: &'static str, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    decode(table, bytes).map_err(|err| match err {
        StoreError::Corrupt { table, reason } => {
            StoreError::Corrupt { table, reason: format!("record {key}: {reason}") }
        }
        other => other,
    })
}

/// Reads every record of a redb file from elsewhere (a backup being imported). Such a file
/// may be damaged in ways redb does not expect, so it is copied aside first, opened with
/// redb's full integrity check (every page checksum), migrated if its schema is older, and
/// read under a panic guard: a hostile file yields an error, never a crash, and the
/// original is never written to.
pub fn read_foreign(path: &Path) -> Result<Vec<Record>, StoreError> {
    let damaged = |reason: String| StoreError::NotADataFile { path: path.to_owned(), reason };
    let copy = super::private_copy(path)?;
    let outcome = super::surviving_panics(|| -> Result<Vec<Record>, StoreError> {
        let mut db = Database::builder()
            .set_check_integrity_on_open(true)
            .open(copy.path())
            .map_err(|err| open_error(path, err))?;
        if !db.check_integrity().map_err(|err| open_error(path, err))? {
            return Err(damaged("it fails redb's integrity check".into()));
        }
        drop(db);
        let store = super::Store::open(copy.path()).map_err(|err| match err {
            StoreError::NewerSchema { found, .. } => StoreError::NewerSchema { path: path.to_owned(), found },
            StoreError::NotADataFile { reason, .. } => damaged(reason),
            other => other,
        })?;
        let mut records = Vec::new();
        store.read()?.for_each_record(|record| {
            records.push(record);
            Ok(())
        })?;
        Ok(records)
    });
    outcome.unwrap_or_else(|| Err(damaged("redb could not make sense of it".into())))
}

/// Re-opens a freshly written copy, runs redb's integrity check (every page checksum), and
/// counts its records by decoding each one.
pub fn verify_copy(path: &Path, now: Timestamp) -> Result<Counts, StoreError> {
    let mut db = Database::builder().open(path).map_err(|err| open_error(path, err))?;
    if !db.check_integrity().map_err(|err| open_error(path, err))? {
        return Err(StoreError::Corrupt { table: "(file)", reason: "the copy failed redb's integrity check".into() });
    }
    let read = ReadTxn { txn: db.begin_read()? };
    if read.meta(SCHEMA_VERSION_KEY)? != Some(SCHEMA_VERSION) {
        return Err(StoreError::Corrupt { table: "meta", reason: "the copy has no schema version".into() });
    }
    read.counts(now)
}

impl WriteTxn {
    /// Writes one record as it was, with its indexes: for restoring into a data file.
    /// A key keeps its sequence number, so "newest first" survives the round trip.
    pub fn restore(&mut self, record: &Record) -> Result<(), StoreError> {
        match record {
            Record::User(user) => self.put_user(user),
            Record::Key(key) => {
                let mut meta = self.txn.open_table(META)?;
                let next = meta.get(NEXT_KEY_SEQ)?.map_or(1, |v| v.value());
                if key.seq >= next {
                    meta.insert(NEXT_KEY_SEQ, key.seq.saturating_add(1))?;
                }
                drop(meta);
                self.put_key_with_indexes(key)
            }
            Record::Buckets { limit_id, buckets } => self.put_buckets(limit_id, buckets),
            Record::Audit { seq, event } => {
                self.txn.open_table(AUDIT)?.insert(*seq, codec::encode(event).as_slice())?;
                Ok(())
            }
        }
    }
}

/// What the importer needs to know about records already in a data file.
pub fn existing_records(read: &ReadTxn) -> Result<Vec<Record>, StoreError> {
    let mut out = Vec::new();
    read.for_each_record(|record| {
        if !matches!(record, Record::Audit { .. }) {
            out.push(record);
        }
        Ok(())
    })?;
    Ok(out)
}
