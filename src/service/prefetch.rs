//! Telling the CPU which cache lines a verification will touch next, so that their cache
//! misses overlap instead of following one another (see `memo`).
//!
//! A hint only: a prefetch of any address is harmless, it never faults, and the program
//! sees nothing of it but the time saved. It lives apart because it is the crate's only
//! `unsafe`, and the only code that knows the CPU.

/// How this CPU fetches a line ahead of its use.
#[derive(Clone, Copy)]
pub(super) struct Prefetch {
    /// PREFETCHW is there: fetch the line owned, ready for the write that follows (a lock,
    /// a reference count), so the write does not have to ask the other cores for it again.
    #[cfg(target_arch = "x86_64")]
    for_write: bool,
}

impl Prefetch {
    /// Asks the CPU (once per thread: CPUID is slow, in a virtual machine very slow).
    pub(super) fn detect() -> Self {
        // SAFETY: every x86_64 CPU has CPUID and its leaf 0x8000_0001 (where the 64-bit
        // mode bit is); the call is safe from Rust 1.94, `unsafe` before.
        #[cfg(target_arch = "x86_64")]
        #[allow(unused_unsafe)]
        let extended = unsafe { std::arch::x86_64::__cpuid(0x8000_0001) };
        Prefetch {
            // ECX bit 8 of that leaf: PREFETCHW.
            #[cfg(target_arch = "x86_64")]
            for_write: extended.ecx & (1 << 8) != 0,
        }
    }

    /// Starts fetching the cache line that holds `at`, to be written.
    #[inline(always)]
    pub(super) fn line<T: ?Sized>(self, at: *const T) {
        #[cfg(target_arch = "x86_64")]
        if self.for_write {
            // SAFETY: the CPU has PREFETCHW (`detect`). It changes nothing the program can
            // see (no memory, no flags, no stack), and it is valid for any address.
            unsafe {
                std::arch::asm!(
                    "prefetchw [{at}]",
                    at = in(reg) at.cast::<u8>(),
                    options(nostack, preserves_flags, readonly)
                );
            }
        } else {
            // SAFETY: SSE is in the baseline of every x86_64 target with `std`; otherwise as
            // above (the line comes shared, and the write claims it).
            unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast()) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (self, at);
    }
}
