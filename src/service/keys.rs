//! Key use cases: create, list, show, change, revoke and rotate a user's own keys.
//! Every lookup is by (owner, id): another user's key is `NotFound`, exactly like a
//! missing one, so ids cannot be probed.

use getrandom::SysRng;

use super::{KeyPage, KeyPatch, MAX_PAGE, NewKey, Service, ServiceError};
use crate::domain::{
    Action, Actor, AuditEvent, Key, KeyChangeError, KeyId, KeySpec, KeyStatus, RateLimit, Scopes, Timestamp, Token,
    UserId,
};
use crate::store::{Reads, StoreError, WriteTxn};

impl Service {
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
        check_ceiling(scope_ceiling, &spec.scopes)?;
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

    /// `key` as it is stored now, through the verification view (which every commit
    /// refreshes, flushes included, so its usage counters are those of the last flush). For
    /// showing a verified key's usage, which the record a verification returns may predate.
    pub fn current_key(&self, key: &Key) -> Result<Key, ServiceError> {
        self.store.key_and_owner(&key.hash)?.map(|(key, _)| key).ok_or(ServiceError::NotFound)
    }

    /// One of `owner`'s keys. Any other id, well-formed or not, is `NotFound`.
    pub fn key_of(&self, owner: &UserId, id: &str) -> Result<Key, ServiceError> {
        let id = KeyId::parse(id).ok_or(ServiceError::NotFound)?;
        owned_key(&self.store.read()?, owner, &id)
    }

    /// Renames a key or replaces its limits. `now_ms`: a changed limit keeps the key's
    /// level as of this instant (refilled at the old rate until then), capped at the new
    /// capacity.
    pub fn update_key(
        &self,
        owner: &UserId,
        id: &str,
        patch: KeyPatch,
        actor: Actor,
        now_ms: u64,
    ) -> Result<Key, ServiceError> {
        let now = Timestamp::from_millis(now_ms);
        let id = KeyId::parse(id).ok_or(ServiceError::NotFound)?;
        if patch.name.is_none() && patch.rate_limit.is_none() {
            // Nothing to change: answer the key without a write or an audit event.
            return owned_key(&self.store.read()?, owner, &id);
        }
        self.store.write(|tx| {
            let mut key = owned_key(tx, owner, &id)?;
            if let Some(name) = patch.name {
                key.name = name;
            }
            if let Some(limit) = patch.rate_limit {
                if limit != key.rate_limit && !key.rate_limit.is_unlimited() {
                    // Before the new limit is committed, and so before any verification
                    // can use it: the time since the key's last request is refilled at the
                    // old rate. Settling under the limit in force changes no decision, so
                    // it needs no undoing if this change then fails.
                    self.limiter.settle(&key.limit_id, key.rate_limit, now_ms)?;
                }
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
    /// key stops working now, or after `grace_seconds`. Returns (new key, old key). As with
    /// creation, a key rotating a key must hold every scope the successor will get.
    pub fn rotate_key(
        &self,
        owner: &UserId,
        id: &str,
        grace_seconds: u64,
        scope_ceiling: Option<&Scopes>,
        actor: Actor,
        now_ms: u64,
    ) -> Result<(NewKey, Key), ServiceError> {
        let now = Timestamp::from_millis(now_ms);
        let id = KeyId::parse(id).ok_or(ServiceError::NotFound)?;
        let token = Token::generate(&mut SysRng)?;
        let new_id = KeyId::generate(&mut SysRng)?;
        self.store.write(|tx| {
            let mut old = owned_key(tx, owner, &id)?;
            check_ceiling(scope_ceiling, &old.scopes)?;
            let (spec, cutoff) = old.plan_rotation(grace_seconds, now_ms).map_err(|err| match err {
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
}

/// Refuses to hand out scopes that the acting key (if a key is acting) does not hold.
fn check_ceiling(ceiling: Option<&Scopes>, wanted: &Scopes) -> Result<(), ServiceError> {
    let Some(ceiling) = ceiling else { return Ok(()) };
    let missing: Vec<&str> = ceiling.missing_from(wanted).iter().map(|s| s.as_str()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ServiceError::invalid(
        "scopes",
        format!("cannot grant scopes the calling key does not hold: {}", missing.join(", ")),
    ))
}

fn owned_key(read: &impl Reads, owner: &UserId, id: &KeyId) -> Result<Key, ServiceError> {
    read.key(id)?.filter(|k| &k.user_id == owner).ok_or(ServiceError::NotFound)
}

fn count_unrevoked_keys(tx: &WriteTxn, owner: &UserId, now: Timestamp) -> Result<usize, StoreError> {
    let keys = tx.user_keys(owner, None, usize::MAX)?;
    Ok(keys.iter().filter(|k| k.status(now) != KeyStatus::Revoked).count())
}

fn key_event(actor: Actor, action: Action, key: &Key, now: Timestamp) -> AuditEvent {
    AuditEvent { at: now, actor, action, user_id: Some(key.user_id.clone()), key_id: Some(key.id.clone()) }
}
