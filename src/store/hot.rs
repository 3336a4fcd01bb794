//! The verification lookup, kept cheap.
//!
//! In `SingleWriter` mode every redb read transaction takes and releases file locks (four
//! `fcntl` calls, about 2 µs here), and opening a table by name allocates. Verification
//! runs on every request, so the store keeps one shared read view with the three tables it
//! needs already open, and replaces it inside [`Store::write`](super::Store::write) right
//! after each commit, under the same lock as the write. This process is the only writer,
//! so views are installed in commit order and the view is never older than the last commit
//! that returned: a revocation is visible to every worker before its response is sent. If
//! a refresh ever fails, the view is dropped and lookups fall back to a fresh transaction
//! each, so a stale view is never served.
//!
//! Every refresh gives the store a new [`generation`](Hot::generation), unique in the
//! process (across stores too), except a successful refresh after
//! [`Store::write_usage`](super::Store::write_usage), whose commit changed nothing a
//! verification decides on. Whatever a caller decides from lookups (the service memoises
//! verified keys per thread) stays valid exactly while the generation it read *before*
//! those lookups is still current.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use redb::{Database, ReadOnlyTable, ReadTransaction, ReadableDatabase};

use super::{KEY_HASHES, KEYS, StoreError, USERS, decode};
use crate::domain::{Key, KeyHash, User};

/// Whether a commit changed anything a verification decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verification {
    Changes,
    /// Bucket levels and usage counters only: see [`Store::write_usage`](super::Store::write_usage).
    Unchanged,
}

/// The source of generations, shared by every store in the process so that a generation
/// names one view of one store.
static GENERATIONS: AtomicU64 = AtomicU64::new(1);

pub(super) struct HotView {
    key_hashes: ReadOnlyTable<[u8; 32], &'static str>,
    keys: ReadOnlyTable<&'static str, &'static [u8]>,
    users: ReadOnlyTable<&'static str, &'static [u8]>,
    // Last, so the tables are dropped before the transaction they belong to.
    _txn: ReadTransaction,
}

impl HotView {
    fn open(db: &Database) -> Result<HotView, StoreError> {
        let txn = db.begin_read()?;
        Ok(HotView {
            key_hashes: txn.open_table(KEY_HASHES)?,
            keys: txn.open_table(KEYS)?,
            users: txn.open_table(USERS)?,
            _txn: txn,
        })
    }

    /// The key whose token hashes to `hash`, and its owner, read from the tables.
    fn key_and_owner(&self, hash: &KeyHash) -> Result<Option<(Key, User)>, StoreError> {
        let Some(id) = self.key_hashes.get(&hash.0)? else { return Ok(None) };
        let id = id.value();
        let Some(record) = self.keys.get(id)? else {
            return Err(StoreError::Corrupt { table: "key_hashes", reason: format!("dangling index entry for {id}") });
        };
        let key: Key = decode("keys", record.value())?;
        // Index and record are written together; compare anyway (constant time) so a
        // damaged index can never let one key stand in for another.
        if blake3::Hash::from(key.hash.0) != blake3::Hash::from(hash.0) {
            return Err(StoreError::Corrupt { table: "key_hashes", reason: format!("index entry for {id} disagrees") });
        }
        let Some(owner) = self.users.get(key.user_id.as_str())? else {
            return Err(StoreError::Corrupt { table: "users", reason: format!("owner of {} missing", key.id) });
        };
        let user: User = decode("users", owner.value())?;
        Ok(Some((key, user)))
    }
}

/// The current view (none after a failed refresh) and its generation.
pub(super) struct Hot {
    view: RwLock<Option<Arc<HotView>>>,
    generation: AtomicU64,
}

impl Default for Hot {
    fn default() -> Self {
        Hot { view: RwLock::new(None), generation: AtomicU64::new(GENERATIONS.fetch_add(1, Ordering::Relaxed)) }
    }
}

impl Hot {
    pub(super) fn refresh(&self, db: &Database, verification: Verification) {
        let view = match HotView::open(db) {
            Ok(view) => Some(Arc::new(view)),
            Err(err) => {
                tracing::error!(error = %err, "refreshing the verification view failed; using fresh transactions");
                None
            }
        };
        let failed = view.is_none();
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = view;
        if verification == Verification::Changes || failed {
            // After the view is in place: whoever reads this generation then looks up in a
            // view at least this new.
            self.generation.store(GENERATIONS.fetch_add(1, Ordering::Relaxed), Ordering::Release);
        }
    }

    /// The generation of the current view. Read it before looking up.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(super) fn key_and_owner(&self, db: &Database, hash: &KeyHash) -> Result<Option<(Key, User)>, StoreError> {
        let view = self.view.read().unwrap_or_else(|p| p.into_inner()).clone();
        match view {
            Some(view) => view.key_and_owner(hash),
            None => HotView::open(db)?.key_and_owner(hash),
        }
    }
}
