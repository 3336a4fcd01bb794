//! # iblueprint
//!
//! A self-hosted API-key service in one binary: people create named keys, and every request
//! that carries one is verified (401 bad key, 403 revoked/expired/disabled/scope), with
//! everything kept in one embedded redb file. The product contract is `SPEC.md`; this page
//! is the map of the code.
//!
//! ## Bird's-eye view
//!
//! ```text
//!   main.rs ── cli ──┬── serve ── http (actix) ──┐
//!                    └── admin (users …) ────────┼── service ──┬── domain (pure)
//!                                                │             └── store (redb) ── one .redb file
//!                        config, telemetry ──────┘
//! ```
//!
//! A request comes in through [`http`], whose extractor ([`http::auth`]) parses the bearer
//! token, hashes it, and asks [`service::Service::verify`] to look the hash up in the
//! [`store`] and apply the rules in [`domain::key`]. Changes (create, revoke, rotate, user
//! admin) go through [`service`], which runs them in one redb write transaction together
//! with their audit event, and commits with fsync before anything is acknowledged.
//!
//! ## Code map
//!
//! - [`domain`]: the pure core. Token format ([`domain::token`]), public ids, key names,
//!   scopes, usernames, key status and authorization rules, time arithmetic. `now` and the
//!   RNG are parameters.
//! - [`store`]: the only module that imports redb. Tables, the record codec (format byte +
//!   postcard), schema version, and what is durable when.
//! - [`service`]: the use cases over store + domain: verify, create/list/update/rotate/revoke
//!   keys, add/disable users. Ownership checks, scope ceilings, key limits, audit events.
//!   Verification remembers the keys it verified per worker thread, with copies of what it
//!   reads from them, for as long as no commit has changed what it decides on (the store's
//!   generation), so the hot path writes nothing that another worker reads (but the key's own
//!   rate-limit and usage slots, one cache line each, prefetched together) and, for a known
//!   key, reads no record. Its `prefetch` module holds the crate's only `unsafe`: CPU
//!   prefetch hints, which cannot fault.
//! - [`http`]: the only module that imports actix-web. Routes and their OpenAPI document
//!   (one table, [`http::api`]), the `Authenticated<Scope>` extractor, JSON bodies, RFC 9457
//!   problems, the settings pages, the one middleware every response passes (rate headers,
//!   `Cache-Control` under `/v1`, HSTS over TLS, request metrics, the request log), the hardening knobs ([`http::limits`]), TLS, and the
//!   metrics listener.
//! - [`config`]: settings from flags, `IBLUEPRINT_*` variables, a TOML file and defaults.
//! - [`cli`], [`serve`], [`admin`]: the command line, `serve`, and offline `users …`.
//! - [`backup`], [`import`], [`check`]: a consistent copy beside a running server, loading
//!   a backup (redb or jsonl, whole or merged), and the offline integrity check.
//! - [`client`]: `keys …`, the HTTP(S) client of a running server (reqwest). It never opens
//!   the data file; it refuses a malformed key before connecting.
//! - [`clock`]: the wall clock, read by the shell only and passed down as a value.
//! - [`password`]: argon2id hashing. [`telemetry`]: tracing-subscriber set-up.
//! - [`limiter`]: the in-memory token buckets and their write-behind to the store.
//! - [`metrics`]: lock-free counters and histograms, striped per thread, rendered as
//!   Prometheus text on `metrics.listen` by the HTTP layer.
//!
//! ## Invariants, written as absences
//!
//! - `domain` never imports actix, redb or the clock.
//! - Only `store` knows redb; only `http` knows actix and utoipa (and builds the rustls
//!   server config, [`http::tls`]); only `client` knows reqwest.
//! - No secret is ever stored, logged or put in an error: the store holds blake3 hashes,
//!   `Token` has no `Display`, the request log records key ids and route names only.
//! - No change is acknowledged before its transaction is fsynced.

pub mod admin;
pub mod backup;
pub mod check;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod domain;
pub mod http;
pub mod import;
pub mod limiter;
pub mod metrics;
pub mod password;
pub mod serve;
pub mod service;
pub mod store;
pub mod telemetry;
