//! Benchmarks of the verification path, [`Service::verify`], against a store holding
//! 100,000 keys: the check that runs on every authenticated request.
//!
//! What is measured (criterion group `verify`):
//!
//! - `parse`: [`Token::parse`] alone (prefix, length, alphabet, CRC-32 checksum).
//! - `parse_and_hash`: parse plus the blake3 hash that is the stored form of a token.
//! - `verify_hit`: the whole of `Service::verify` with no required scopes, cycling through
//!   1,000 known tokens spread across the key set, as a worker does between commits: hash,
//!   the thread's memo of verified keys (filled by the first round; the `key_hashes` →
//!   `keys` → owner lookups and decoding happen only on a miss), `Key::authorize`, and the
//!   limiter's in-memory usage count. The keys are unlimited, so the rate-limit buckets
//!   are skipped; no flush (no commit) runs during the measurement.
//! - `verify_unknown_well_formed`: a token with a valid checksum that is not in the store
//!   (parse, hash, one index miss).
//! - `verify_malformed`: a token with a bad checksum, refused before the store is touched.
//!
//! Set-up (not measured, its duration printed to stderr): a temporary data file, one user,
//! and 100,000 keys inserted in 10 write transactions of 10,000 each.
//!
//! Run with:
//!
//! ```text
//! cargo bench --bench verify
//! ```
//!
//! Target: median `verify_hit` under 2 µs with 100,000 keys in the store.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use getrandom::SysRng;
use iblueprint::domain::{Key, KeyId, KeyName, KeySpec, RateLimit, Scopes, Timestamp, Token, User, UserId, Username};
use iblueprint::service::{Service, ServiceSettings};
use iblueprint::store::{Store, StoreError};

const KEYS: usize = 100_000;
const TXNS: usize = 10;
const PER_TXN: usize = KEYS / TXNS;
/// Keep every `KEYS / KNOWN`-th secret, so the lookups are spread across the whole set.
const KNOWN: usize = 1_000;

/// A fixed argon2id PHC string: verification never looks at it, and hashing a real
/// password would only slow the set-up down.
const PASSWORD_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$RdescudvJCsgt3ub+b+dWRWJTmaaJObG0GXLqAl4Gyk";

struct Fixture {
    service: Service,
    /// Secrets of keys in the store, spread across the key set.
    known: Vec<String>,
    /// A well-formed token (valid checksum) that is not in the store.
    unknown: String,
    /// A token whose checksum does not match.
    malformed: String,
    // Dropped last: the data file lives here.
    _dir: tempfile::TempDir,
}

fn set_up() -> Fixture {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("bench.redb")).expect("open store");
    let now_ms = iblueprint::clock::now_millis();
    let now = Timestamp::from_millis(now_ms);

    let user = User {
        id: UserId::generate(&mut SysRng).expect("rng"),
        username: Username::parse("bench").expect("username"),
        password_hash: PASSWORD_HASH.to_owned(),
        is_admin: false,
        created_at: now,
        disabled_at: None,
    };
    store.write(|tx| tx.put_user(&user)).expect("put user");

    let spec = KeySpec {
        name: KeyName::parse("bench").expect("key name"),
        expires_at: None,
        rate_limit: RateLimit::UNLIMITED,
        scopes: Scopes::parse(&["keys:read"]).expect("scopes"),
    };
    let mut known = Vec::with_capacity(KNOWN);
    for batch in 0..TXNS {
        store
            .write(|tx| {
                for i in 0..PER_TXN {
                    let token = Token::generate(&mut SysRng).expect("rng");
                    let id = KeyId::generate(&mut SysRng).expect("rng");
                    let mut key = Key::new(id, user.id.clone(), &token, spec.clone(), now);
                    tx.insert_key(&mut key)?;
                    if (batch * PER_TXN + i).is_multiple_of(KEYS / KNOWN) {
                        known.push(token.expose_secret().to_owned());
                    }
                }
                Ok::<_, StoreError>(())
            })
            .expect("insert keys");
    }

    let unknown = Token::generate(&mut SysRng).expect("rng").expose_secret().to_owned();
    let malformed = {
        // Change one random character: same shape, wrong checksum.
        let mut bytes = Token::generate(&mut SysRng).expect("rng").expose_secret().as_bytes().to_vec();
        bytes[10] = if bytes[10] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).expect("ascii")
    };

    let service = Service::new(store, ServiceSettings::default());

    // Sanity: the fixture is what the benchmarks claim it is.
    assert_eq!(known.len(), KNOWN);
    for secret in &known {
        service.verify(secret.as_bytes(), &[], now_ms).expect("known token verifies");
    }
    assert!(service.verify(unknown.as_bytes(), &[], now_ms).is_err());
    assert_eq!(Token::parse(&malformed).unwrap_err(), iblueprint::domain::TokenError::ChecksumMismatch);

    eprintln!("verify bench set-up: {KEYS} keys in {TXNS} write transactions took {:.2?}", started.elapsed());
    Fixture { service, known, unknown, malformed, _dir: dir }
}

fn bench_verify(c: &mut Criterion) {
    let fx = set_up();
    let now_ms = iblueprint::clock::now_millis();
    let mut group = c.benchmark_group("verify");

    let sample = fx.known[0].as_str();
    group.bench_function("parse", |b| b.iter(|| Token::parse(black_box(sample))));
    group.bench_function("parse_and_hash", |b| b.iter(|| Token::parse(black_box(sample)).map(|token| token.hash())));

    let mut next = 0usize;
    group.bench_function("verify_hit", |b| {
        b.iter(|| {
            next = (next + 1) % fx.known.len();
            fx.service.verify(black_box(fx.known[next].as_bytes()), &[], now_ms)
        })
    });
    group.bench_function("verify_unknown_well_formed", |b| {
        b.iter(|| fx.service.verify(black_box(fx.unknown.as_bytes()), &[], now_ms))
    });
    group.bench_function("verify_malformed", |b| {
        b.iter(|| fx.service.verify(black_box(fx.malformed.as_bytes()), &[], now_ms))
    });

    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = bench_verify
}
criterion_main!(benches);
