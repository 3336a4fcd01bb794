//! The verification lookup, kept cheap.
//!
//! In `SingleWriter` mode every redb read transaction takes and releases file locks (four
//! `fcntl` calls, about 2 µs here), and opening a table by name allocates. Verification
//! runs on every request, so the store keeps one shared read view with the three tables it
//! needs already open, and replaces it inside [`Store::write`](super::Store::write) right
//! after each commit, under the same lock as the write. This process is the only writer,
//! so views are installed in commit order and the view is never older than the last commit
//! that returned: a revocation is visible to every worker before its response is sent. If a refresh ever fails, the view is dropped and lookups fall back to a fresh
//! transaction each, so a stale view is never served.
//!
//! Each view also memoises the decoded records of the keys verified through it. The cache
//! lives and dies with its view, so it can never outlive a commit: no invalidation logic,
//! and a revoked key cannot be served from it. Only keys that were found are cached (a
//! flood of unknown tokens cannot fill it), and it stops growing at [`CACHE_LIMIT`].

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, RwLock};

use redb::{Database, ReadOnlyTable, ReadTransaction, ReadableDatabase};

use super::{KEY_HASHES, KEYS, StoreError, USERS, decode};
use crate::domain::{Key, KeyHash, User};

/// Decoded records of verified keys per view, at most this many.
const CACHE_LIMIT: usize = 100_000;
const CACHE_SHARDS: usize = 16;

/// A verified key and its owner, shared by reference so a cache hit copies nothing.
pub type KeyAndOwner = (Arc<Key>, Arc<User>);

/// Token hashes are uniformly random already: their first eight bytes are the hash.
#[derive(Default)]
struct FirstBytes(u64);

impl Hasher for FirstBytes {
    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(word);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Cache = HashMap<[u8; 32], KeyAndOwner, BuildHasherDefault<FirstBytes>>;

pub(super) struct HotView {
    cache: [Mutex<Cache>; CACHE_SHARDS],
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
            cache: std::array::from_fn(|_| Mutex::new(Cache::default())),
            key_hashes: txn.open_table(KEY_HASHES)?,
            keys: txn.open_table(KEYS)?,
            users: txn.open_table(USERS)?,
            _txn: txn,
        })
    }

    fn key_and_owner(&self, hash: &KeyHash) -> Result<Option<KeyAndOwner>, StoreError> {
        let shard = &self.cache[usize::from(hash.0[0]) % CACHE_SHARDS];
        if let Some(hit) = shard.lock().unwrap_or_else(|p| p.into_inner()).get(&hash.0) {
            return Ok(Some(hit.clone()));
        }
        let Some((key, user)) = self.lookup(hash)? else { return Ok(None) };
        let found = (Arc::new(key), Arc::new(user));
        let mut cache = shard.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() < CACHE_LIMIT / CACHE_SHARDS {
            cache.insert(hash.0, found.clone());
        }
        Ok(Some(found))
    }

    /// The key whose token hashes to `hash`, and its owner, read from the tables.
    fn lookup(&self, hash: &KeyHash) -> Result<Option<(Key, User)>, StoreError> {
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

/// The current view, or none after a failed refresh.
#[derive(Default)]
pub(super) struct Hot(RwLock<Option<Arc<HotView>>>);

impl Hot {
    pub(super) fn refresh(&self, db: &Database) {
        let view = match HotView::open(db) {
            Ok(view) => Some(Arc::new(view)),
            Err(err) => {
                tracing::error!(error = %err, "refreshing the verification view failed; using fresh transactions");
                None
            }
        };
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = view;
    }

    pub(super) fn key_and_owner(&self, db: &Database, hash: &KeyHash) -> Result<Option<KeyAndOwner>, StoreError> {
        let view = self.0.read().unwrap_or_else(|p| p.into_inner()).clone();
        match view {
            Some(view) => view.key_and_owner(hash),
            None => HotView::open(db)?.key_and_owner(hash),
        }
    }
}
