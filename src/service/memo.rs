//! Each worker thread's memo of the keys it verified, by token hash: the decoded key and
//! owner, copies of what a verification reads from them, and the handles of the key's
//! rate-limit and usage slots.
//!
//! Why per thread: on a busy server every request verifies a key, and anything that all
//! workers write (a lock, a reference count, a shared map) moves its cache line between
//! cores on every request, which on a 2-core machine cost more than the verification
//! itself. A memo that only its own thread touches costs a hash lookup.
//!
//! Why it is never stale: an entry is used only while the store's
//! [`generation`](crate::store::Store::generation) is the one read before the entry's
//! lookup. Every commit that changes what a verification decides on (a revocation, a
//! disabled user, a changed limit: every commit but the limiter's write-behind of levels and
//! usage, [`Store::write_usage`](crate::store::Store::write_usage)) changes the generation
//! before it returns, so the next verification on every thread drops its whole memo and
//! looks up afresh. The rate-limit slot handles are safe to keep across a flush too: the
//! limiter redirects a handle whose slot it evicted (see [`crate::limiter`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::Identity;
use super::prefetch::Prefetch;
use crate::domain::{Access, Key, KeyHash, RateLimit, User};
use crate::limiter::{LimitSlot, UsageSlot};

/// Keys remembered per thread at most.
const MEMO_LIMIT: usize = 50_000;

/// A verified key as its thread remembers it.
///
/// Besides the records, it holds copies of what every verification reads from them (the
/// key's access and limits, whether the owner is disabled, the identity forward-auth answers
/// with), next to the lookup that found them. On a busy server a key's records leave the
/// CPU caches between two of its requests (the network stack and the other keys' requests
/// pass through in between), so each record read on the way was a cache miss, and together
/// they cost more than all the instructions of a verification. The copies are made from the
/// records when the entry is, so they are exactly as current.
pub(super) struct Entry {
    pub key: Arc<Key>,
    pub user: Arc<User>,
    pub access: Access,
    pub owner_disabled: bool,
    pub identity: Identity,
    /// The key's limits and the slot of their buckets; `None` for a key without limits.
    pub limit: Option<(RateLimit, Arc<LimitSlot>)>,
    pub usage: Arc<UsageSlot>,
}

impl Entry {
    /// `limit_slot`: the slot of `key`'s limits, `None` for a key without any.
    pub(super) fn new(key: Key, user: User, limit_slot: Option<Arc<LimitSlot>>, usage: Arc<UsageSlot>) -> Self {
        Entry {
            access: key.access(),
            owner_disabled: user.is_disabled(),
            identity: Identity::new(&key, &user),
            limit: limit_slot.map(|slot| (key.rate_limit, slot)),
            key: Arc::new(key),
            user: Arc::new(user),
            usage,
        }
    }

    /// Starts fetching what the rest of a verification touches: the limit and usage slots
    /// and the identity text (whose reference count, 16 bytes before it, is usually on the
    /// same line). On a busy server each is a cache miss (see above), and the slots come
    /// from the other core as often as not. Asked for one by one, by the lock on each slot
    /// and the clone of the identity, they would arrive one after the other; asked for
    /// here, together, their waits overlap.
    fn prefetch(&self, prefetch: Prefetch) {
        if let Some((_, slot)) = &self.limit {
            prefetch.line(Arc::as_ptr(slot));
        }
        prefetch.line(Arc::as_ptr(&self.usage));
        prefetch.line(Arc::as_ptr(&self.identity.text));
    }
}

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

pub(super) struct Memo {
    generation: u64,
    entries: HashMap<[u8; 32], Entry, BuildHasherDefault<FirstBytes>>,
    /// What this thread's CPU can prefetch, asked once.
    prefetch: Prefetch,
}

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::new(Memo {
        generation: 0,
        entries: HashMap::default(),
        prefetch: Prefetch::detect(),
    });
}

impl Memo {
    /// Runs `f` with this thread's memo, emptied first unless it is of `generation`.
    pub(super) fn with<T>(generation: u64, f: impl FnOnce(&mut Memo) -> T) -> T {
        MEMO.with_borrow_mut(|memo| {
            if memo.generation != generation {
                memo.entries.clear();
                memo.generation = generation;
            }
            f(memo)
        })
    }

    /// The entry of `hash`, with what a verification reads next on its way
    /// ([`Entry::prefetch`]).
    pub(super) fn get_mut(&mut self, hash: &KeyHash) -> Option<&mut Entry> {
        let prefetch = self.prefetch;
        let entry = self.entries.get_mut(&hash.0)?;
        entry.prefetch(prefetch);
        Some(entry)
    }

    /// Remembers `entry` and hands it back to use. A full memo starts over: memory stays
    /// bounded, and a thread with more keys in use than that pays a lookup now and then.
    pub(super) fn remember(&mut self, hash: KeyHash, entry: Entry) -> &mut Entry {
        if self.entries.len() >= MEMO_LIMIT {
            self.entries.clear();
        }
        self.entries.entry(hash.0).insert_entry(entry).into_mut()
    }
}
