//! Per-key rate limiting and usage counting in memory, written behind to the store.
//!
//! # Exactness
//! Each limit (a key's `limit_id`, shared with its rotation successor) has one live
//! [`LimitSlot`], and every decision for it is made under that slot's mutex, so however
//! many workers verify the same key at once, admissions never exceed the bucket. Callers
//! may keep a slot's handle (the service's per-thread memo does, so the hot path does no
//! map lookup at all); a slot that the flush evicts is marked under its lock, and a holder
//! that finds the mark fetches the live slot instead, so a decision is never made on a
//! copy that the flush no longer sees.
//!
//! # Memory
//! A limit's buckets are loaded from the store the first time one of its keys is used after
//! a start, so memory follows the keys in use, not the keys that exist; start-up reads
//! nothing. Clean slots idle for [`IDLE_EVICT_MS`] are dropped at the next flush, and a
//! key's usage slot when a whole interval passed without a use.
//!
//! # Durability
//! Levels and usage (`request_count`, `last_used_at`) are written in one store transaction
//! per flush interval, and once more at clean shutdown. What a crash can lose is the
//! consumption of at most one interval: after a SIGKILL a key may admit up to one interval's
//! worth of requests again, and `request_count` may be short by as many. A clean shutdown
//! loses nothing. A failed flush keeps everything in memory and is retried next interval.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::domain::ratelimit::{Buckets, Decision};
use crate::domain::{Key, KeyId, RateLimit, Timestamp};
use crate::metrics::Metrics;
use crate::store::{Reads, Store, StoreError};

/// Enough shards that 2–64 workers rarely meet on one lock.
const SHARDS: usize = 64;
/// Clean bucket entries untouched this long are evicted (they reload from the store).
pub const IDLE_EVICT_MS: u64 = 15 * 60 * 1000;

/// One limit's buckets in memory. Hold on to it with [`Limiter::take`].
///
/// Aligned to, and no bigger than, one cache line. Every request of a limited key locks the
/// slot, reads and writes all of it, and was usually preceded by requests for other keys
/// (and, as often as not, by this key's last request on another core): the slot arrives
/// from another core or from memory, one line at a time, and the lock makes the lines wait
/// for each other. Unaligned, its 72 bytes spanned two or three lines.
#[repr(align(64))]
pub struct LimitSlot(Mutex<BucketEntry>);

struct BucketEntry {
    buckets: Buckets,
    /// The last use, in whole seconds ([`whole_seconds`]): idle eviction needs no finer,
    /// and this keeps the slot within one cache line.
    touched_s: u32,
    dirty: bool,
    /// Dropped from the limiter by a flush: decide on the live slot instead.
    evicted: bool,
}

/// One key's uses since the last flush. Hold on to it with [`Limiter::count_use`].
/// On a cache line of its own, for the reason [`LimitSlot`] is.
#[repr(align(64))]
pub struct UsageSlot(Mutex<UsageEntry>);

// Linux's `Mutex` is a 4-byte futex and a poison flag; elsewhere the slots may be larger,
// which costs speed only.
#[cfg(target_os = "linux")]
const _: () = assert!(size_of::<LimitSlot>() == 64 && size_of::<UsageSlot>() == 64);

/// `now_ms` in whole seconds, modulo 2³² (136 years): only differences of these are used,
/// and `wrapping_sub` keeps those right across the wrap. Both ends are rounded down, so an
/// idle time can read up to a second longer than it was: a clean slot may be evicted up to
/// a second early, which costs one reload from the store.
fn whole_seconds(now_ms: u64) -> u32 {
    (now_ms / 1000) as u32
}

#[derive(Default)]
struct UsageEntry {
    usage: Usage,
    evicted: bool,
}

#[derive(Default, Clone, Copy)]
struct Usage {
    requests: u64,
    last_used_ms: u64,
}

/// A poisoned slot is safe to keep using: its updates are single assignments, so a panic
/// cannot leave one half-done.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The hasher of the shard maps. Key ids are drawn from the CSPRNG by us, so nobody can
/// pick ids that collide, and SipHash's flooding resistance buys nothing here.
type Hasher = foldhash::fast::RandomState;
type Map<V> = HashMap<KeyId, V, Hasher>;

/// A map split into independently locked shards.
struct Sharded<V> {
    hasher: Hasher,
    shards: Box<[Mutex<Map<V>>]>,
}

impl<V> Sharded<V> {
    fn new() -> Self {
        Sharded { hasher: Hasher::default(), shards: (0..SHARDS).map(|_| Mutex::new(Map::default())).collect() }
    }

    fn shard(&self, id: &KeyId) -> MutexGuard<'_, Map<V>> {
        let index = (self.hasher.hash_one(id) as usize) % self.shards.len();
        lock(&self.shards[index])
    }

    fn all(&self) -> impl Iterator<Item = MutexGuard<'_, Map<V>>> {
        self.shards.iter().map(lock)
    }
}

/// What one flush wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlushStats {
    pub buckets: usize,
    pub keys_used: usize,
    pub evicted: usize,
}

pub struct Limiter {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    buckets: Sharded<Arc<LimitSlot>>,
    usage: Sharded<Arc<UsageSlot>>,
    /// Bumped, under the shard lock, by every flush that evicts a bucket slot: a first use
    /// that read the store before an eviction must read again (see [`Limiter::slot_of`]).
    evictions: AtomicU64,
    /// Flushes run one at a time, so a failed one can put back exactly what it took.
    flushing: Mutex<()>,
}

impl Limiter {
    pub fn new(store: Arc<Store>, metrics: Arc<Metrics>) -> Self {
        Limiter {
            store,
            metrics,
            buckets: Sharded::new(),
            usage: Sharded::new(),
            evictions: AtomicU64::new(0),
            flushing: Mutex::new(()),
        }
    }

    /// Takes a token from each of the key's buckets, or refuses and takes none. Looks the
    /// slot up each time; the hot path keeps it instead ([`Limiter::take`]).
    pub fn check(&self, key: &Key, now_ms: u64) -> Result<Decision, StoreError> {
        let mut slot = self.slot_of(&key.limit_id, now_ms)?;
        self.take(&mut slot, key.rate_limit, &key.limit_id, now_ms)
    }

    /// The live slot of the limit `id` (a key's `limit_id`), loaded from the store on its
    /// first use since start.
    pub fn slot_of(&self, id: &KeyId, now_ms: u64) -> Result<Arc<LimitSlot>, StoreError> {
        loop {
            if let Some(slot) = self.buckets.shard(id).get(id) {
                return Ok(Arc::clone(slot));
            }
            // Load outside the lock, then let whichever thread inserts first win, so
            // concurrent first uses still share one slot.
            let evictions = self.evictions.load(Ordering::Acquire);
            let saved = self.store.read()?.buckets(id)?.unwrap_or_default();
            let mut shard = self.buckets.shard(id);
            if let Some(slot) = shard.get(id) {
                return Ok(Arc::clone(slot));
            }
            if self.evictions.load(Ordering::Acquire) != evictions {
                // A slot may have lived and been evicted since the read, saving newer levels.
                continue;
            }
            let slot = Arc::new(LimitSlot(Mutex::new(BucketEntry {
                buckets: saved,
                dirty: false,
                touched_s: whole_seconds(now_ms),
                evicted: false,
            })));
            shard.insert(id.clone(), Arc::clone(&slot));
            return Ok(slot);
        }
    }

    /// The live usage slot of `key_id`.
    pub fn usage_of(&self, key_id: &KeyId) -> Arc<UsageSlot> {
        let mut shard = self.usage.shard(key_id);
        // Look up before inserting: the common case then allocates nothing.
        if let Some(slot) = shard.get(key_id) {
            return Arc::clone(slot);
        }
        let slot = Arc::new(UsageSlot(Mutex::default()));
        shard.insert(key_id.clone(), Arc::clone(&slot));
        slot
    }

    /// [`Limiter::check`] on a slot the caller kept (of the limit `id`, `limit`), replacing it
    /// if it was evicted.
    pub fn take(
        &self,
        slot: &mut Arc<LimitSlot>,
        limit: RateLimit,
        id: &KeyId,
        now_ms: u64,
    ) -> Result<Decision, StoreError> {
        self.with_live_slot(slot, id, now_ms, |entry| {
            let decision = entry.buckets.check(limit, now_ms);
            // A refused request changes no level, but the refill bookkeeping moved; saving
            // it is harmless, and skipping it keeps a hammering client from causing writes.
            entry.dirty |= decision.allowed;
            decision
        })
    }

    /// Brings the buckets of the limit `id` up to `now_ms` under `limit`, taking nothing:
    /// call it with the old limit before a key's limit changes (see [`Buckets::settle`]).
    /// Loads them first if no key of the limit was used since start.
    pub fn settle(&self, id: &KeyId, limit: RateLimit, now_ms: u64) -> Result<(), StoreError> {
        let mut slot = self.slot_of(id, now_ms)?;
        self.with_live_slot(&mut slot, id, now_ms, |entry| {
            entry.buckets.settle(limit, now_ms);
            entry.dirty = true;
        })
    }

    /// Runs `f` on the buckets of `slot` (of the limit `id`) under its lock, first replacing
    /// the slot with the live one if the flush evicted it, and marks them used at `now_ms`.
    fn with_live_slot<T>(
        &self,
        slot: &mut Arc<LimitSlot>,
        id: &KeyId,
        now_ms: u64,
        mut f: impl FnMut(&mut BucketEntry) -> T,
    ) -> Result<T, StoreError> {
        loop {
            {
                let mut entry = lock(&slot.0);
                if !entry.evicted {
                    entry.touched_s = whole_seconds(now_ms);
                    return Ok(f(&mut entry));
                }
            }
            *slot = self.slot_of(id, now_ms)?;
        }
    }

    /// Counts one admitted request for `key_id` on a slot the caller kept (from
    /// [`Limiter::usage_of`]), replacing it if it was evicted.
    pub fn count_use(&self, slot: &mut Arc<UsageSlot>, key_id: &KeyId, now_ms: u64) {
        loop {
            {
                let mut entry = lock(&slot.0);
                if !entry.evicted {
                    entry.usage.requests += 1;
                    entry.usage.last_used_ms = entry.usage.last_used_ms.max(now_ms);
                    return;
                }
            }
            *slot = self.usage_of(key_id);
        }
    }

    /// Writes every changed bucket and all pending usage in one transaction. On failure
    /// the pending state is put back, so the next flush retries it.
    pub fn flush(&self, now_ms: u64) -> Result<FlushStats, StoreError> {
        let _one_at_a_time = lock(&self.flushing);
        // Usage first, levels second: a request updates its bucket before it is counted, so
        // every request in this batch of usage has its spend in the levels snapshot below.
        // Hence a persisted `request_count` always has its bucket spend persisted with it.
        let mut used = Vec::new();
        for mut shard in self.usage.all() {
            shard.retain(|id, slot| {
                let mut entry = lock(&slot.0);
                if entry.usage.requests == 0 {
                    // Unused for a whole interval: dropped, and made anew at the next use.
                    entry.evicted = true;
                    return false;
                }
                used.push((id.clone(), Arc::clone(slot), std::mem::take(&mut entry.usage)));
                true
            });
        }
        let mut dirty = Vec::new();
        for shard in self.buckets.all() {
            for (id, slot) in shard.iter() {
                let mut entry = lock(&slot.0);
                if entry.dirty {
                    entry.dirty = false;
                    dirty.push((id.clone(), Arc::clone(slot), entry.buckets));
                }
            }
        }
        let mut stats = FlushStats { buckets: dirty.len(), keys_used: used.len(), evicted: 0 };
        if !dirty.is_empty() || !used.is_empty() {
            let written = self.store.write_usage(
                dirty.iter().map(|(id, _, buckets)| (id, buckets)),
                used.iter().map(|(id, _, usage)| (id, usage.requests, Timestamp::from_millis(usage.last_used_ms))),
            );
            if let Err(err) = written {
                // Nothing is evicted before this point, so every slot taken from is still live.
                for (_, slot, _) in &dirty {
                    lock(&slot.0).dirty = true;
                }
                for (_, slot, usage) in &used {
                    let mut entry = lock(&slot.0);
                    entry.usage.requests += usage.requests;
                    entry.usage.last_used_ms = entry.usage.last_used_ms.max(usage.last_used_ms);
                }
                return Err(err);
            }
        }
        for mut shard in self.buckets.all() {
            let before = shard.len();
            shard.retain(|_, slot| {
                let mut entry = lock(&slot.0);
                let idle_s = whole_seconds(now_ms).wrapping_sub(entry.touched_s);
                let keep = entry.dirty || u64::from(idle_s) * 1000 < IDLE_EVICT_MS;
                entry.evicted = !keep;
                keep
            });
            let evicted = before - shard.len();
            if evicted > 0 {
                // Still under this shard's lock, where a first use compares it.
                self.evictions.fetch_add(1, Ordering::Release);
            }
            stats.evicted += evicted;
        }
        Ok(stats)
    }

    /// Starts the write-behind thread. Dropping or stopping the handle flushes once more.
    pub fn start_flusher(self: &Arc<Self>, interval: Duration) -> std::io::Result<Flusher> {
        let (stop, stopped) = mpsc::channel::<()>();
        let limiter = Arc::clone(self);
        let thread = std::thread::Builder::new().name("iblueprint-flush".into()).spawn(move || {
            // A message or a dropped sender both mean stop; either way flush once more.
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                limiter.flush_and_log();
            }
            limiter.flush_and_log();
        })?;
        Ok(Flusher { stop: Some(stop), thread: Some(thread) })
    }

    fn flush_and_log(&self) {
        let started = Instant::now();
        match self.flush(crate::clock::now_millis()) {
            Ok(stats) if stats == FlushStats::default() => {}
            Ok(stats) => {
                let took = started.elapsed();
                self.metrics.record_flush(stats.buckets + stats.keys_used, took);
                tracing::debug!(
                    buckets = stats.buckets,
                    keys_used = stats.keys_used,
                    evicted = stats.evicted,
                    micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
                    "flushed rate-limit state"
                );
            }
            Err(err) => {
                self.metrics.record_flush_failure();
                tracing::error!(error = %err, "flushing rate-limit state failed; will retry");
            }
        }
    }
}

/// The running write-behind thread.
pub struct Flusher {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Stops the thread after one final flush, and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{RateLimit, fixtures};

    fn setup(limit: RateLimit) -> (tempfile::TempDir, Arc<Store>, Key) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("l.redb")).unwrap());
        let user = fixtures::user("u");
        let mut key = fixtures::key(&user.id, limit);
        store
            .write(|tx| {
                tx.put_user(&user)?;
                tx.insert_key(&mut key)
            })
            .unwrap();
        (dir, store, key)
    }

    #[test]
    fn flushed_levels_are_what_a_fresh_limiter_starts_from() {
        let limit = RateLimit::new(Some(3), None).unwrap();
        let (_dir, store, key) = setup(limit);
        let limiter = Limiter::new(Arc::clone(&store), Arc::default());
        let now = 1_000_000;
        assert!(limiter.check(&key, now).unwrap().allowed);
        assert!(limiter.check(&key, now).unwrap().allowed);
        let stats = limiter.flush(now).unwrap();
        assert_eq!(stats.buckets, 1);
        let restarted = Limiter::new(store, Arc::default());
        assert!(restarted.check(&key, now).unwrap().allowed);
        assert!(!restarted.check(&key, now).unwrap().allowed);
    }

    #[test]
    fn usage_is_added_to_the_key_record_at_flush() {
        let (_dir, store, key) = setup(RateLimit::UNLIMITED);
        let limiter = Limiter::new(Arc::clone(&store), Arc::default());
        for ms in [5_000, 9_000, 7_000] {
            limiter.count_use(&mut limiter.usage_of(&key.id), &key.id, ms);
        }
        assert_eq!(limiter.flush(10_000).unwrap().keys_used, 1);
        limiter.count_use(&mut limiter.usage_of(&key.id), &key.id, 12_000);
        limiter.flush(13_000).unwrap();
        let saved = store.read().unwrap().key(&key.id).unwrap().unwrap();
        assert_eq!(saved.request_count, 4);
        assert_eq!(saved.last_used_at, Some(Timestamp::from_unix(12)));
        // Nothing pending: a flush writes nothing.
        assert_eq!(limiter.flush(14_000).unwrap(), FlushStats::default());
    }

    #[test]
    fn idle_clean_entries_are_evicted_and_reload_with_their_levels() {
        let limit = RateLimit::new(Some(2), None).unwrap();
        let (_dir, store, key) = setup(limit);
        let limiter = Limiter::new(store, Arc::default());
        assert!(limiter.check(&key, 0).unwrap().allowed);
        assert_eq!(limiter.flush(0).unwrap().evicted, 0);
        assert_eq!(limiter.flush(IDLE_EVICT_MS - 1000).unwrap().evicted, 0, "idle time counts to the second");
        assert_eq!(limiter.flush(IDLE_EVICT_MS).unwrap().evicted, 1);
        // Reloaded from the store: one token spent, and refill since then is honoured.
        let d = limiter.check(&key, IDLE_EVICT_MS).unwrap();
        assert!(d.allowed);
        assert_eq!(d.hour.unwrap().remaining, 0);
    }

    #[test]
    fn idle_time_is_right_across_the_wrap_of_whole_seconds() {
        let limit = RateLimit::new(Some(2), None).unwrap();
        let (_dir, store, key) = setup(limit);
        let limiter = Limiter::new(store, Arc::default());
        let last_second_before_wrap = u64::from(u32::MAX) * 1000;
        assert!(limiter.check(&key, last_second_before_wrap).unwrap().allowed);
        assert_eq!(limiter.flush(last_second_before_wrap).unwrap().evicted, 0);
        assert_eq!(limiter.flush(last_second_before_wrap + 10_000).unwrap().evicted, 0, "10 s idle, not 136 years");
        assert_eq!(limiter.flush(last_second_before_wrap + IDLE_EVICT_MS).unwrap().evicted, 1);
    }

    #[test]
    fn a_kept_slot_that_the_flush_evicted_hands_over_to_the_live_one() {
        let limit = RateLimit::new(Some(2), None).unwrap();
        let (_dir, store, key) = setup(limit);
        let limiter = Limiter::new(Arc::clone(&store), Arc::default());
        let mut slot = limiter.slot_of(&key.limit_id, 0).unwrap();
        let mut usage = limiter.usage_of(&key.id);
        assert!(limiter.take(&mut slot, key.rate_limit, &key.limit_id, 0).unwrap().allowed);
        limiter.count_use(&mut usage, &key.id, 0);
        assert_eq!(limiter.flush(0).unwrap(), FlushStats { buckets: 1, keys_used: 1, evicted: 0 });
        assert_eq!(limiter.flush(IDLE_EVICT_MS).unwrap().evicted, 1);
        // Both handles point at evicted slots now; using them reaches the live state: the
        // bucket reloads with its saved level (1 left, plus a quarter hour's refill of 0.5).
        let (stale_slot, stale_usage) = (Arc::clone(&slot), Arc::clone(&usage));
        assert!(limiter.take(&mut slot, key.rate_limit, &key.limit_id, IDLE_EVICT_MS).unwrap().allowed);
        assert!(!Arc::ptr_eq(&slot, &stale_slot), "the evicted slot was replaced");
        let mut stale_slot = stale_slot;
        assert!(
            !limiter.take(&mut stale_slot, key.rate_limit, &key.limit_id, IDLE_EVICT_MS).unwrap().allowed,
            "no budget from a dead copy"
        );
        let mut stale_usage = stale_usage;
        limiter.count_use(&mut stale_usage, &key.id, IDLE_EVICT_MS);
        limiter.count_use(&mut usage, &key.id, IDLE_EVICT_MS);
        assert!(Arc::ptr_eq(&usage, &stale_usage), "both handles moved to the one live usage slot");
        assert_eq!(limiter.flush(IDLE_EVICT_MS).unwrap().keys_used, 1);
        assert_eq!(store.read().unwrap().key(&key.id).unwrap().unwrap().request_count, 3);
    }

    #[test]
    fn the_flusher_writes_on_stop() {
        let limit = RateLimit::new(Some(1), None).unwrap();
        let (_dir, store, key) = setup(limit);
        let limiter = Arc::new(Limiter::new(Arc::clone(&store), Arc::default()));
        let flusher = limiter.start_flusher(Duration::from_secs(3600)).unwrap();
        assert!(limiter.check(&key, crate::clock::now_millis()).unwrap().allowed);
        flusher.stop();
        assert!(store.read().unwrap().buckets(&key.limit_id).unwrap().is_some());
    }
}
