//! A disk that fails on cue, for fault-injection tests (`tests/fault.rs`).
//!
//! [`FlakyBackend`] is redb's own file backend with a countdown in front of it: once armed
//! with `n`, the next `n` writes go through and every write, `set_len` and `sync_data` after
//! that fails with an I/O error, until the switch is cleared. Reads always go through: the
//! fault modelled is a disk that stops taking writes (full, remounted read-only, a dying
//! device), which is what can make a commit fail half-way. Locks are passed through
//! untouched, so the file is shared and guarded exactly as in production.
//!
//! The switch counts writes, and fails syncs and resizes only after a write has failed, so
//! an injected failure always lands on a write, never on an fsync whose data went through
//! (whose outcome no database can know: on a healthy test disk the page cache has the data
//! and the "failed" change is there after a reopen). Where in a commit the failing write
//! lands decides what the recovery at the next open finds: redb's commit in the server's
//! concurrency mode writes the header (marked unflushed), the pages, fsyncs, then writes the
//! header again; a failure up to and including that unmarking write is rolled back, and a
//! failure of a later header write leaves the commit complete. `tests/fault.rs` meets both.
//!
//! It lives in the library, not in the tests, because only `store` may know redb.

use std::fs::File;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// Writes allowed while the fault is off.
const OFF: u64 = u64::MAX;

#[derive(Debug, Default)]
struct State {
    /// Writes still allowed; [`OFF`] when the fault is off.
    remaining: AtomicU64,
    /// The fault has refused a write since it was last armed.
    fired: AtomicBool,
}

/// Arms and clears the fault of one [`FlakyBackend`].
#[derive(Debug, Clone)]
pub struct FaultSwitch(Arc<State>);

impl FaultSwitch {
    /// Let `writes` more writes through, then fail every write and sync.
    pub fn arm(&self, writes: u64) {
        self.0.fired.store(false, Ordering::SeqCst);
        self.0.remaining.store(writes, Ordering::SeqCst);
    }

    /// The disk works again (for a store opened after this; redb itself refuses to go on
    /// with a database that has seen an I/O error).
    pub fn clear(&self) {
        self.0.remaining.store(OFF, Ordering::SeqCst);
        self.0.fired.store(false, Ordering::SeqCst);
    }

    /// Whether the fault has fired (a write was refused since the last `arm`).
    pub fn tripped(&self) -> bool {
        self.0.fired.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
pub struct FlakyBackend {
    inner: FileBackend,
    state: Arc<State>,
}

impl FlakyBackend {
    /// Opens (or creates) the file at `path` for reading and writing, fault off.
    pub fn open(path: &Path) -> std::io::Result<(FlakyBackend, FaultSwitch)> {
        let file = File::options().read(true).write(true).create(true).truncate(false).open(path)?;
        let inner = FileBackend::new(file).map_err(std::io::Error::other)?;
        let state = Arc::new(State { remaining: AtomicU64::new(OFF), ..State::default() });
        Ok((FlakyBackend { inner, state: Arc::clone(&state) }, FaultSwitch(state)))
    }

    fn take_write(&self) -> std::io::Result<()> {
        let taken = self.state.remaining.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
            OFF => Some(OFF),
            0 => None,
            n => Some(n - 1),
        });
        if taken.is_ok() {
            return Ok(());
        }
        self.state.fired.store(true, Ordering::SeqCst);
        Err(injected())
    }

    /// Syncs and resizes fail only once a write has: the fault strikes a write first.
    fn check(&self) -> std::io::Result<()> {
        if self.state.fired.load(Ordering::SeqCst) { Err(injected()) } else { Ok(()) }
    }
}

fn injected() -> std::io::Error {
    std::io::Error::other("injected storage fault")
}

impl StorageBackend for FlakyBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.check()?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.check()?;
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.take_write()?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
