//! Audit events: who did what to which key or user, and when. Never a secret.

use serde::{Deserialize, Serialize};

use super::key::KeyId;
use super::time::Timestamp;
use super::user::UserId;

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Actor {
    /// A request authenticated by an API key.
    Key { user_id: UserId, key_id: KeyId },
    /// A signed-in user on the settings page.
    User(UserId),
    /// The operator on the server's machine: `iblueprint users …`, or the first-run setup link.
    Cli,
    /// Someone not signed in: a failed sign-in attempt, attributed to nobody (the event's
    /// `user_id` names the account that was tried, when it exists). Last, so records written
    /// before it existed decode unchanged.
    Anonymous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    KeyCreated,
    KeyUpdated,
    KeyRotated,
    KeyRevoked,
    UserCreated,
    UserDisabled,
    UserEnabled,
    PasswordChanged,
    Login,
    LoginFailed,
}

impl Action {
    pub fn label(self) -> &'static str {
        match self {
            Action::KeyCreated => "key.created",
            Action::KeyUpdated => "key.updated",
            Action::KeyRotated => "key.rotated",
            Action::KeyRevoked => "key.revoked",
            Action::UserCreated => "user.created",
            Action::UserDisabled => "user.disabled",
            Action::UserEnabled => "user.enabled",
            Action::PasswordChanged => "user.password_changed",
            Action::Login => "login",
            Action::LoginFailed => "login.failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub at: Timestamp,
    pub actor: Actor,
    pub action: Action,
    /// The user the event is about (the key's owner for key events).
    pub user_id: Option<UserId>,
    pub key_id: Option<KeyId>,
}
