//! Token buckets, in exact integer arithmetic.
//!
//! A limit of N requests per window W is a bucket of capacity N that refills continuously
//! at N/W tokens per second. Levels are kept in *units* of 1/W_ms of a token, so one
//! millisecond adds exactly N units: refill is a multiplication, never a division, and
//! nothing drifts however many times a bucket is refilled. With N ≤ 10⁹ and W = one day,
//! a full bucket is under 10¹⁷ units, far inside `u64`.
//!
//! A request takes one token from every bucket the key has, or from none: if any bucket
//! holds less than one token, the request is refused and no bucket changes.

use serde::{Deserialize, Serialize};

use super::key::RateLimit;

pub const HOUR_MS: u64 = 3_600_000;
pub const DAY_MS: u64 = 86_400_000;

/// One bucket's level and the instant (Unix milliseconds) it was last brought up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub units: u64,
    pub updated_ms: u64,
}

/// A key's buckets. `None` where the key has no limit for that window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Buckets {
    pub hour: Option<Bucket>,
    pub day: Option<Bucket>,
}

/// How one window stands after a check, for the `RateLimit` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowState {
    /// `"hour"` or `"day"`.
    pub name: &'static str,
    pub quota: u32,
    pub window_seconds: u64,
    /// Whole tokens left.
    pub remaining: u64,
    /// Whole seconds until the bucket is full again (rounded up).
    pub seconds_to_full: u64,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Whole seconds until a refused request would pass (rounded up); 0 when allowed.
    pub retry_after: u64,
    pub hour: Option<WindowState>,
    pub day: Option<WindowState>,
}

impl Decision {
    pub fn windows(&self) -> impl Iterator<Item = &WindowState> {
        self.hour.iter().chain(self.day.iter())
    }
}

#[derive(Clone, Copy)]
struct Window {
    name: &'static str,
    quota: u32,
    window_ms: u64,
}

impl Window {
    fn capacity_units(self) -> u64 {
        u64::from(self.quota) * self.window_ms
    }

    /// The bucket brought up to `now_ms`, clamped to this window's capacity (which may
    /// have shrunk since the level was saved). A clock that went backwards refills nothing.
    fn refill(self, bucket: Option<Bucket>, now_ms: u64) -> Bucket {
        let capacity = self.capacity_units();
        match bucket {
            None => Bucket { units: capacity, updated_ms: now_ms },
            Some(b) => {
                let elapsed = now_ms.saturating_sub(b.updated_ms);
                let units = b.units.saturating_add(elapsed.saturating_mul(u64::from(self.quota))).min(capacity);
                Bucket { units, updated_ms: now_ms.max(b.updated_ms) }
            }
        }
    }

    fn state(self, bucket: Bucket) -> WindowState {
        let missing = self.capacity_units() - bucket.units.min(self.capacity_units());
        WindowState {
            name: self.name,
            quota: self.quota,
            window_seconds: self.window_ms / 1000,
            remaining: bucket.units / self.window_ms,
            seconds_to_full: ms_to_seconds_up(missing.div_ceil(u64::from(self.quota))),
        }
    }

    /// Milliseconds until the bucket holds one whole token.
    fn ms_until_one_token(self, bucket: Bucket) -> u64 {
        self.window_ms.saturating_sub(bucket.units).div_ceil(u64::from(self.quota))
    }
}

fn ms_to_seconds_up(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

fn windows(limit: RateLimit) -> (Option<Window>, Option<Window>) {
    (
        limit.per_hour().map(|quota| Window { name: "hour", quota, window_ms: HOUR_MS }),
        limit.per_day().map(|quota| Window { name: "day", quota, window_ms: DAY_MS }),
    )
}

impl Buckets {
    /// Takes one token from each of the key's buckets if every one has a token; otherwise
    /// takes nothing. Buckets for windows the key no longer limits are dropped, and a window
    /// that is newly limited starts full.
    pub fn check(&mut self, limit: RateLimit, now_ms: u64) -> Decision {
        let (hour_window, day_window) = windows(limit);
        let hour = hour_window.map(|w| (w, w.refill(self.hour, now_ms)));
        let day = day_window.map(|w| (w, w.refill(self.day, now_ms)));

        // The longest wait of a window without a whole token; `None` when every one has one.
        let wait_ms = [hour, day]
            .iter()
            .flatten()
            .filter(|(w, b)| b.units < w.window_ms)
            .map(|(w, b)| w.ms_until_one_token(*b))
            .max();
        let allowed = wait_ms.is_none();
        let take = |(w, mut b): (Window, Bucket)| {
            if allowed {
                b.units -= w.window_ms;
            }
            (w, b)
        };
        let hour = hour.map(take);
        let day = day.map(take);
        self.hour = hour.map(|(_, b)| b);
        self.day = day.map(|(_, b)| b);
        Decision {
            allowed,
            retry_after: wait_ms.map_or(0, ms_to_seconds_up),
            hour: hour.map(|(w, b)| w.state(b)),
            day: day.map(|(w, b)| w.state(b)),
        }
    }

    /// Brings each bucket up to `now_ms` under `limit`, taking nothing. Call it with the
    /// old limit just before a key's limit changes: the next check refills the time since
    /// the last one at the rate of the limit it is given, so without this the new rate
    /// would be credited for the time before the change too (an empty 1-per-hour key
    /// raised to 1,000 per hour after an idle hour would get 1,000 tokens, not one). The
    /// level is then capped at the new capacity by that next check.
    pub fn settle(&mut self, limit: RateLimit, now_ms: u64) {
        let (hour, day) = windows(limit);
        self.hour = hour.map(|w| w.refill(self.hour, now_ms));
        self.day = day.map(|w| w.refill(self.day, now_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limit(hour: Option<u64>, day: Option<u64>) -> RateLimit {
        RateLimit::new(hour, day).unwrap()
    }

    #[test]
    fn a_new_key_starts_full_and_spends_one_token_per_request() {
        let mut b = Buckets::default();
        let l = limit(Some(3), None);
        let first = b.check(l, 0);
        assert!(first.allowed);
        assert_eq!(first.hour.unwrap().remaining, 2);
        assert_eq!(first.hour.unwrap().seconds_to_full, 1200);
        assert!(b.check(l, 0).allowed);
        assert!(b.check(l, 0).allowed);
        let refused = b.check(l, 0);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, 1200);
        assert_eq!(refused.hour.unwrap().remaining, 0);
        // One token comes back after exactly W/N.
        assert!(!b.check(l, 1_199_999).allowed);
        assert!(b.check(l, 1_200_000).allowed);
    }

    #[test]
    fn a_refused_request_spends_nothing_from_either_bucket() {
        let mut b = Buckets::default();
        let l = limit(Some(1), Some(10));
        assert!(b.check(l, 0).allowed);
        let before = b;
        let refused = b.check(l, 0);
        assert!(!refused.allowed);
        assert_eq!(refused.day.unwrap().remaining, 9);
        assert_eq!(b, before);
    }

    #[test]
    fn retry_after_is_the_longest_wait_among_empty_buckets() {
        let mut b = Buckets::default();
        let l = limit(Some(100), Some(1));
        assert!(b.check(l, 0).allowed);
        let refused = b.check(l, 0);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, 86_400);
    }

    #[test]
    fn shrinking_a_limit_caps_the_level_and_growing_it_keeps_the_level() {
        let mut b = Buckets::default();
        assert!(b.check(limit(Some(100), None), 0).allowed); // 99 left
        let d = b.check(limit(Some(10), None), 0);
        assert_eq!(d.hour.unwrap().remaining, 9);
        let d = b.check(limit(Some(1000), None), 0);
        assert_eq!(d.hour.unwrap().remaining, 8);
    }

    #[test]
    fn a_changed_limit_refills_at_the_old_rate_until_the_change() {
        let (old, new) = (limit(Some(1), Some(24)), limit(Some(3600), Some(86_400)));
        let mut b = Buckets::default();
        assert!(b.check(old, 0).allowed); // both buckets: 1 token short of full
        // Changed after an idle 30 minutes: half a token came back at the old rate.
        b.settle(old, 1_800_000);
        let d = b.check(new, 1_800_000);
        assert!(!d.allowed, "half an hourly token is not a token, whatever the new rate");
        assert_eq!(d.retry_after, 1, "the new rate applies from the change on");
        // Without settling, the new rate would have paid for the idle half hour.
        let mut unsettled = Buckets::default();
        assert!(unsettled.check(old, 0).allowed);
        assert!(unsettled.check(new, 1_800_000).allowed);
    }

    #[test]
    fn settling_under_the_current_limit_changes_no_decision() {
        let l = limit(Some(3), Some(10));
        let (mut settled, mut plain) = (Buckets::default(), Buckets::default());
        for now in [0, 1, 500_000, 500_001, 2_000_000, 9_000_000] {
            settled.settle(l, now);
            assert_eq!(settled.check(l, now), plain.check(l, now));
        }
    }

    #[test]
    fn removing_a_limit_drops_its_bucket_and_re_adding_starts_full() {
        let mut b = Buckets::default();
        assert!(b.check(limit(Some(1), None), 0).allowed);
        assert!(b.check(RateLimit::UNLIMITED, 0).allowed);
        assert_eq!(b.hour, None);
        assert_eq!(b.check(limit(Some(5), None), 0).hour.unwrap().remaining, 4);
    }

    #[test]
    fn a_clock_that_goes_backwards_refills_nothing() {
        let mut b = Buckets::default();
        let l = limit(Some(2), None);
        assert!(b.check(l, 10_000_000).allowed);
        assert!(b.check(l, 10_000_000).allowed);
        assert!(!b.check(l, 5_000_000).allowed);
    }

    /// A plain reference: levels as exact rationals (numerator over W_ms), refilled by the
    /// textbook formula min(cap, level + elapsed·N/W).
    #[derive(Clone, Copy)]
    struct Model {
        level: u128,
        at: u64,
    }

    fn model_step(m: &mut Option<Model>, quota: u64, window: u64, now: u64) -> bool {
        let cap = u128::from(quota) * u128::from(window);
        let mut cur = m.unwrap_or(Model { level: cap, at: now });
        if now > cur.at {
            cur.level = (cur.level + u128::from(now - cur.at) * u128::from(quota)).min(cap);
            cur.at = now;
        }
        *m = Some(cur);
        cur.level >= u128::from(window)
    }

    proptest! {
        #[test]
        fn buckets_match_the_reference_model_across_boundaries_and_jumps(
            hour in 1u64..500,
            day in 1u64..5000,
            steps in proptest::collection::vec(
                prop_oneof![0u64..10, 0u64..5_000, 0u64..HOUR_MS, Just(HOUR_MS), Just(DAY_MS), 0u64..(40 * DAY_MS)],
                1..300,
            ),
        ) {
            let l = limit(Some(hour), Some(day));
            let mut b = Buckets::default();
            let (mut mh, mut md) = (None, None);
            let mut now = 1_700_000_000_000u64;
            let mut admitted = 0u64;
            for step in steps {
                now += step;
                let ok_h = model_step(&mut mh, hour, HOUR_MS, now);
                let ok_d = model_step(&mut md, day, DAY_MS, now);
                let expected = ok_h && ok_d;
                if expected {
                    if let Some(m) = mh.as_mut() { m.level -= u128::from(HOUR_MS); }
                    if let Some(m) = md.as_mut() { m.level -= u128::from(DAY_MS); }
                    admitted += 1;
                }
                let d = b.check(l, now);
                prop_assert_eq!(d.allowed, expected);
                prop_assert_eq!(u128::from(b.hour.unwrap().units), mh.unwrap().level);
                prop_assert_eq!(u128::from(b.day.unwrap().units), md.unwrap().level);
                prop_assert!(d.hour.unwrap().remaining <= hour);
                if !d.allowed {
                    prop_assert!(d.retry_after >= 1);
                }
            }
            prop_assert!(admitted <= 1 + 300);
        }

        #[test]
        fn retry_after_is_exactly_long_enough(quota in 1u64..10_000, used in 0u64..50) {
            let l = limit(Some(quota), None);
            let mut b = Buckets::default();
            let mut now = 0;
            for _ in 0..quota + used { b.check(l, now); }
            let refused = b.check(l, now);
            prop_assume!(!refused.allowed);
            now += refused.retry_after * 1000;
            prop_assert!(b.check(l, now).allowed);
        }
    }
}
