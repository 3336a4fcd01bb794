//! The wall clock, read only by the shell (HTTP handlers, commands, the flusher) and passed
//! down as a value: `domain` never reads it, so every rule is testable at any instant.
//!
//! Wall-clock rather than monotonic time on purpose: expiries and rate-limit levels are
//! stored and must mean the same thing after a restart.

use crate::domain::Timestamp;

/// Now, in whole seconds.
pub fn now() -> Timestamp {
    Timestamp::from_millis(now_millis())
}

/// Now, in milliseconds since the Unix epoch (rate limits need sub-second precision).
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
