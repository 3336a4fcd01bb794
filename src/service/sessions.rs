//! Signing in to the settings page: the first-run setup link, login with throttling,
//! sessions, logout and password changes.
//!
//! Unknown usernames, wrong passwords and disabled users all fail the same way and take the
//! same time (a dummy argon2 verification stands in for the missing user), so the sign-in
//! page reveals nothing about which usernames exist.

use std::collections::HashMap;
use std::sync::Mutex;

use getrandom::SysRng;

use super::users::user_event;
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
///
/// An attempt is counted as a failure *before* its password is checked (a reservation,
/// taken back on success), so parallel guesses cannot all slip past the limit while argon2
/// runs. Only real usernames get a bucket (a made-up name cannot succeed anyway, and its
/// attempts still count against the address), IPv6 addresses count per /64, and neither
/// map grows past [`MAX_THROTTLE_ENTRIES`]: beyond it new names and addresses go
/// unrecorded, which argon2's cost makes too slow to exploit.
#[derive(Default)]
pub(super) struct LoginGuard {
    by_username: Mutex<HashMap<Username, Failures>>,
    by_address: Mutex<HashMap<String, Failures>>,
}

/// A password check in progress, counted as a failure until it succeeds.
struct Attempt {
    username: Option<Username>,
    /// `None` for a signed-in user's check of their own password, which counts against the
    /// username only.
    address: Option<String>,
    at: i64,
}

impl LoginGuard {
    fn begin(&self, username: Option<&Username>, address: Option<&str>, now: i64) -> Result<Attempt, u64> {
        let address = address.map(address_bucket);
        let mut names = lock(&self.by_username);
        let mut addresses = lock(&self.by_address);
        let by_name =
            username.and_then(|u| names.get_mut(u)).and_then(|f| f.blocked_for(MAX_FAILURES_PER_USERNAME, now));
        let by_addr = address
            .as_ref()
            .and_then(|a| addresses.get_mut(a))
            .and_then(|f| f.blocked_for(MAX_FAILURES_PER_ADDRESS, now));
        if let Some(wait) = by_name.max(by_addr) {
            return Err(wait);
        }
        if let Some(username) = username {
            reserve(&mut names, username.clone(), MAX_FAILURES_PER_USERNAME, now);
        }
        if let Some(address) = &address {
            reserve(&mut addresses, address.clone(), MAX_FAILURES_PER_ADDRESS, now);
        }
        Ok(Attempt { username: username.cloned(), address, at: now })
    }

    fn succeeded(&self, attempt: &Attempt) {
        if let Some(username) = &attempt.username
            && let Some(failures) = lock(&self.by_username).get_mut(username)
        {
            failures.forget(attempt.at);
        }
        if let Some(address) = &attempt.address
            && let Some(failures) = lock(&self.by_address).get_mut(address)
        {
            failures.forget(attempt.at);
        }
    }
}

fn reserve<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Failures>, key: K, limit: usize, now: i64) {
    if map.len() >= MAX_THROTTLE_ENTRIES && !map.contains_key(&key) {
        map.retain(|_, f| !f.expired(now));
        if map.len() >= MAX_THROTTLE_ENTRIES {
            return;
        }
    }
    map.entry(key).or_default().record(now, limit);
}

/// The bucket an address counts in: IPv4 as is, IPv6 by its /64 (one site's allocation, so a
/// host cannot dodge the limit by walking its own prefix).
fn address_bucket(address: &str) -> String {
    match address.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(std::net::IpAddr::V6(v6)) => v6.to_ipv4_mapped().map_or_else(|| address.to_owned(), |v4| v4.to_string()),
        Ok(ip) => ip.to_string(),
        Err(_) => address.chars().take(64).collect(),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The pending first-run setup link: the hash of its secret and when it stops working.
#[derive(Default)]
pub(super) struct SetupLink(Mutex<Option<([u8; 32], Timestamp)>>);

/// Whether `secret` is the pending setup link and it has not expired (constant-time compare).
fn link_matches(pending: Option<([u8; 32], Timestamp)>, secret: &Secret, now: Timestamp) -> bool {
    pending.is_some_and(|(hash, until)| now < until && blake3::Hash::from(hash) == blake3::Hash::from(secret.hash()))
}

/// An argon2id hash with the production parameters, verified against when the username is
/// unknown so that "no such user" costs the same as "wrong password". Its result is thrown
/// away, so which password it hashes does not matter.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$S86P6WIVMXEA9C2Vsg9uOg$KyJldA0yqyxg6JqtbLqKiFpnMVkqwy8HYCfbJ85nuUs";

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
        Secret::parse(presented).is_some_and(|secret| link_matches(*lock(&self.setup.0), &secret, now))
    }

    /// Creates the first administrator through the setup link and signs them in. The link
    /// is taken out of the slot while its request runs, so two requests racing with the same
    /// link cannot both create an admin; it goes back only if the form was refused (a bad
    /// username or password), so the person can correct it and try again.
    pub fn complete_setup(
        &self,
        presented: &str,
        username: &str,
        password: &str,
        now: Timestamp,
    ) -> Result<SignIn, ServiceError> {
        let pending = {
            let mut slot = lock(&self.setup.0);
            if !Secret::parse(presented).is_some_and(|secret| link_matches(*slot, &secret, now)) {
                return Err(ServiceError::NotFound);
            }
            slot.take()
        };
        let created = Username::parse(username)
            .map_err(|e| ServiceError::invalid("username", e))
            .and_then(|username| self.add_user(username.as_str(), password, true, Actor::Cli, now));
        let user = match created {
            Ok(user) => user,
            Err(err) => {
                if matches!(err, ServiceError::Invalid { .. }) {
                    *lock(&self.setup.0) = pending;
                }
                return Err(err);
            }
        };
        self.start_session(user, now).map_err(|err| match err {
            LoginError::Service(err) => err,
            other => ServiceError::Conflict(other.to_string()),
        })
    }

    /// Checks a username and password, with throttling per username and per client address.
    pub fn login(&self, username: &str, password: &str, address: &str, now: Timestamp) -> Result<SignIn, LoginError> {
        let name = Username::parse(&username.trim().to_ascii_lowercase()).ok();
        let attempt =
            self.login_guard.begin(name.as_ref(), Some(address), now.unix()).map_err(LoginError::Throttled)?;
        let user = match &name {
            Some(name) => self.store.read()?.user_by_name(name)?,
            None => None,
        };
        let matched = match &user {
            Some(user) => password::verify(password, &user.password_hash) && !user.is_disabled(),
            None => {
                password::verify(password, DUMMY_HASH);
                false
            }
        };
        if !matched {
            // The attempt's reservation stands as the recorded failure.
            let event = AuditEvent {
                at: now,
                actor: Actor::Anonymous,
                action: Action::LoginFailed,
                user_id: user.map(|u| u.id),
                key_id: None,
            };
            self.store.write(|tx| tx.append_audit(&event))?;
            return Err(LoginError::Invalid);
        }
        self.login_guard.succeeded(&attempt);
        let user = user.ok_or(LoginError::Invalid)?;
        self.start_session(user, now)
    }

    fn start_session(&self, user: User, now: Timestamp) -> Result<SignIn, LoginError> {
        let secret = Secret::generate(&mut SysRng).map_err(ServiceError::from)?;
        let session = self.new_session(&user, now);
        let event = user_event(Actor::User(user.id.clone()), Action::Login, &user, now);
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
    ///
    /// A wrong current password counts as a failed sign-in for the username, with an audit
    /// event, and the check is throttled like a sign-in: it guesses the same secret, and a
    /// stolen session must not become a way to learn the password that outlives it.
    pub fn change_own_password(
        &self,
        user_id: &UserId,
        current: &str,
        new: &str,
        now: Timestamp,
    ) -> Result<SignIn, LoginError> {
        let user = self.store.read()?.user(user_id)?.ok_or(ServiceError::NotFound)?;
        let attempt = self.login_guard.begin(Some(&user.username), None, now.unix()).map_err(LoginError::Throttled)?;
        if !password::verify(current, &user.password_hash) {
            // The attempt's reservation stands as the recorded failure.
            let event = user_event(Actor::User(user.id.clone()), Action::LoginFailed, &user, now);
            self.store.write(|tx| tx.append_audit(&event))?;
            return Err(LoginError::Invalid);
        }
        self.login_guard.succeeded(&attempt);
        // Changing the password ends every session of the user (in the same transaction);
        // the caller gets a fresh one so they stay signed in.
        let user = self.set_password(user.username.as_str(), new, Actor::User(user.id.clone()), now)?;
        let secret = Secret::generate(&mut SysRng).map_err(ServiceError::from)?;
        let session = self.new_session(&user, now);
        self.store.write(|tx| tx.put_session(&secret.hash(), &session))?;
        Ok(SignIn { user, secret })
    }

    /// Audit events, newest first: all of them for admins, the user's own otherwise.
    pub fn audit_for(&self, viewer: &User, limit: usize) -> Result<Vec<crate::domain::AuditEvent>, ServiceError> {
        let about = if viewer.is_admin { None } else { Some(&viewer.id) };
        Ok(self.store.read()?.audit_events(about, limit)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_is_a_real_argon2id_hash_so_unknown_users_cost_the_same() {
        assert!(password::verify("correct horse battery", DUMMY_HASH));
    }

    #[test]
    fn attempts_count_before_the_password_is_checked_and_a_success_is_taken_back() {
        let guard = LoginGuard::default();
        let alice = Username::parse("alice").unwrap();
        // Five attempts in flight at once: the sixth is refused before any password check.
        let attempts: Vec<Attempt> =
            (0..5).map(|_| guard.begin(Some(&alice), Some("10.0.0.1"), 100).unwrap()).collect();
        assert!(guard.begin(Some(&alice), Some("10.0.0.2"), 100).is_err());
        // One of them turned out right: its reservation is taken back.
        guard.succeeded(&attempts[0]);
        assert!(guard.begin(Some(&alice), Some("10.0.0.3"), 100).is_ok());
    }

    #[test]
    fn ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(address_bucket("2001:db8:1:2:aaaa::1"), address_bucket("2001:db8:1:2:bbbb::9"));
        assert_ne!(address_bucket("2001:db8:1:2::1"), address_bucket("2001:db8:1:3::1"));
        assert_eq!(address_bucket("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(address_bucket("192.0.2.7"), "192.0.2.7");
    }
}
