//! Operator instruments, rendered as Prometheus text on the `metrics.listen` address.
//!
//! Recording happens on the verification hot path, so every instrument is a set of plain
//! atomics, striped per thread: recording is a relaxed add with no lock, no allocation and
//! no cache line shared with another worker, and the work of adding things up happens
//! only when a scraper asks. This module knows neither actix nor redb: [`crate::service`]
//! and [`crate::limiter`] record into it, the HTTP layer reports requests by route name and
//! status, and serves [`Metrics::render`].

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// How a verification ended: the label values of `iblueprint_verifications_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Malformed, bad checksum or unknown: the caller cannot tell these apart, nor can we.
    Invalid,
    Revoked,
    Expired,
    UserDisabled,
    InsufficientScope,
    RateLimited,
    /// The store failed; the caller got a 5xx.
    Error,
}

impl Outcome {
    const ALL: [Outcome; 8] = [
        Outcome::Ok,
        Outcome::Invalid,
        Outcome::Revoked,
        Outcome::Expired,
        Outcome::UserDisabled,
        Outcome::InsufficientScope,
        Outcome::RateLimited,
        Outcome::Error,
    ];

    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Invalid => "invalid",
            Outcome::Revoked => "revoked",
            Outcome::Expired => "expired",
            Outcome::UserDisabled => "user_disabled",
            Outcome::InsufficientScope => "insufficient_scope",
            Outcome::RateLimited => "rate_limited",
            Outcome::Error => "error",
        }
    }
}

/// Seconds: from a quarter of a microsecond (a cached key) to ten milliseconds (a cold
/// page-in from a large file).
const VERIFY_SECONDS: &[f64] = &[250e-9, 500e-9, 1e-6, 2.5e-6, 5e-6, 10e-6, 25e-6, 100e-6, 1e-3, 10e-3];
/// Seconds: a flush is one fsynced write transaction.
const FLUSH_SECONDS: &[f64] = &[1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1.0, 5.0];
/// Records (bucket levels plus usage counters) written by one flush.
const FLUSH_RECORDS: &[f64] = &[1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6];

/// HTTP status codes run from 100 to 599; actix cannot send others, and clamping keeps a
/// counter array indexable without a branch that could lose a count.
const STATUS_MIN: u16 = 100;
const STATUSES: usize = 500;

/// More than the server has route names (about 30); a name past these is not counted.
const ROUTE_SLOTS: usize = 64;

/// The hot-path instruments are kept in this many stripes, and each thread records into
/// the stripe it drew on its first recording. With one stripe per worker, no two workers
/// ever write the same cache line: a counter that every worker bumps on every request
/// moves between cores each time, and on a 2-core machine that cost more per request than
/// the verification itself. More threads than stripes share some (still exact: atomics).
const STRIPES: usize = 16;

pub struct Metrics {
    /// Route names in the order they first answered; a name's position picks its counters
    /// in every stripe. Filled in order, each slot once, so reading is a plain load.
    routes: Box<[OnceLock<Box<str>>]>,
    stripes: Box<[Stripe]>,
    // Written by the flusher alone, so not striped.
    flush_seconds: Histogram,
    flush_records: Histogram,
    flush_failures: AtomicU64,
}

/// One thread's share of the hot-path instruments, on cache lines of its own.
#[repr(align(128))]
struct Stripe {
    /// Per route slot: answered requests by status code, allocated on the route's first
    /// request through this stripe.
    requests: Box<[OnceLock<Box<[AtomicU64]>>]>,
    verifications: [AtomicU64; Outcome::ALL.len()],
    verify_seconds: Histogram,
}

impl Stripe {
    fn new() -> Self {
        Stripe {
            requests: (0..ROUTE_SLOTS).map(|_| OnceLock::new()).collect(),
            verifications: Default::default(),
            verify_seconds: Histogram::new(VERIFY_SECONDS, Unit::Seconds),
        }
    }
}

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's stripe, in every `Metrics` (drawn once, round robin).
    static STRIPE: usize = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            routes: (0..ROUTE_SLOTS).map(|_| OnceLock::new()).collect(),
            stripes: (0..STRIPES).map(|_| Stripe::new()).collect(),
            flush_seconds: Histogram::new(FLUSH_SECONDS, Unit::Seconds),
            flush_records: Histogram::new(FLUSH_RECORDS, Unit::Count),
            flush_failures: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts one answered request. `route` is a route *name* from a fixed set, never a
    /// raw path, so the number of series stays small and no secret becomes a label.
    pub fn record_request(&self, route: &str, status: u16) {
        let Some(slot) = self.route_slot(route) else {
            debug_assert!(false, "more route names than ROUTE_SLOTS");
            return;
        };
        let status = usize::from(status.clamp(STATUS_MIN, STATUS_MIN + STATUSES as u16 - 1) - STATUS_MIN);
        let by_status = self.stripe().requests[slot].get_or_init(|| (0..STATUSES).map(|_| AtomicU64::new(0)).collect());
        by_status[status].fetch_add(1, Ordering::Relaxed);
    }

    /// The slot of `route`, claiming the first free one on its first request. Racing claims
    /// of the same free slot leave one winner; a loser finds its name there or moves on,
    /// so no name ever gets two slots.
    fn route_slot(&self, route: &str) -> Option<usize> {
        self.routes.iter().position(|slot| &**slot.get_or_init(|| route.into()) == route)
    }

    fn stripe(&self) -> &Stripe {
        &self.stripes[STRIPE.with(|stripe| *stripe)]
    }

    pub fn record_verification(&self, outcome: Outcome, took: Duration) {
        let stripe = self.stripe();
        stripe.verifications[outcome as usize].fetch_add(1, Ordering::Relaxed);
        stripe.verify_seconds.observe(took);
    }

    /// A successful flush of `records` records (bucket levels and usage counters).
    pub fn record_flush(&self, records: usize, took: Duration) {
        self.flush_seconds.observe(took);
        self.flush_records.observe_count(records as u64);
    }

    pub fn record_flush_failure(&self) {
        self.flush_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (version 0.0.4) of everything recorded, plus the
    /// data file's size, which the caller reads at scrape time. Stripes are added up here,
    /// so a scrape may see one stripe a moment later than another, never a count lost.
    pub fn render(&self, data_file_bytes: Option<u64>) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP iblueprint_http_requests_total HTTP requests answered, by route name and status.\n");
        out.push_str("# TYPE iblueprint_http_requests_total counter\n");
        let mut routes: Vec<(usize, &str)> =
            self.routes.iter().enumerate().filter_map(|(slot, name)| Some((slot, &**name.get()?))).collect();
        routes.sort_by_key(|&(_, name)| name);
        for (slot, route) in routes {
            let mut by_status = [0u64; STATUSES];
            for counters in self.stripes.iter().filter_map(|stripe| stripe.requests[slot].get()) {
                for (total, count) in by_status.iter_mut().zip(counters.iter()) {
                    *total += count.load(Ordering::Relaxed);
                }
            }
            for (offset, count) in by_status.iter().enumerate().filter(|(_, count)| **count > 0) {
                let status = usize::from(STATUS_MIN) + offset;
                let _ =
                    writeln!(out, "iblueprint_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}");
            }
        }
        out.push_str("# HELP iblueprint_verifications_total Bearer-key verifications, by outcome.\n");
        out.push_str("# TYPE iblueprint_verifications_total counter\n");
        for outcome in Outcome::ALL {
            let count: u64 =
                self.stripes.iter().map(|stripe| stripe.verifications[outcome as usize].load(Ordering::Relaxed)).sum();
            let _ = writeln!(out, "iblueprint_verifications_total{{outcome=\"{}\"}} {count}", outcome.label());
        }
        Histogram::render(
            self.stripes.iter().map(|stripe| &stripe.verify_seconds),
            &mut out,
            "iblueprint_verification_duration_seconds",
            "Time to verify a bearer key: parse, hash, look up, authorize, rate limit.",
        );
        Histogram::render(
            [&self.flush_seconds],
            &mut out,
            "iblueprint_flush_duration_seconds",
            "Time to write the rate-limit levels and usage counters behind, one transaction each.",
        );
        Histogram::render(
            [&self.flush_records],
            &mut out,
            "iblueprint_flush_batch_records",
            "Records written per rate-limit flush (bucket levels plus usage counters).",
        );
        out.push_str("# HELP iblueprint_flush_failures_total Rate-limit flushes that failed and will be retried.\n");
        out.push_str("# TYPE iblueprint_flush_failures_total counter\n");
        let _ = writeln!(out, "iblueprint_flush_failures_total {}", self.flush_failures.load(Ordering::Relaxed));
        if let Some(bytes) = data_file_bytes {
            out.push_str("# HELP iblueprint_data_file_bytes Size of the redb data file.\n");
            out.push_str("# TYPE iblueprint_data_file_bytes gauge\n");
            let _ = writeln!(out, "iblueprint_data_file_bytes {bytes}");
        }
        out
    }
}

/// A Prometheus histogram with fixed upper bounds. Each observation lands in one bucket
/// (cumulated only when rendered); the sum is an integer atomic, in nanoseconds for
/// durations and in whole units for counts.
struct Histogram {
    bounds: &'static [f64],
    /// One per bound, plus the `+Inf` bucket.
    buckets: Box<[AtomicU64]>,
    sum: AtomicU64,
    unit: Unit,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// Observed as durations, rendered in seconds.
    Seconds,
    Count,
}

impl Histogram {
    fn new(bounds: &'static [f64], unit: Unit) -> Self {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            unit,
        }
    }

    fn observe(&self, took: Duration) {
        debug_assert!(self.unit == Unit::Seconds);
        self.count_into(took.as_secs_f64());
        self.sum.fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn observe_count(&self, count: u64) {
        debug_assert!(self.unit == Unit::Count);
        // The float is only for comparing with the bounds; the sum stays exact.
        self.count_into(count as f64);
        self.sum.fetch_add(count, Ordering::Relaxed);
    }

    fn count_into(&self, value: f64) {
        let bucket = self.bounds.iter().position(|&bound| value <= bound).unwrap_or(self.bounds.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// Renders the sum of `parts` (stripes of one instrument) as one histogram.
    fn render<'a>(parts: impl IntoIterator<Item = &'a Histogram>, out: &mut String, name: &str, help: &str) {
        let mut parts = parts.into_iter().peekable();
        let Some(&first) = parts.peek() else { return };
        let (bounds, unit) = (first.bounds, first.unit);
        let mut buckets = vec![0u64; bounds.len() + 1];
        let mut sum = 0u64;
        for part in parts {
            for (total, bucket) in buckets.iter_mut().zip(part.buckets.iter()) {
                *total += bucket.load(Ordering::Relaxed);
            }
            sum = sum.saturating_add(part.sum.load(Ordering::Relaxed));
        }
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bucket) in buckets.iter().enumerate() {
            cumulative += bucket;
            match bounds.get(i) {
                Some(bound) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        match unit {
            Unit::Seconds => {
                let _ = writeln!(out, "{name}_sum {}", sum as f64 / 1e9);
            }
            Unit::Count => {
                let _ = writeln!(out, "{name}_sum {sum}");
            }
        }
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no line {prefix} in\n{text}"))
    }

    #[test]
    fn requests_are_counted_by_route_and_status() {
        let metrics = Metrics::default();
        metrics.record_request("auth", 200);
        metrics.record_request("auth", 200);
        metrics.record_request("auth", 429);
        metrics.record_request("keys", 201);
        let text = metrics.render(None);
        assert_eq!(line(&text, "iblueprint_http_requests_total{route=\"auth\",status=\"200\"}"), {
            "iblueprint_http_requests_total{route=\"auth\",status=\"200\"} 2"
        });
        assert!(text.contains("iblueprint_http_requests_total{route=\"auth\",status=\"429\"} 1\n"));
        assert!(text.contains("iblueprint_http_requests_total{route=\"keys\",status=\"201\"} 1\n"));
        assert!(!text.contains("status=\"404\""), "zero series are left out");
        assert!(!text.contains("iblueprint_data_file_bytes"));
    }

    #[test]
    fn verification_histogram_is_cumulative_with_sum_in_seconds() {
        let metrics = Metrics::default();
        metrics.record_verification(Outcome::Ok, Duration::from_nanos(300));
        metrics.record_verification(Outcome::Revoked, Duration::from_micros(3));
        metrics.record_verification(Outcome::Ok, Duration::from_secs(1));
        let text = metrics.render(Some(4096));
        assert!(text.contains("iblueprint_verifications_total{outcome=\"ok\"} 2\n"));
        assert!(text.contains("iblueprint_verifications_total{outcome=\"revoked\"} 1\n"));
        assert!(text.contains("iblueprint_verifications_total{outcome=\"rate_limited\"} 0\n"));
        let name = "iblueprint_verification_duration_seconds";
        assert!(text.contains(&format!("{name}_bucket{{le=\"0.00000025\"}} 0\n")), "{text}");
        assert!(text.contains(&format!("{name}_bucket{{le=\"0.0000005\"}} 1\n")), "{text}");
        assert!(text.contains(&format!("{name}_bucket{{le=\"0.000005\"}} 2\n")), "{text}");
        assert!(text.contains(&format!("{name}_bucket{{le=\"0.01\"}} 2\n")), "{text}");
        assert!(text.contains(&format!("{name}_bucket{{le=\"+Inf\"}} 3\n")), "{text}");
        assert!(text.contains(&format!("{name}_sum 1.0000033\n")), "{text}");
        assert!(text.contains(&format!("{name}_count 3\n")), "{text}");
        assert!(text.contains("iblueprint_data_file_bytes 4096\n"));
    }

    #[test]
    fn flush_records_sum_whole_counts() {
        let metrics = Metrics::default();
        metrics.record_flush(12, Duration::from_millis(2));
        metrics.record_flush(3, Duration::from_millis(30));
        metrics.record_flush_failure();
        let text = metrics.render(None);
        assert!(text.contains("iblueprint_flush_batch_records_bucket{le=\"10\"} 1\n"), "{text}");
        assert!(text.contains("iblueprint_flush_batch_records_bucket{le=\"100\"} 2\n"), "{text}");
        assert!(text.contains("iblueprint_flush_batch_records_sum 15\n"), "{text}");
        assert!(text.contains("iblueprint_flush_duration_seconds_sum 0.032\n"), "{text}");
        assert!(text.contains("iblueprint_flush_failures_total 1\n"));
    }

    #[test]
    fn out_of_range_statuses_are_clamped_not_lost() {
        let metrics = Metrics::default();
        metrics.record_request("health", 42);
        metrics.record_request("health", 999);
        let text = metrics.render(None);
        assert!(text.contains("route=\"health\",status=\"100\"} 1\n"));
        assert!(text.contains("route=\"health\",status=\"599\"} 1\n"));
    }

    #[test]
    fn verifications_recorded_by_many_threads_add_up_across_stripes() {
        let metrics = Metrics::default();
        std::thread::scope(|threads| {
            for _ in 0..STRIPES + 3 {
                let metrics = &metrics;
                threads.spawn(move || {
                    for _ in 0..100 {
                        metrics.record_verification(Outcome::Ok, Duration::from_micros(1));
                    }
                });
            }
        });
        let text = metrics.render(None);
        let total = (STRIPES + 3) * 100;
        assert!(text.contains(&format!("iblueprint_verifications_total{{outcome=\"ok\"}} {total}\n")), "{text}");
        let name = "iblueprint_verification_duration_seconds";
        assert!(text.contains(&format!("{name}_bucket{{le=\"0.000001\"}} {total}\n")), "{text}");
        assert!(text.contains(&format!("{name}_count {total}\n")), "{text}");
    }

    #[test]
    fn racing_first_requests_of_routes_count_exactly_once_each() {
        let metrics = Metrics::default();
        let routes = ["auth", "me", "keys", "key", "health", "login"];
        std::thread::scope(|threads| {
            for t in 0..8 {
                let metrics = &metrics;
                threads.spawn(move || {
                    for i in 0..600 {
                        metrics.record_request(routes[(i + t) % routes.len()], 200);
                    }
                });
            }
        });
        let text = metrics.render(None);
        for route in routes {
            let series = format!("iblueprint_http_requests_total{{route=\"{route}\",status=\"200\"}} 800\n");
            assert_eq!(text.matches(&series).count(), 1, "{route}:\n{text}");
        }
    }
}
