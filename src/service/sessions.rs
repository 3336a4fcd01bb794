//! Signing in to the settings page: the first-run setup link, login with throttling,
//! sessions, logout and password changes.
//!
//! Unknown usernames, wrong passwords and disabled users all fail the same way and take the
//! same time (a dummy argon2 verification stands in for the missing user), so the sign-in
//! page reveals nothing about which usernames exist.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use getrandom::SysRng;

use super::{Service, ServiceError};
use crate::domain::session::{Secret, Session};
use crate::domain::throttle::{Failures, MAX_FAILURES_PER_ADDRESS, MAX_FAILURES_PER_USERNAME};
use crate::domain::{Action, Actor, AuditEvent, Timestamp, User, UserId, Username};
use crate::password;
use crate::store::{Reads, StoreError};

/// How long the first-run setup link works.
pub const SETUP_LINK_SECONDS: u64 = 3600;
/// Bound on remembered throttle entries; beyond it, aged-out entries are dropped first.
const MAX_THROTTLE_ENTRIES: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("too many failed sign-ins; try again in {0} seconds")]
    Throttled(u64),
    #[error("that username and password do not match")]
    Invalid,
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<StoreError> for LoginError {
    fn from(err: StoreError) -> Self {
        LoginError::Service(err.into())
    }
}

/// A successful sign-in: the user and the new session's secret for the cookie.
pub struct SignIn {
    pub user: User,
    pub secret: Secret,
}

/// Failed sign-ins by username and by client address, in memory.
#[derive(Default)]
pub(super) struct LoginGuard {
    by_username: Mutex<HashMap<String, Failures>>,
    by_address: Mutex<HashMap<String, Failures>>,
}

impl LoginGuard {
    fn blocked_for(&self, username: &str, address: &str, now: i64) -> Option<u64> {
        let by_name =
            lock(&self.by_username).get_mut(username).and_then(|f| f.blocked_for(MAX_FAILURES_PER_USERNAME, now));
        let by_addr =
            lock(&self.by_address).get_mut(address).and_then(|f| f.blocked_for(MAX_FAILURES_PER_ADDRESS, now));
        by_name.max(by_addr)
    }

    fn record_failure(&self, username: &str, address: &str, now: i64) {
        for (map, key, limit) in [
            (&self.by_username, username, MAX_FAILURES_PER_USERNAME),
            (&self.by_address, address, MAX_FAILURES_PER_ADDRESS),
        ] {
            let mut map = lock(map);
            if map.len() >= MAX_THROTTLE_ENTRIES {
                map.retain(|_, f| !f.expired(now));
            }
            map.entry(key.to_owned()).or_default().record(now, limit);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The pending first-run setup link: the hash of its secret and when it stops working.
#[derive(Default)]
pub(super) struct SetupLink(Mutex<Option<([u8; 32], Timestamp)>>);

/// A real argon2id hash of a random password, verified against when the user is unknown so
/// that "no such user" costs the same as "wrong password".
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let filler = Secret::generate(&mut SysRng).map(|s| s.expose().to_owned()).unwrap_or_else(|_| "x".repeat(43));
        password::hash(&filler).unwrap_or_default()
    })
}

impl Service {
    /// With no users yet, makes a fresh single-use setup link secret (valid for an hour,
    /// until used, or until the next start). `None` once a user exists.
    pub fn open_setup_link(&self, now: Timestamp) -> Result<Option<Secret>, ServiceError> {
        if self.store.read()?.user_count()? > 0 {
            return Ok(None);
        }
        let secret = Secret::generate(&mut SysRng)?;
        *lock(&self.setup.0) = Some((secret.hash(), now.plus_seconds(SETUP_LINK_SECONDS)));
        Ok(Some(secret))
    }

    /// Whether `presented` is the pending, unexpired setup link secret.
    pub fn setup_link_is_valid(&self, presented: &str, now: Timestamp) -> bool {
        let Some(secret) = Secret::parse(presented) else { return false };
        match *lock(&self.setup.0) {
            Some((hash, until)) => now < until && blake3::Hash::from(hash) == blake3::Hash::from(secret.hash()),
            None => false,
        }
    }

    /// Creates the first administrator through the setup link and signs them in. The link
    /// is spent whether or not this succeeds past validation.
    pub fn complete_setup(
        &self,
        presented: &str,
        username: &str,
        password: &str,
        now: Timestamp,
    ) -> Result<SignIn, ServiceError> {
        if !self.setup_link_is_valid(presented, now) {
            return Err(ServiceError::NotFound);
        }
        let username = Username::parse(username).map_err(|e| ServiceError::invalid("username", e))?;
        let user = self.add_user(username.as_str(), password, true, Actor::Cli, now)?;
        *lock(&self.setup.0) = None;
        self.start_session(user, now).map_err(|err| match err {
            LoginError::Service(err) => err,
            other => ServiceError::Conflict(other.to_string()),
        })
    }

    /// Checks a username and password, with throttling per username and per client address.
    pub fn login(&self, username: &str, password: &str, address: &str, now: Timestamp) -> Result<SignIn, LoginError> {
        let name_key = username.trim().to_ascii_lowercase();
        if let Some(wait) = self.login_guard.blocked_for(&name_key, address, now.unix()) {
            return Err(LoginError::Throttled(wait));
        }
        let user = match Username::parse(&name_key) {
            Ok(name) => self.store.read()?.user_by_name(&name)?,
            Err(_) => None,
        };
        let matched = match &user {
            Some(user) => password::verify(password, &user.password_hash) && !user.is_disabled(),
            None => {
                password::verify(password, dummy_hash());
                false
            }
        };
        if !matched {
            self.login_guard.record_failure(&name_key, address, now.unix());
            let event = AuditEvent {
                at: now,
                actor: user.as_ref().map_or(Actor::Cli, |u| Actor::User(u.id.clone())),
                action: Action::LoginFailed,
                user_id: user.map(|u| u.id),
                key_id: None,
            };
            self.store.write(|tx| tx.append_audit(&event))?;
            return Err(LoginError::Invalid);
        }
        let user = user.ok_or(LoginError::Invalid)?;
        self.start_session(user, now)
    }

    fn start_session(&self, user: User, now: Timestamp) -> Result<SignIn, LoginError> {
        let secret = Secret::generate(&mut SysRng).map_err(ServiceError::from)?;
        let session = self.new_session(&user, now);
        let event = AuditEvent {
            at: now,
            actor: Actor::User(user.id.clone()),
            action: Action::Login,
            user_id: Some(user.id.clone()),
            key_id: None,
        };
        self.store.write(|tx| {
            tx.prune_sessions(now, None)?;
            tx.put_session(&secret.hash(), &session)?;
            tx.append_audit(&event)
        })?;
        Ok(SignIn { user, secret })
    }

    fn new_session(&self, user: &User, now: Timestamp) -> Session {
        Session {
            user_id: user.id.clone(),
            created_at: now,
            expires_at: now.plus_seconds(self.settings.session_ttl_seconds),
        }
    }

    /// The signed-in user behind a session cookie, if the session is live and the user is
    /// enabled. Disabling a user therefore ends their sessions on the next request.
    pub fn session_user(&self, secret: &Secret, now: Timestamp) -> Result<Option<User>, StoreError> {
        let read = self.store.read()?;
        let Some(session) = read.session(&secret.hash())?.filter(|s| s.is_live(now)) else { return Ok(None) };
        Ok(read.user(&session.user_id)?.filter(|u| !u.is_disabled()))
    }

    pub fn logout(&self, secret: &Secret) -> Result<(), StoreError> {
        self.store.write(|tx| tx.delete_session(&secret.hash()))
    }

    /// Changes the signed-in user's own password after checking the current one. Every
    /// session of the user ends, the caller's included, and the caller gets a fresh one
    /// (a new id, like at login) in the same transaction.
    pub fn change_own_password(
        &self,
        user_id: &UserId,
        current: &str,
        new: &str,
        now: Timestamp,
    ) -> Result<SignIn, ServiceError> {
        let user = self.store.read()?.user(user_id)?.ok_or(ServiceError::NotFound)?;
        if !password::verify(current, &user.password_hash) {
            return Err(ServiceError::invalid("current_password", "is not your current password"));
        }
        let user = self.set_password(user.username.as_str(), new, Actor::User(user.id.clone()), now)?;
        let secret = Secret::generate(&mut SysRng)?;
        let session = self.new_session(&user, now);
        self.store.write(|tx| {
            tx.prune_sessions(now, Some(&user.id))?;
            tx.put_session(&secret.hash(), &session)
        })?;
        Ok(SignIn { user, secret })
    }

    /// Audit events, newest first: all of them for admins, the user's own otherwise.
    pub fn audit_for(&self, viewer: &User, limit: usize) -> Result<Vec<crate::domain::AuditEvent>, ServiceError> {
        let about = if viewer.is_admin { None } else { Some(&viewer.id) };
        Ok(self.store.read()?.audit_events(about, limit)?)
    }
}
