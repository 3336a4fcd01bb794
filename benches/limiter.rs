//! Per-check cost of the in-memory rate limiter, [`Limiter::check`], against the keyed
//! limiter of the `governor` crate (GCRA over a `DashMap`), the usual Rust choice.
//!
//! What is measured (criterion group `limiter`), single-threaded, every check admitted
//! (limits of 10⁹ per hour and per day, so no bucket ever runs dry):
//!
//! - `iblueprint_1000_keys`: `Limiter::check` over 1,000 distinct keys with a rotating
//!   index, each key limited per hour *and* per day (two buckets per check, as a key with
//!   both limits has), reading the wall clock once per check as governor does.
//! - `iblueprint_1000_keys_hour_only`: the same with an hourly limit only: one bucket, the
//!   same shape as the governor quota below.
//! - `iblueprint_1000_keys_fixed_now`: as `iblueprint_1000_keys` but with a constant
//!   `now_ms`: the limiter alone, without the clock read.
//! - `iblueprint_1000_keys_held_slots`: as `iblueprint_1000_keys_fixed_now`, through
//!   [`Limiter::take`] on slots looked up once: what the server does, whose per-thread memo
//!   keeps each verified key's slot (no map lookup, no key hashing).
//! - `governor_1000_keys`: `RateLimiter::keyed(Quota::per_hour(10⁹)).check_key(&key)` over
//!   the same 1,000 keys (governor reads its own clock, quanta, on every check).
//! - `iblueprint_1_key`, `governor_1_key`: one key checked over and over: the uncontended
//!   single-key case.
//! - `clock_now_millis`: [`iblueprint::clock::now_millis`] alone (the wall-clock read the
//!   `iblueprint_*` cases other than `fixed_now` include). In the server the clock is read
//!   once per request, before verification, and handed down, so a check there costs about
//!   `iblueprint_1000_keys_fixed_now`; governor reads its own clock (quanta, TSC) inside
//!   every check, so the clock-reading cases are the like-for-like comparison.
//!
//! Both limiters key on the same type ([`KeyId`], a `String` newtype) and every key is
//! checked once before measuring, so the loop never reads the store (iblueprint loads a
//! key's saved levels on its first use) or inserts into a map (governor).
//!
//! At the end the medians are read back from criterion's `estimates.json` files and
//! printed as a Markdown table with the iblueprint / governor ratios; the table is also
//! written to `target/criterion/limiter/summary.md`.
//!
//! Run with:
//!
//! ```text
//! cargo bench --bench limiter
//! ```
//!
//! Target (issue 3): within 2× of governor per check, i.e. median
//! `iblueprint_1000_keys` / median `governor_1000_keys` ≤ 2.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use criterion::Criterion;
use getrandom::SysRng;
use governor::{Quota, RateLimiter};
use iblueprint::domain::{Key, KeyId, KeyName, KeySpec, RateLimit, Scopes, Token, UserId};
use iblueprint::limiter::Limiter;
use iblueprint::store::Store;

const KEYS: usize = 1_000;
/// The highest limit a key may have; high enough that nothing is refused while measuring.
const LIMIT: u32 = 1_000_000_000;

const GROUP: &str = "limiter";
/// (numerator, denominator, label) pairs for the summary's ratios.
const RATIOS: &[(&str, &str, &str)] = &[
    ("iblueprint_1000_keys", "governor_1000_keys", "1,000 keys, hour+day vs governor (target ≤ 2)"),
    ("iblueprint_1000_keys_hour_only", "governor_1000_keys", "1,000 keys, hour only vs governor"),
    ("iblueprint_1000_keys_fixed_now", "governor_1000_keys", "1,000 keys, hour+day, no clock read vs governor"),
    (
        "iblueprint_1000_keys_held_slots",
        "governor_1000_keys",
        "1,000 keys, hour+day, slots held (the server's path) vs governor",
    ),
    ("iblueprint_1_key", "governor_1_key", "1 key, hour+day vs governor"),
];
const BENCHES: &[&str] = &[
    "iblueprint_1000_keys",
    "iblueprint_1000_keys_hour_only",
    "iblueprint_1000_keys_fixed_now",
    "iblueprint_1000_keys_held_slots",
    "governor_1000_keys",
    "iblueprint_1_key",
    "governor_1_key",
    "clock_now_millis",
];

fn keys(count: usize, limit: RateLimit) -> Vec<Key> {
    let user = UserId::generate(&mut SysRng).expect("rng");
    let now = iblueprint::clock::now();
    (0..count)
        .map(|_| {
            let token = Token::generate(&mut SysRng).expect("rng");
            let spec = KeySpec {
                name: KeyName::parse("bench").expect("key name"),
                expires_at: None,
                rate_limit: limit,
                scopes: Scopes::default(),
            };
            Key::new(KeyId::generate(&mut SysRng).expect("rng"), user.clone(), &token, spec, now)
        })
        .collect()
}

/// A limiter over an empty temporary store, with every key's buckets already in memory.
fn warm_limiter(store: &Arc<Store>, keys: &[Key]) -> Limiter {
    let limiter = Limiter::new(Arc::clone(store), Arc::default());
    let now = iblueprint::clock::now_millis();
    for key in keys {
        assert!(limiter.check(key, now).expect("check").allowed);
    }
    limiter
}

type Governor = governor::DefaultKeyedRateLimiter<KeyId>;

fn warm_governor(keys: &[Key]) -> Governor {
    let limiter = RateLimiter::keyed(Quota::per_hour(NonZeroU32::new(LIMIT).expect("non-zero")));
    for key in keys {
        assert!(limiter.check_key(&key.id).is_ok());
    }
    limiter
}

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

fn bench_iblueprint(g: &mut Group<'_>, id: &str, limiter: &Limiter, keys: &[Key], fixed_now: Option<u64>) {
    let mut i = 0;
    g.bench_function(id, |b| {
        b.iter(|| {
            i += 1;
            if i == keys.len() {
                i = 0;
            }
            let now = fixed_now.unwrap_or_else(iblueprint::clock::now_millis);
            black_box(limiter.check(black_box(&keys[i]), now).expect("check").allowed)
        })
    });
    // Everything measured must have been admitted: a refusal is a different code path.
    let now = fixed_now.unwrap_or_else(iblueprint::clock::now_millis);
    assert!(keys.iter().all(|k| limiter.check(k, now).expect("check").allowed), "{id}: a check was refused");
}

fn bench_governor(g: &mut Group<'_>, id: &str, limiter: &Governor, keys: &[Key]) {
    let mut i = 0;
    g.bench_function(id, |b| {
        b.iter(|| {
            i += 1;
            if i == keys.len() {
                i = 0;
            }
            black_box(limiter.check_key(black_box(&keys[i].id)).is_ok())
        })
    });
    assert!(keys.iter().all(|k| limiter.check_key(&k.id).is_ok()), "{id}: a check was refused");
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(Store::open(&dir.path().join("limiter.redb")).expect("open store"));
    let both = RateLimit::new(Some(u64::from(LIMIT)), Some(u64::from(LIMIT))).expect("limit");
    let hour = RateLimit::new(Some(u64::from(LIMIT)), None).expect("limit");
    let mut g = c.benchmark_group(GROUP);
    // Longer than criterion's default 5 s: the machine this runs on is often shared.
    g.measurement_time(std::time::Duration::from_secs(10));

    let both_keys = keys(KEYS, both);
    let limiter = warm_limiter(&store, &both_keys);
    bench_iblueprint(&mut g, "iblueprint_1000_keys", &limiter, &both_keys, None);

    let hour_keys = keys(KEYS, hour);
    let limiter = warm_limiter(&store, &hour_keys);
    bench_iblueprint(&mut g, "iblueprint_1000_keys_hour_only", &limiter, &hour_keys, None);

    // A fixed instant never refills, but 10⁹ tokens per key outlast any measurement.
    let limiter = warm_limiter(&store, &both_keys);
    bench_iblueprint(
        &mut g,
        "iblueprint_1000_keys_fixed_now",
        &limiter,
        &both_keys,
        Some(iblueprint::clock::now_millis()),
    );

    let limiter = warm_limiter(&store, &both_keys);
    let now = iblueprint::clock::now_millis();
    let mut slots: Vec<_> = both_keys.iter().map(|key| limiter.slot_of(&key.limit_id, now).expect("slot")).collect();
    let mut i = 0;
    g.bench_function("iblueprint_1000_keys_held_slots", |b| {
        b.iter(|| {
            i = (i + 1) % both_keys.len();
            black_box(
                limiter
                    .take(&mut slots[i], both_keys[i].rate_limit, black_box(&both_keys[i].limit_id), now)
                    .expect("take")
                    .allowed,
            )
        })
    });
    // As in `bench_iblueprint`: everything measured must have been admitted.
    assert!(
        both_keys
            .iter()
            .zip(&mut slots)
            .all(|(key, slot)| limiter.take(slot, key.rate_limit, &key.limit_id, now).expect("take").allowed),
        "iblueprint_1000_keys_held_slots: a check was refused"
    );

    let governor = warm_governor(&both_keys);
    bench_governor(&mut g, "governor_1000_keys", &governor, &both_keys);

    let one = keys(1, both);
    let limiter = warm_limiter(&store, &one);
    bench_iblueprint(&mut g, "iblueprint_1_key", &limiter, &one, None);
    let governor = warm_governor(&one);
    bench_governor(&mut g, "governor_1_key", &governor, &one);

    g.bench_function("clock_now_millis", |b| b.iter(iblueprint::clock::now_millis));
    g.finish();
}

fn main() {
    let started = SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
    summarize(started);
}

/// Where criterion writes its results, found the way criterion finds it.
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    let from_metadata = std::env::var_os("CARGO").and_then(|cargo| {
        let out =
            std::process::Command::new(cargo).args(["metadata", "--format-version", "1", "--no-deps"]).output().ok()?;
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        meta.get("target_directory")?.as_str().map(|t| PathBuf::from(t).join("criterion"))
    });
    from_metadata.unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// The median (ns) of one benchmark, if criterion wrote it during this run.
fn median_ns(dir: &Path, id: &str, since: SystemTime) -> Option<f64> {
    let path = dir.join(GROUP).join(id).join("new").join("estimates.json");
    let fresh = std::fs::metadata(&path).and_then(|m| m.modified()).is_ok_and(|t| t >= since);
    if !fresh {
        return None;
    }
    let estimates: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    estimates.get("median")?.get("point_estimate")?.as_f64()
}

fn summarize(since: SystemTime) {
    let dir = criterion_dir();
    // Nothing measured (e.g. `--profile-time`, or a filter matching nothing): no table.
    if BENCHES.iter().all(|id| median_ns(&dir, id, since).is_none()) {
        return;
    }
    let mut out =
        String::from("\n## limiter: median ns per check\n\n| benchmark | median ns/check |\n| --- | ---: |\n");
    for id in BENCHES {
        match median_ns(&dir, id, since) {
            Some(ns) => out.push_str(&format!("| {id} | {ns:.1} |\n")),
            None => out.push_str(&format!("| {id} | (not run) |\n")),
        }
    }
    out.push_str("\n| ratio (iblueprint / governor) | value |\n| --- | ---: |\n");
    for (num, den, label) in RATIOS {
        if let (Some(n), Some(d)) = (median_ns(&dir, num, since), median_ns(&dir, den, since)) {
            out.push_str(&format!("| {label} | {:.2}× |\n", n / d));
        }
    }
    print!("{out}");
    let summary = dir.join(GROUP).join("summary.md");
    if std::fs::create_dir_all(dir.join(GROUP)).and_then(|()| std::fs::write(&summary, &out)).is_ok() {
        println!("\n(written to {})", summary.display());
    }
}
