//! User use cases: add users, change passwords, disable and enable them.

use getrandom::SysRng;

use super::{Service, ServiceError};
use crate::domain::{Action, Actor, AuditEvent, Timestamp, User, UserId, Username};
use crate::password;
use crate::store::Reads;

impl Service {
    pub fn user_by_name(&self, name: &str) -> Result<User, ServiceError> {
        let name = Username::parse(name).map_err(|e| ServiceError::invalid("username", e))?;
        self.store.read()?.user_by_name(&name)?.ok_or(ServiceError::NotFound)
    }

    /// A user by public id; a malformed or unknown id is `NotFound`.
    pub fn user_by_id(&self, id: &str) -> Result<User, ServiceError> {
        let id = UserId::parse(id).ok_or(ServiceError::NotFound)?;
        self.store.read()?.user(&id)?.ok_or(ServiceError::NotFound)
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
        self.change_user(username, actor, Action::PasswordChanged, now, |user| {
            user.password_hash = password_hash;
            Ok(Changed::Yes)
        })
    }

    /// Disabling stops every key and session of the user at once: verification checks the
    /// owner on each request. A signed-in user cannot disable themself: that would lock them
    /// out mid-sentence, and with a single admin, lock everyone out of user management.
    pub fn set_disabled(
        &self,
        username: &str,
        disabled: bool,
        actor: Actor,
        now: Timestamp,
    ) -> Result<User, ServiceError> {
        let action = if disabled { Action::UserDisabled } else { Action::UserEnabled };
        let acting_user = match &actor {
            Actor::User(id) => Some(id.clone()),
            Actor::Key { .. } | Actor::Cli | Actor::Anonymous => None,
        };
        self.change_user(username, actor, action, now, |user| {
            if disabled && acting_user.as_ref() == Some(&user.id) {
                return Err(ServiceError::Conflict("you cannot disable your own account".to_owned()));
            }
            if user.is_disabled() == disabled {
                // Disabling a disabled user (or enabling an enabled one) succeeds and changes
                // nothing, so the audit log does not claim a change that did not happen.
                return Ok(Changed::No);
            }
            user.disabled_at = if disabled { Some(now) } else { None };
            Ok(Changed::Yes)
        })
    }

    fn change_user(
        &self,
        username: &str,
        actor: Actor,
        action: Action,
        now: Timestamp,
        change: impl FnOnce(&mut User) -> Result<Changed, ServiceError>,
    ) -> Result<User, ServiceError> {
        let username = Username::parse(username).map_err(|e| ServiceError::invalid("username", e))?;
        self.store.write(|tx| {
            let mut user = tx.user_by_name(&username)?.ok_or(ServiceError::NotFound)?;
            if change(&mut user)? == Changed::No {
                return Ok(user);
            }
            tx.put_user(&user)?;
            if user.is_disabled() || action == Action::PasswordChanged {
                // In the same transaction as the change: a disabled user's sessions would be
                // refused anyway, and after a password change (an operator's reset or the
                // user's own) no session opened with the old password may survive it.
                tx.prune_sessions(now, Some(&user.id))?;
            }
            tx.append_audit(&user_event(actor, action, &user, now))?;
            Ok(user)
        })
    }
}

/// Whether a change to a user changed anything (to write and audit) or found it done.
#[derive(PartialEq, Eq)]
enum Changed {
    Yes,
    No,
}

fn hash_password(password: &str) -> Result<String, ServiceError> {
    password::hash(password).map_err(|err| match err {
        password::PasswordError::BadLength => ServiceError::invalid("password", err),
        other => ServiceError::Password(other.to_string()),
    })
}

/// An audit event about `user` (its subject), by `actor`.
pub(super) fn user_event(actor: Actor, action: Action, user: &User, now: Timestamp) -> AuditEvent {
    AuditEvent { at: now, actor, action, user_id: Some(user.id.clone()), key_id: None }
}
