//! The use cases: verify a key, and create, list, change, rotate and revoke keys and users.
//!
//! Both front ends call this: the HTTP layer for the API and the settings page, and the
//! offline `iblueprint users …` commands. It owns the policy that spans several records:
//! ownership (another user's key is "not found"), scope ceilings on keys made by keys, the
//! per-user key limit, and writing the audit event in the same transaction as the change.
//! It does not read the clock: every call takes `now`.

use std::sync::Arc;

use getrandom::SysRng;

use crate::domain::ratelimit::Decision;
use crate::domain::{
    Action, Actor, AuditEvent, Denial, Key, KeyChangeError, KeyId, KeyName, KeySpec, KeyStatus, RateLimit, Scopes,
    Timestamp, Token, User, UserId, Username,
};
use crate::limiter::Limiter;
use crate::password;
use crate::store::{Reads, Store, StoreError, WriteTxn};

pub const MAX_PAGE: usize = 200;
pub const DEFAULT_PAGE: usize = 50;

#[derive(Debug, Clone)]
pub struct ServiceSettings {
    pub max_keys_per_user: usize,
    /// Applied to keys created without an explicit `rate_limit`.
    pub default_rate_limit: RateLimit,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings { max_keys_per_user: 1000, default_rate_limit: RateLimit::UNLIMITED }
    }
}

/// A verified caller: the key that was presented, the user who owns it, and where the
/// key's rate limits stand after this request (`None` for a key without limits).
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    pub key: Key,
    pub rate: Option<Decision>,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        Actor::Key { user_id: self.user.id.clone(), key_id: self.key.id.clone() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Malformed, bad checksum, or unknown: deliberately indistinguishable to the caller.
    #[error("invalid key")]
    Invalid,
    /// A known key that may not be used now; the id is public and goes to the request log.
    #[error("key {key_id} refused: {denial:?}")]
    Denied { key_id: KeyId, denial: Denial },
    /// A bucket is empty; nothing was taken from any bucket.
    #[error("key {key_id} is rate limited")]
    RateLimited { key_id: KeyId, decision: Box<Decision> },
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
    #[error("this user already has {0} active keys, the most allowed; revoke one first")]
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
    settings: ServiceSettings,
}

impl Service {
    pub fn new(store: Store, settings: ServiceSettings) -> Self {
        let store = Arc::new(store);
        Service { limiter: Arc::new(Limiter::new(Arc::clone(&store))), store, settings }
    }

    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn settings(&self) -> &ServiceSettings {
        &self.settings
    }

    /// The check behind every authenticated request: parse, hash, look up, authorize, then
    /// take a token from the key's rate-limit buckets and count the use. Malformed tokens are
    /// refused before the database is touched; refused requests spend no budget.
    pub fn verify(&self, presented: &str, required: &[&str], now_ms: u64) -> Result<Principal, VerifyError> {
        let now = Timestamp::from_millis(now_ms);
        let token = Token::parse(presented).map_err(|_| VerifyError::Invalid)?;
        let read = self.store.read()?;
        let key = read.key_by_hash(&token.hash())?.ok_or(VerifyError::Invalid)?;
        let user = read
            .user(&key.user_id)?
            .ok_or_else(|| StoreError::Corrupt { table: "users", reason: format!("owner of {} missing", key.id) })?;
        key.authorize(user.is_disabled(), required, now)
            .map_err(|denial| VerifyError::Denied { key_id: key.id.clone(), denial })?;
        let rate = if key.rate_limit.is_unlimited() { None } else { Some(self.limiter.check(&key, now_ms)?) };
        if let Some(decision) = rate.filter(|d| !d.allowed) {
            return Err(VerifyError::RateLimited { key_id: key.id, decision: Box::new(decision) });
        }
        self.limiter.record_use(&key.id, now_ms);
        Ok(Principal { user, key, rate })
    }

    /// Creates a key for `owner`. `scope_ceiling` is the creating key's scopes when a key
    /// makes a key: the new key can never hold a scope its creator lacks.
    pub fn create_key(
        &self,
        owner: &UserId,
        spec: KeySpec,
        scope_ceiling: Option<&Scopes>,
        actor: Actor,
        now: Timestamp,
    ) -> Result<NewKey, ServiceError> {
        if let Some(ceiling) = scope_ceiling {
            let missing = ceiling.missing_from(&spec.scopes);
            if !missing.is_empty() {
                let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
                return Err(ServiceError::invalid(
                    "scopes",
                    format!("cannot grant scopes the calling key does not hold: {}", names.join(", ")),
                ));
            }
        }
        if spec.expires_at.is_some_and(|at| at <= now) {
            return Err(ServiceError::invalid("expires_at", "must be in the future"));
        }
        let token = Token::generate(&mut SysRng)?;
        let mut key = Key::new(KeyId::generate(&mut SysRng)?, owner.clone(), &token, spec, now);
        self.store.write(|tx| {
            let user = tx.user(owner)?.ok_or(ServiceError::NotFound)?;
            let live = count_unrevoked_keys(tx, &user.id, now)?;
            if live >= self.settings.max_keys_per_user {
                return Err(ServiceError::KeyLimitReached(self.settings.max_keys_per_user));
            }
            tx.insert_key(&mut key)?;
            tx.append_audit(&key_event(actor, Action::KeyCreated, &key, now))?;
            Ok(())
        })?;
        Ok(NewKey { key, token })
    }

    /// The spec a new key gets when the caller did not say which rate limit it wants.
    pub fn default_rate_limit(&self) -> RateLimit {
        self.settings.default_rate_limit
    }

    pub fn list_keys(&self, owner: &UserId, cursor: Option<&str>, limit: usize) -> Result<KeyPage, ServiceError> {
        if limit == 0 || limit > MAX_PAGE {
            return Err(ServiceError::invalid("limit", format!("must be from 1 to {MAX_PAGE}")));
        }
        let read = self.store.read()?;
        let before_seq = match cursor {
            None => None,
            Some(cursor) => {
                let bad_cursor = || ServiceError::invalid("cursor", "is not a cursor from a previous page");
                let id = KeyId::parse(cursor).ok_or_else(bad_cursor)?;
                let key = read.key(&id)?.filter(|k| &k.user_id == owner).ok_or_else(bad_cursor)?;
                Some(key.seq)
            }
        };
        let mut keys = read.user_keys(owner, before_seq, limit + 1)?;
        let next_cursor = if keys.len() > limit {
            keys.truncate(limit);
            keys.last().map(|k| k.id.to_string())
        } else {
            None
        };
        Ok(KeyPage { keys, next_cursor })
    }

    /// One of `owner`'s keys. Any other id, well-formed or not, is `NotFound`.
    pub fn key_of(&self, owner: &UserId, id: &str) -> Result<Key, ServiceError> {
        let id = KeyId::parse(id).ok_or(ServiceError::NotFound)?;
        owned_key(&self.store.read()?, owner, &id)
    }

    pub fn update_key(
        &self,
        owner: &UserId,
        id: &str,
        patch: KeyPatch,
        actor: Actor,
        now: Timestamp,
    ) -> Result<Key, ServiceError> {
        let id = KeyId::parse(id).ok_or(ServiceError::NotFound)?;
        self.store.write(|tx| {
            let mut key = owned_key(tx, owner, &id)?;
            if let Some(name) = patch.name {
                key.name = name;
            }
            if let Some(limit) = patch.rate_limit {
                key.rate_limit = limit;
            }
            tx.update_key(&key)?;
            tx.append_audit(&key_event(actor, Action::KeyUpdated, &key, now))?;
            Ok(key)
        })
    }

    /// Revokes a key now. Revoking a revoked key changes nothing and succeeds.
    pub fn revoke_key(&self, owner: &UserId, id: &str, actor: Actor, now: Timestamp) -> Result<Key, ServiceError> {
        let id = KeyId::parse(id).ok_or(ServiceError::NotFound)?;
        self.store.write(|tx| {
            let mut key = owned_key(tx, owner, &id)?;
            if key.status(now) == KeyStatus::Revoked {
                return Ok(key);
            }
            key.revoke(now);
            tx.update_key(&key)?;
            tx.append_audit(&key_event(actor, Action::KeyRevoked, &key, now))?;
            Ok(key)
        })
    }

    /// Replaces a key with a new one of the same name, scopes, limits and expiry. The old
    /// key stops working now, or after `grace_seconds`. Returns (new key, old key).
    pub fn rotate_key(
        &self,
        owner: &UserId,
        id: &str,
        grace_seconds: u64,
        actor: Actor,
        now: Timestamp,
    ) -> Result<(NewKey, Key), ServiceError> {
        let id = KeyId::parse(id).ok_or(ServiceError::NotFound)?;
        let token = Token::generate(&mut SysRng)?;
        let new_id = KeyId::generate(&mut SysRng)?;
        self.store.write(|tx| {
            let mut old = owned_key(tx, owner, &id)?;
            let (spec, cutoff) = old.plan_rotation(grace_seconds, now).map_err(|err| match err {
                KeyChangeError::GraceTooLong => ServiceError::invalid("grace_seconds", err),
                other => ServiceError::Conflict(other.to_string()),
            })?;
            // The successor replaces the old key rather than adding one, so it does not
            // count against the per-user limit.
            let mut key = Key::new(new_id, owner.clone(), &token, spec, now);
            key.limit_id = old.limit_id.clone();
            old.revoked_at = Some(cutoff);
            tx.update_key(&old)?;
            tx.insert_key(&mut key)?;
            tx.append_audit(&key_event(actor.clone(), Action::KeyRotated, &old, now))?;
            tx.append_audit(&key_event(actor, Action::KeyCreated, &key, now))?;
            Ok((NewKey { key, token }, old))
        })
    }

    // ----- users -----

    pub fn user_by_name(&self, name: &str) -> Result<User, ServiceError> {
        let name = Username::parse(name).map_err(|e| ServiceError::invalid("username", e))?;
        self.store.read()?.user_by_name(&name)?.ok_or(ServiceError::NotFound)
    }

    pub fn users(&self) -> Result<Vec<User>, ServiceError> {
        Ok(self.store.read()?.users()?)
    }

    pub fn add_user(
        &self,
        username: &str,
        password: &str,
        is_admin: bool,
        actor: Actor,
        now: Timestamp,
    ) -> Result<User, ServiceError> {
        let username = Username::parse(username).map_err(|e| ServiceError::invalid("username", e))?;
        let password_hash = hash_password(password)?;
        let user = User {
            id: UserId::generate(&mut SysRng)?,
            username,
            password_hash,
            is_admin,
            created_at: now,
            disabled_at: None,
        };
        self.store.write(|tx| {
            if tx.user_by_name(&user.username)?.is_some() {
                return Err(ServiceError::Conflict(format!("a user named {} already exists", user.username)));
            }
            tx.put_user(&user)?;
            tx.append_audit(&user_event(actor, Action::UserCreated, &user, now))?;
            Ok(())
        })?;
        Ok(user)
    }

    pub fn set_password(
        &self,
        username: &str,
        password: &str,
        actor: Actor,
        now: Timestamp,
    ) -> Result<User, ServiceError> {
        let password_hash = hash_password(password)?;
        self.change_user(username, actor, Action::PasswordChanged, now, |user| user.password_hash = password_hash)
    }

    /// Disabling stops every key and session of the user at once: verification checks the
    /// owner on each request.
    pub fn set_disabled(
        &self,
        username: &str,
        disabled: bool,
        actor: Actor,
        now: Timestamp,
    ) -> Result<User, ServiceError> {
        let action = if disabled { Action::UserDisabled } else { Action::UserEnabled };
        self.change_user(username, actor, action, now, |user| {
            user.disabled_at = if disabled { Some(user.disabled_at.unwrap_or(now)) } else { None };
        })
    }

    fn change_user(
        &self,
        username: &str,
        actor: Actor,
        action: Action,
        now: Timestamp,
        change: impl FnOnce(&mut User),
    ) -> Result<User, ServiceError> {
        let username = Username::parse(username).map_err(|e| ServiceError::invalid("username", e))?;
        self.store.write(|tx| {
            let mut user = tx.user_by_name(&username)?.ok_or(ServiceError::NotFound)?;
            change(&mut user);
            tx.put_user(&user)?;
            tx.append_audit(&user_event(actor, action, &user, now))?;
            Ok(user)
        })
    }
}

fn owned_key(read: &impl Reads, owner: &UserId, id: &KeyId) -> Result<Key, ServiceError> {
    read.key(id)?.filter(|k| &k.user_id == owner).ok_or(ServiceError::NotFound)
}

fn count_unrevoked_keys(tx: &WriteTxn, owner: &UserId, now: Timestamp) -> Result<usize, StoreError> {
    let keys = tx.user_keys(owner, None, usize::MAX)?;
    Ok(keys.iter().filter(|k| k.status(now) != KeyStatus::Revoked).count())
}

fn hash_password(password: &str) -> Result<String, ServiceError> {
    password::hash(password).map_err(|err| match err {
        password::PasswordError::BadLength => ServiceError::invalid("password", err),
        other => ServiceError::Password(other.to_string()),
    })
}

fn key_event(actor: Actor, action: Action, key: &Key, now: Timestamp) -> AuditEvent {
    AuditEvent { at: now, actor, action, user_id: Some(key.user_id.clone()), key_id: Some(key.id.clone()) }
}

fn user_event(actor: Actor, action: Action, user: &User, now: Timestamp) -> AuditEvent {
    AuditEvent { at: now, actor, action, user_id: Some(user.id.clone()), key_id: None }
}
