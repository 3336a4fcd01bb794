//! Per-key rate limiting and usage counting in memory, written behind to the store.
//!
//! # Exactness
//! Every decision for a bucket is made under one mutex (the shard holding that key's
//! `limit_id`), so however many workers verify the same key at once, admissions never
//! exceed the bucket. Shards keep unrelated keys from contending.
//!
//! # Memory
//! A key's buckets are loaded from the store the first time it is used after a start, so
//! memory follows the keys in use, not the keys that exist; start-up reads nothing. Clean
//! entries idle for [`IDLE_EVICT_MS`] are dropped at the next flush.
//!
//! # Durability
//! Levels and usage (`request_count`, `last_used_at`) are written in one store transaction
//! per flush interval, and once more at clean shutdown. What a crash can lose is the
//! consumption of at most one interval: after a SIGKILL a key may admit up to one interval's
//! worth of requests again, and `request_count` may be short by as many. A clean shutdown
//! loses nothing. A failed flush keeps everything in memory and is retried next interval.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::domain::ratelimit::{Buckets, Decision};
use crate::domain::{Key, KeyId, Timestamp};
use crate::metrics::Metrics;
use crate::store::{Reads, Store, StoreError};

/// Enough shards that 2–64 workers rarely meet on one lock.
const SHARDS: usize = 64;
/// Clean bucket entries untouched this long are evicted (they reload from the store).
pub const IDLE_EVICT_MS: u64 = 15 * 60 * 1000;

struct BucketEntry {
    buckets: Buckets,
    dirty: bool,
    touched_ms: u64,
}

#[derive(Default, Clone, Copy)]
struct Usage {
    requests: u64,
    last_used_ms: u64,
}

/// The hasher of the shard maps. Key ids are drawn from the CSPRNG by us, so nobody can
/// pick ids that collide, and SipHash's flooding resistance buys nothing here; foldhash
/// (per-process random seed) costs a fraction of it, twice per verified request.
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
        // A panic while holding a shard cannot leave a bucket half-updated (updates are
        // single assignments), so a poisoned lock is safe to keep using.
        self.shards[index].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn all(&self) -> impl Iterator<Item = MutexGuard<'_, Map<V>>> {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
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
    buckets: Sharded<BucketEntry>,
    usage: Sharded<Usage>,
}

impl Limiter {
    pub fn new(store: Arc<Store>, metrics: Arc<Metrics>) -> Self {
        Limiter { store, metrics, buckets: Sharded::new(), usage: Sharded::new() }
    }

    /// Takes a token from each of the key's buckets, or refuses and takes none.
    pub fn check(&self, key: &Key, now_ms: u64) -> Result<Decision, StoreError> {
        if let Some(entry) = self.buckets.shard(&key.limit_id).get_mut(&key.limit_id) {
            return Ok(take(entry, key, now_ms));
        }
        // First use since start: load outside the lock, then let whichever thread inserted
        // first win, so concurrent first uses still share one bucket.
        let saved = self.store.read()?.buckets(&key.limit_id)?.unwrap_or_default();
        let mut shard = self.buckets.shard(&key.limit_id);
        let entry = shard.entry(key.limit_id.clone()).or_insert(BucketEntry {
            buckets: saved,
            dirty: false,
            touched_ms: now_ms,
        });
        Ok(take(entry, key, now_ms))
    }

    /// Counts one admitted request for `key_id`.
    pub fn record_use(&self, key_id: &KeyId, now_ms: u64) {
        let mut shard = self.usage.shard(key_id);
        // Look up before inserting: the common case (a key already counted since the last
        // flush) then allocates nothing.
        match shard.get_mut(key_id) {
            Some(usage) => {
                usage.requests += 1;
                usage.last_used_ms = usage.last_used_ms.max(now_ms);
            }
            None => {
                shard.insert(key_id.clone(), Usage { requests: 1, last_used_ms: now_ms });
            }
        }
    }

    /// Writes every changed bucket and all pending usage in one transaction. On failure
    /// the pending state is put back, so the next flush retries it.
    pub fn flush(&self, now_ms: u64) -> Result<FlushStats, StoreError> {
        // Usage first, levels second: a request updates its bucket before it is counted, so
        // every request in this batch of usage has its spend in the levels snapshot below.
        // Hence a persisted `request_count` always has its bucket spend persisted with it.
        let mut used = Vec::new();
        for mut shard in self.usage.all() {
            used.extend(shard.drain());
        }
        let mut dirty = Vec::new();
        for mut shard in self.buckets.all() {
            for (id, entry) in shard.iter_mut().filter(|(_, e)| e.dirty) {
                entry.dirty = false;
                dirty.push((id.clone(), entry.buckets));
            }
        }
        let mut stats = FlushStats { buckets: dirty.len(), keys_used: used.len(), evicted: 0 };
        if !dirty.is_empty() || !used.is_empty() {
            let written = self.store.write(|tx| {
                for (id, buckets) in &dirty {
                    tx.put_buckets(id, buckets)?;
                }
                for (id, usage) in &used {
                    tx.add_usage(id, usage.requests, Timestamp::from_millis(usage.last_used_ms))?;
                }
                Ok::<_, StoreError>(())
            });
            if let Err(err) = written {
                self.restore(dirty, used);
                return Err(err);
            }
        }
        for mut shard in self.buckets.all() {
            let before = shard.len();
            shard.retain(|_, e| e.dirty || now_ms.saturating_sub(e.touched_ms) < IDLE_EVICT_MS);
            stats.evicted += before - shard.len();
        }
        Ok(stats)
    }

    fn restore(&self, dirty: Vec<(KeyId, Buckets)>, used: Vec<(KeyId, Usage)>) {
        for (id, _) in dirty {
            if let Some(entry) = self.buckets.shard(&id).get_mut(&id) {
                entry.dirty = true;
            }
        }
        for (id, usage) in used {
            let mut shard = self.usage.shard(&id);
            let pending = shard.entry(id.clone()).or_default();
            pending.requests += usage.requests;
            pending.last_used_ms = pending.last_used_ms.max(usage.last_used_ms);
        }
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

fn take(entry: &mut BucketEntry, key: &Key, now_ms: u64) -> Decision {
    let decision = entry.buckets.check(key.rate_limit, now_ms);
    entry.touched_ms = now_ms;
    // A refused request changes no level, but the refill bookkeeping moved; saving it is
    // harmless, and skipping it keeps a hammering client from causing writes.
    entry.dirty |= decision.allowed;
    decision
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
            limiter.record_use(&key.id, ms);
        }
        assert_eq!(limiter.flush(10_000).unwrap().keys_used, 1);
        limiter.record_use(&key.id, 12_000);
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
        assert_eq!(limiter.flush(IDLE_EVICT_MS).unwrap().evicted, 1);
        // Reloaded from the store: one token spent, and refill since then is honoured.
        let d = limiter.check(&key, IDLE_EVICT_MS).unwrap();
        assert!(d.allowed);
        assert_eq!(d.hour.unwrap().remaining, 0);
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
