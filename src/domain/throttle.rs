//! Login throttling: at most 5 failed logins per username and 20 per client address within
//! a sliding 15-minute window. Once a limit is reached, every attempt for that username or
//! from that address (the right password included) is refused until the oldest failure in
//! the window ages out, so a guesser learns nothing from a late correct guess.
//!
//! Pure bookkeeping over failure instants; the caller owns the clock and the storage.

use std::collections::VecDeque;

pub const WINDOW_SECONDS: i64 = 15 * 60;
pub const MAX_FAILURES_PER_USERNAME: usize = 5;
pub const MAX_FAILURES_PER_ADDRESS: usize = 20;

/// Failure instants (Unix seconds) for one username or one address, oldest first.
#[derive(Debug, Default, Clone)]
pub struct Failures(VecDeque<i64>);

impl Failures {
    fn prune(&mut self, now: i64) {
        while self.0.front().is_some_and(|&at| at <= now - WINDOW_SECONDS) {
            self.0.pop_front();
        }
    }

    /// Seconds until an attempt is allowed again, or `None` if it is allowed now.
    pub fn blocked_for(&mut self, limit: usize, now: i64) -> Option<u64> {
        self.prune(now);
        if self.0.len() < limit {
            return None;
        }
        // The attempt becomes allowed when enough failures have aged out to be under the limit.
        let unblocks_at = self.0[self.0.len() - limit] + WINDOW_SECONDS;
        Some(u64::try_from(unblocks_at - now).unwrap_or(1).max(1))
    }

    pub fn record(&mut self, now: i64, limit: usize) {
        self.prune(now);
        self.0.push_back(now);
        // Never keep more than the limit needs: bounds memory per attacker.
        while self.0.len() > limit {
            self.0.pop_front();
        }
    }

    /// Takes back one failure recorded at `at` (a reservation that turned out a success).
    pub fn forget(&mut self, at: i64) {
        if let Some(pos) = self.0.iter().rposition(|&t| t == at) {
            self.0.remove(pos);
        }
    }

    /// Whether every failure has aged out (the entry can be forgotten).
    pub fn expired(&mut self, now: i64) -> bool {
        self.prune(now);
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sixth_attempt_after_five_failures_is_blocked_until_the_window_passes() {
        let mut f = Failures::default();
        for t in 0..5 {
            assert_eq!(f.blocked_for(MAX_FAILURES_PER_USERNAME, t), None);
            f.record(t, MAX_FAILURES_PER_USERNAME);
        }
        assert_eq!(f.blocked_for(MAX_FAILURES_PER_USERNAME, 10), Some(890));
        assert_eq!(f.blocked_for(MAX_FAILURES_PER_USERNAME, 899), Some(1));
        assert_eq!(f.blocked_for(MAX_FAILURES_PER_USERNAME, 900), None);
    }

    #[test]
    fn failures_spread_out_never_block() {
        let mut f = Failures::default();
        for i in 0..100 {
            let t = i * 200;
            assert_eq!(f.blocked_for(MAX_FAILURES_PER_USERNAME, t), None, "at {t}");
            f.record(t, MAX_FAILURES_PER_USERNAME);
        }
    }
}
