//! Operator instruments, rendered as Prometheus text on the `metrics.listen` address.
//!
//! Recording happens on the verification hot path, so every instrument is a set of plain
//! atomics: recording is a relaxed add with no lock and no allocation, and the work of
//! adding things up happens only when a scraper asks. This module knows neither actix nor
//! redb: [`crate::service`] and [`crate::limiter`] record into it, the HTTP layer reports
//! requests by route name and status, and serves [`Metrics::render`].

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
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

pub struct Metrics {
    /// Filled in order, each slot once, the first time a route answers. Reading a filled
    /// slot is a plain atomic load, so counting takes no lock.
    requests: Box<[OnceLock<RouteCounters>]>,
    verifications: [AtomicU64; Outcome::ALL.len()],
    verify_seconds: Histogram,
    flush_seconds: Histogram,
    flush_records: Histogram,
    flush_failures: AtomicU64,
}

/// Requests answered for one named route, by status code.
struct RouteCounters {
    route: Box<str>,
    by_status: Box<[AtomicU64]>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: (0..ROUTE_SLOTS).map(|_| OnceLock::new()).collect(),
            verifications: Default::default(),
            verify_seconds: Histogram::new(VERIFY_SECONDS, Unit::Seconds),
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
        let status = usize::from(status.clamp(STATUS_MIN, STATUS_MIN + STATUSES as u16 - 1) - STATUS_MIN);
        for slot in self.requests.iter() {
            // The first request of a route claims the first free slot. Racing claims of the
            // same free slot leave one winner; a loser finds its name there or moves on, so
            // no name ever gets two slots.
            let counters = slot.get_or_init(|| RouteCounters {
                route: route.into(),
                by_status: (0..STATUSES).map(|_| AtomicU64::new(0)).collect(),
            });
            if &*counters.route == route {
                counters.by_status[status].fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        debug_assert!(false, "more route names than ROUTE_SLOTS");
    }

    pub fn record_verification(&self, outcome: Outcome, took: Duration) {
        self.verifications[outcome as usize].fetch_add(1, Ordering::Relaxed);
        self.verify_seconds.observe(took);
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
    /// data file's size, which the caller reads at scrape time.
    pub fn render(&self, data_file_bytes: Option<u64>) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP iblueprint_http_requests_total HTTP requests answered, by route name and status.\n");
        out.push_str("# TYPE iblueprint_http_requests_total counter\n");
        {
            let mut sorted: Vec<&RouteCounters> = self.requests.iter().filter_map(OnceLock::get).collect();
            sorted.sort_by(|a, b| a.route.cmp(&b.route));
            for counters in sorted {
                for (offset, count) in counters.by_status.iter().enumerate() {
                    let count = count.load(Ordering::Relaxed);
                    if count > 0 {
                        let status = usize::from(STATUS_MIN) + offset;
                        let _ = writeln!(
                            out,
                            "iblueprint_http_requests_total{{route=\"{}\",status=\"{status}\"}} {count}",
                            counters.route
                        );
                    }
                }
            }
        }
        out.push_str("# HELP iblueprint_verifications_total Bearer-key verifications, by outcome.\n");
        out.push_str("# TYPE iblueprint_verifications_total counter\n");
        for outcome in Outcome::ALL {
            let count = self.verifications[outcome as usize].load(Ordering::Relaxed);
            let _ = writeln!(out, "iblueprint_verifications_total{{outcome=\"{}\"}} {count}", outcome.label());
        }
        self.verify_seconds.render(
            &mut out,
            "iblueprint_verification_duration_seconds",
            "Time to verify a bearer key: parse, hash, look up, authorize, rate limit.",
        );
        self.flush_seconds.render(
            &mut out,
            "iblueprint_flush_duration_seconds",
            "Time to write the rate-limit levels and usage counters behind, one transaction each.",
        );
        self.flush_records.render(
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

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            match self.bounds.get(i) {
                Some(bound) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let sum = self.sum.load(Ordering::Relaxed);
        match self.unit {
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
