//! The use cases: verify a key, and create, list, change, rotate and revoke keys and users.
//!
//! Both front ends call this: the HTTP layer for the API and the settings page, and the
//! offline `iblueprint users …` commands. It owns the policy that spans several records:
//! ownership (another user's key is "not found"), scope ceilings on keys made by keys, the
//! per-user key limit, and writing the audit event in the same transaction as the change.
//! It does not read the clock: every call takes `now`.

use std::sync::Arc;

use crate::domain::ratelimit::Decision;
use crate::domain::{Actor, Denial, Key, KeyName, RateLimit, Timestamp, Token, User};
use crate::limiter::Limiter;
use crate::metrics::{Metrics, Outcome};
use crate::store::{Store, StoreError};
use memo::{Entry, Memo};

mod keys;
mod memo;
mod prefetch;
mod sessions;
mod users;

pub use sessions::{LoginError, SETUP_LINK_SECONDS, SignIn};

pub const MAX_PAGE: usize = 200;
pub const DEFAULT_PAGE: usize = 50;

#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub max_keys_per_user: usize,
    /// Applied to keys created without an explicit `rate_limit`.
    pub default_rate_limit: RateLimit,
    /// How long a settings-page session lasts.
    pub session_ttl_seconds: u64,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            max_keys_per_user: 1000,
            default_rate_limit: RateLimit::UNLIMITED,
            session_ttl_seconds: 12 * 3600,
        }
    }
}

/// A verified caller: the key that was presented, the user who owns it, the key's
/// [`Identity`], and where the key's rate limits stand after this request (`None` for a key
/// without limits). The key's usage counters (`request_count`, `last_used_at`) may be older
/// than the last flush: show them from [`Service::current_key`].
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: Arc<User>,
    pub key: Arc<Key>,
    pub identity: Identity,
    pub rate: Option<Decision>,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor::Key { user_id: self.user.id.clone(), key_id: self.key.id.clone() }
    }
}

/// Who a verified key speaks for, as forward-auth tells a proxy: the key's id, its owner's
/// username and its scopes (space-separated). Rendered once per remembered key, into one
/// allocation: reading it is one cache line where the records it comes from are several.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The three, one after the other.
    text: Arc<str>,
    username_at: usize,
    scopes_at: usize,
}

impl Identity {
    fn new(key: &Key, user: &User) -> Self {
        let (id, username, scopes) = (key.id.as_str(), user.username.as_str(), key.scopes.joined());
        Identity {
            text: [id, username, &scopes].concat().into(),
            username_at: id.len(),
            scopes_at: id.len() + username.len(),
        }
    }

    pub fn key_id(&self) -> &str {
        self.text.get(..self.username_at).unwrap_or_default()
    }

    pub fn username(&self) -> &str {
        self.text.get(self.username_at..self.scopes_at).unwrap_or_default()
    }

    pub fn scopes(&self) -> &str {
        self.text.get(self.scopes_at..).unwrap_or_default()
    }
}

/// A verified caller as forward-auth needs it: no records, only what it answers with.
#[derive(Debug, Clone)]
pub struct Verified {
    pub identity: Identity,
    pub rate: Option<Decision>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Malformed, bad checksum, or unknown: deliberately indistinguishable to the caller.
    #[error("invalid key")]
    Invalid,
    /// A known key that may not be used now; its id is public and goes to the request log.
    #[error("key {} refused: {denial:?}", identity.key_id())]
    Denied { identity: Identity, denial: Denial },
    /// A bucket is empty; nothing was taken from any bucket.
    #[error("key {} is rate limited", identity.key_id())]
    RateLimited { identity: Identity, decision: Box<Decision> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("not found")]
    NotFound,
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("{0}")]
    Conflict(String),
    /// The limit, not the count: a lowered `max_keys_per_user` leaves users above it.
    #[error("this user already has the most active keys allowed ({0}); revoke one first")]
    KeyLimitReached(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the operating system's random number generator failed: {0}")]
    Random(#[from] getrandom::Error),
    #[error("{0}")]
    Password(String),
}

impl ServiceError {
    pub fn invalid(field: &'static str, message: impl ToString) -> Self {
        ServiceError::Invalid { field, message: message.to_string() }
    }
}

/// A key together with its secret, returned exactly once, at creation.
pub struct NewKey {
    pub key: Key,
    pub token: Token,
}

/// The changes PATCH may make; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct KeyPatch {
    pub name: Option<KeyName>,
    pub rate_limit: Option<RateLimit>,
}

/// One page of keys, newest first.
pub struct KeyPage {
    pub keys: Vec<Key>,
    pub next_cursor: Option<String>,
}

pub struct Service {
    store: Arc<Store>,
    limiter: Arc<Limiter>,
    metrics: Arc<Metrics>,
    settings: ServiceSettings,
    login_guard: sessions::LoginGuard,
    setup: sessions::SetupLink,
}

impl Service {
    pub fn new(store: Store, settings: ServiceSettings) -> Self {
        let store = Arc::new(store);
        let metrics = Arc::new(Metrics::default());
        Service {
            limiter: Arc::new(Limiter::new(Arc::clone(&store), Arc::clone(&metrics))),
            metrics,
            store,
            settings,
            login_guard: sessions::LoginGuard::default(),
            setup: sessions::SetupLink::default(),
        }
    }

    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    /// The check behind every authenticated request: hash, look up (in this thread's memo of
    /// keys verified since the last commit that changed a verification, else parse and read
    /// the store), authorize, then take a token from the key's rate-limit buckets and count
    /// the use. Malformed tokens are refused before the database is touched; refused requests
    /// spend no budget. The caller records the outcome ([`verification_outcome`]) with the
    /// time it took.
    pub fn verify(&self, presented: &[u8], required: &[&str], now_ms: u64) -> Result<Principal, VerifyError> {
        self.verify_with(presented, required, now_ms, |entry, rate| Principal {
            user: Arc::clone(&entry.user),
            key: Arc::clone(&entry.key),
            identity: entry.identity.clone(),
            rate,
        })
    }

    /// [`Service::verify`] for forward-auth, which needs only the key's identity: the records
    /// themselves are not touched on a remembered key (see `memo`).
    pub fn verify_identity(&self, presented: &[u8], required: &[&str], now_ms: u64) -> Result<Verified, VerifyError> {
        self.verify_with(presented, required, now_ms, |entry, rate| Verified { identity: entry.identity.clone(), rate })
    }

    fn verify_with<T>(
        &self,
        presented: &[u8],
        required: &[&str],
        now_ms: u64,
        verified: impl FnOnce(&Entry, Option<Decision>) -> T,
    ) -> Result<T, VerifyError> {
        let now = Timestamp::from_millis(now_ms);
        // Read before any lookup: see `memo`.
        let generation = self.store.generation();
        Memo::with(generation, |memo| {
            let remembered = Token::hash_unparsed(presented);
            let entry = match remembered.as_ref().and_then(|hash| memo.get_mut(hash)) {
                Some(entry) => entry,
                None => {
                    let token = std::str::from_utf8(presented)
                        .ok()
                        .and_then(|presented| Token::parse(presented).ok())
                        .ok_or(VerifyError::Invalid)?;
                    let hash = remembered.unwrap_or_else(|| token.hash());
                    let (key, user) = self.store.key_and_owner(&hash)?.ok_or(VerifyError::Invalid)?;
                    let limit_slot = if key.rate_limit.is_unlimited() {
                        None
                    } else {
                        Some(self.limiter.slot_of(&key.limit_id, now_ms)?)
                    };
                    let usage = self.limiter.usage_of(&key.id);
                    memo.remember(hash, Entry::new(key, user, limit_slot, usage))
                }
            };
            // From the entry's copies: the records themselves are not read.
            entry
                .access
                .authorize(entry.owner_disabled, required, now)
                .map_err(|denial| VerifyError::Denied { identity: entry.identity.clone(), denial })?;
            let rate = match &mut entry.limit {
                Some((limit, slot)) => Some(self.limiter.take(slot, *limit, &entry.key.limit_id, now_ms)?),
                None => None,
            };
            if let Some(decision) = rate.filter(|d| !d.allowed) {
                return Err(VerifyError::RateLimited {
                    identity: entry.identity.clone(),
                    decision: Box::new(decision),
                });
            }
            self.limiter.count_use(&mut entry.usage, &entry.key.id, now_ms);
            Ok(verified(entry, rate))
        })
    }
}

/// How a verification ended, as the metrics count it: by its error, if it failed.
pub fn verification_outcome(error: Option<&VerifyError>) -> Outcome {
    match error {
        None => Outcome::Ok,
        Some(VerifyError::Invalid) => Outcome::Invalid,
        Some(VerifyError::Denied { denial, .. }) => match denial {
            Denial::Revoked => Outcome::Revoked,
            Denial::Expired => Outcome::Expired,
            Denial::UserDisabled => Outcome::UserDisabled,
            Denial::InsufficientScope { .. } => Outcome::InsufficientScope,
        },
        Some(VerifyError::RateLimited { .. }) => Outcome::RateLimited,
        Some(VerifyError::Store(_)) => Outcome::Error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Action, AuditEvent, KeySpec, RateLimit, Scopes};

    const NOW_MS: u64 = 1_700_000_000_000;

    /// A service on a fresh data file, with the user `alice`, at [`NOW_MS`].
    fn service_with_alice() -> (tempfile::TempDir, Service, User, Timestamp) {
        let dir = tempfile::tempdir().unwrap();
        let service = Service::new(Store::open(&dir.path().join("data.redb")).unwrap(), ServiceSettings::default());
        let now = Timestamp::from_millis(NOW_MS);
        let alice = service.add_user("alice", "correct horse battery", false, Actor::Cli, now).unwrap();
        (dir, service, alice, now)
    }

    /// A key named `name` with no limits, no expiry and no scopes.
    fn spec(name: &str) -> KeySpec {
        KeySpec {
            name: KeyName::parse(name).unwrap(),
            expires_at: None,
            rate_limit: RateLimit::UNLIMITED,
            scopes: Scopes::default(),
        }
    }

    /// The per-thread memo answers only from the current state: every change that a
    /// verification depends on is seen by the very next verification on the same thread,
    /// which had the key memoised.
    #[test]
    fn verification_on_a_thread_that_memoised_the_key_sees_every_change_at_once() {
        let (_dir, service, alice, now) = service_with_alice();
        let now_ms = NOW_MS;
        let denial = |result: Result<Principal, VerifyError>| match result {
            Err(VerifyError::Denied { denial, .. }) => Some(denial),
            Err(VerifyError::RateLimited { .. }) => None,
            other => panic!("expected a refusal, got {other:?}"),
        };

        let limited = service.create_key(&alice.id, spec("limited"), None, Actor::Cli, now).unwrap();
        let secret = limited.token.expose_secret();
        assert!(service.verify(secret.as_bytes(), &[], now_ms).unwrap().rate.is_none(), "unlimited at first");
        let patch = KeyPatch { name: None, rate_limit: Some(RateLimit::new(Some(1), None).unwrap()) };
        service.update_key(&alice.id, limited.key.id.as_str(), patch, Actor::Cli, now_ms).unwrap();
        assert!(
            service.verify(secret.as_bytes(), &[], now_ms).unwrap().rate.is_some_and(|d| d.allowed),
            "the new limit applies"
        );
        assert_eq!(denial(service.verify(secret.as_bytes(), &[], now_ms)), None, "and its one token is spent");

        let revoked = service.create_key(&alice.id, spec("revoked"), None, Actor::Cli, now).unwrap();
        let secret = revoked.token.expose_secret();
        service.verify(secret.as_bytes(), &[], now_ms).unwrap();
        service.revoke_key(&alice.id, revoked.key.id.as_str(), Actor::Cli, now).unwrap();
        assert_eq!(denial(service.verify(secret.as_bytes(), &[], now_ms)), Some(Denial::Revoked));

        let kept = service.create_key(&alice.id, spec("kept"), None, Actor::Cli, now).unwrap();
        let secret = kept.token.expose_secret();
        service.verify(secret.as_bytes(), &[], now_ms).unwrap();
        service.set_disabled("alice", true, Actor::Cli, now).unwrap();
        assert_eq!(denial(service.verify(secret.as_bytes(), &[], now_ms)), Some(Denial::UserDisabled));
        service.set_disabled("alice", false, Actor::Cli, now).unwrap();
        assert!(service.verify(secret.as_bytes(), &[], now_ms).is_ok());
    }

    #[test]
    fn an_identity_is_the_key_id_the_username_and_the_scopes() {
        let user = crate::domain::fixtures::user("alice");
        let mut key = crate::domain::fixtures::key(&user.id, RateLimit::UNLIMITED);
        let identity = Identity::new(&key, &user);
        assert_eq!((identity.key_id(), identity.username(), identity.scopes()), (key.id.as_str(), "alice", ""));
        key.scopes = Scopes::parse(&["keys:write", "keys:read"]).unwrap();
        let identity = Identity::new(&key, &user);
        assert_eq!(identity.key_id(), key.id.as_str());
        assert_eq!(identity.username(), "alice");
        assert_eq!(identity.scopes(), key.scopes.joined());
        assert!(identity.scopes().contains("keys:read") && identity.scopes().contains("keys:write"));
    }

    /// Disabling a disabled user, or enabling an enabled one, succeeds and writes no audit
    /// event: the log records changes, not requests for them.
    #[test]
    fn a_user_change_that_changes_nothing_is_not_audited() {
        let (_dir, service, alice, now) = service_with_alice();
        let count = |action: Action| {
            service.audit_for(&alice, 100).unwrap().iter().filter(|event| event.action == action).count()
        };
        service.set_disabled("alice", false, Actor::Cli, now).unwrap();
        assert_eq!(count(Action::UserEnabled), 0, "alice was enabled already");
        for _ in 0..3 {
            assert!(service.set_disabled("alice", true, Actor::Cli, now).unwrap().is_disabled());
        }
        assert_eq!(count(Action::UserDisabled), 1);
        let later = now.plus_seconds(60);
        let disabled_at = service.set_disabled("alice", true, Actor::Cli, later).unwrap().disabled_at;
        assert_eq!(disabled_at, Some(now), "the first disabling's time stands");
    }

    /// A changed limit keeps the level the key had at the change, refilled at the old rate
    /// up to then: the new rate pays only for the time after it. Also after a restart, when
    /// the change is the first thing to touch the key's buckets.
    #[test]
    fn a_changed_limit_keeps_the_level_of_the_moment_it_changed() {
        let (dir, service, alice, now) = service_with_alice();
        let hourly = |n| KeyPatch { name: None, rate_limit: Some(RateLimit::new(Some(n), None).unwrap()) };
        let rate_limited = |result: Result<Principal, VerifyError>| match result {
            Err(VerifyError::RateLimited { decision, .. }) => decision.retry_after,
            other => panic!("expected a 429, got {other:?}"),
        };
        let limited = KeySpec { rate_limit: RateLimit::new(Some(1), None).unwrap(), ..spec("hourly") };
        let created = service.create_key(&alice.id, limited, None, Actor::Cli, now).unwrap();
        let (id, secret) = (created.key.id.as_str(), created.token.expose_secret().as_bytes());
        assert!(service.verify(secret, &[], NOW_MS).is_ok(), "its one token");

        // Half an hour later, 1 per hour becomes 1 per second: half a token came back at the
        // old rate, and the next whole one is half a second away at the new.
        let half_hour = NOW_MS + 1_800_000;
        service.update_key(&alice.id, id, hourly(3600), Actor::Cli, half_hour).unwrap();
        assert_eq!(rate_limited(service.verify(secret, &[], half_hour)), 1);
        assert!(service.verify(secret, &[], half_hour + 500).is_ok(), "then the new rate applies");

        // After a restart, with the levels only in the data file: empty at +500 ms, then
        // lowered back to 1 per hour 100 ms later. Those 100 ms at 1 per second gave a tenth
        // of a token, so the next is 54 minutes away, not the full hour of the new rate.
        service.limiter().flush(half_hour + 500).unwrap();
        drop(service);
        let service = Service::new(Store::open(&dir.path().join("data.redb")).unwrap(), ServiceSettings::default());
        service.update_key(&alice.id, id, hourly(1), Actor::Cli, half_hour + 600).unwrap();
        assert_eq!(rate_limited(service.verify(secret, &[], half_hour + 600)), 3240);
    }

    /// The limiter's flush changes nothing a verification decides on, so the memo of
    /// verified keys survives it (instead of every key in use being read from the store again
    /// after every flush), and a change after the flush is still seen at once.
    #[test]
    fn a_flush_keeps_the_memo_and_a_change_after_it_is_still_seen() {
        let (_dir, service, alice, now) = service_with_alice();
        let now_ms = NOW_MS;
        let limited = KeySpec { rate_limit: RateLimit::new(Some(10), None).unwrap(), ..spec("limited") };
        let made = service.create_key(&alice.id, limited, None, Actor::Cli, now).unwrap();
        let secret = made.token.expose_secret().as_bytes();

        let generation = service.store().generation();
        let verified = service.verify_identity(secret, &[], now_ms).unwrap();
        assert_eq!(verified.identity.key_id(), made.key.id.as_str());
        assert_eq!(verified.identity.username(), "alice");
        let stats = service.limiter().flush(now_ms).unwrap();
        assert_eq!((stats.buckets, stats.keys_used), (1, 1), "the flush wrote levels and usage");
        assert_eq!(service.store().generation(), generation, "and left the memo valid");
        let shown = service.key_of(&alice.id, made.key.id.as_str()).unwrap();
        assert_eq!(shown.request_count, 1, "while the store has the new usage");

        service.revoke_key(&alice.id, made.key.id.as_str(), Actor::Cli, now).unwrap();
        assert_ne!(service.store().generation(), generation);
        assert!(matches!(
            service.verify_identity(secret, &[], now_ms),
            Err(VerifyError::Denied { denial: Denial::Revoked, .. })
        ));
    }

    /// The audit trail is part of every change: when the event cannot be written, the change
    /// it records is not made either, and the caller gets the error.
    #[test]
    fn a_change_whose_audit_event_cannot_be_written_is_not_made() {
        let (_dir, service, alice, now) = service_with_alice();
        let key = service.create_key(&alice.id, spec("ci"), None, Actor::Cli, now).unwrap().key;
        let last = AuditEvent {
            at: now,
            actor: Actor::Cli,
            action: Action::KeyCreated,
            user_id: Some(alice.id.clone()),
            key_id: Some(key.id.clone()),
        };
        service.store.write(|tx| tx.set_last_audit_seq(u64::MAX, &last)).unwrap();

        let later = Timestamp::from_unix(1_700_000_100);
        let refused = service.revoke_key(&alice.id, key.id.as_str(), Actor::Cli, later);
        assert!(matches!(refused, Err(ServiceError::Store(StoreError::Corrupt { table: "audit", .. }))), "{refused:?}");
        assert_eq!(service.key_of(&alice.id, key.id.as_str()).unwrap().revoked_at, None, "the revocation was not made");
        assert!(service.create_key(&alice.id, spec("two"), None, Actor::Cli, later).is_err());
        let page = service.list_keys(&alice.id, None, 10).unwrap();
        assert_eq!(page.keys.len(), 1, "the second key was not created");
    }
}
