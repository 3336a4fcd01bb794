//! Users: who owns keys and signs in to the settings page.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::id::public_id;
use super::time::Timestamp;

public_id!(
    /// A user's public id, `usr_` + 16 base62 characters.
    UserId,
    "usr_"
);

pub const MAX_USERNAME_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a username must be 1–64 characters of a-z, 0-9, '.', '_', '-' or '@', starting with a letter or digit")]
pub struct UsernameError;

/// A login name. Lower case only, so `Alice` and `alice` can never be two people.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);

impl Username {
    pub fn parse(input: &str) -> Result<Self, UsernameError> {
        let bytes = input.as_bytes();
        let valid_rest = |b: &u8| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'@');
        match bytes.first() {
            Some(first) if first.is_ascii_lowercase() || first.is_ascii_digit() => {}
            _ => return Err(UsernameError),
        }
        if bytes.len() > MAX_USERNAME_LEN || !bytes.iter().all(valid_rest) {
            return Err(UsernameError);
        }
        Ok(Username(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Username {
    type Error = UsernameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Username::parse(&value)
    }
}

impl From<Username> for String {
    fn from(name: Username) -> String {
        name.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub username: Username,
    /// An argon2id PHC string; never the password.
    pub password_hash: String,
    pub is_admin: bool,
    pub created_at: Timestamp,
    pub disabled_at: Option<Timestamp>,
}

impl User {
    pub fn is_disabled(&self) -> bool {
        self.disabled_at.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_lower_case_and_bounded() {
        assert!(Username::parse("alice").is_ok());
        assert!(Username::parse("ops.bot-2@example.com").is_ok());
        for bad in ["", "Alice", "-alice", "al ice", "ålice", &"a".repeat(65)] {
            assert!(Username::parse(bad).is_err(), "{bad}");
        }
    }
}
