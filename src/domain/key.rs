//! API keys: the record we keep (never the secret), its validated parts, and the rules for
//! whether a key may be used right now.
//!
//! Revocation is a timestamp, not a flag: revoking sets `revoked_at` to now, and rotating
//! with a grace period sets it to the end of the grace. Either way a key is revoked exactly
//! when `revoked_at <= now`, so there is one rule to check and no background job.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::id::public_id;
use super::scope::Scopes;
use super::time::Timestamp;
use super::token::{KeyHash, Token};
use super::user::UserId;

public_id!(
    /// A key's public id, `key_` + 16 base62 characters. Used in URLs and logs.
    KeyId,
    "key_"
);

pub const MAX_NAME_CHARS: usize = 100;
/// The longest grace period a rotation may leave the old key working.
pub const MAX_GRACE_SECONDS: u64 = 7 * 86_400;
/// Upper bound for either limit; keeps all bucket arithmetic far from overflow.
pub const MAX_LIMIT: u32 = 1_000_000_000;

/// Why a key name is refused; each message follows the field's name ("name: …").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyNameError {
    #[error("must not be empty or only spaces")]
    Empty,
    #[error("must be at most {MAX_NAME_CHARS} characters")]
    TooLong,
    #[error("must not contain control characters such as line breaks, tabs or text-direction marks")]
    ControlCharacter,
}

/// Unicode's bidirectional controls: not control characters to `char::is_control`, but
/// they reorder the text around them, so a name could display as something it is not.
fn is_direction_mark(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A key's human name, 1–100 characters (Unicode scalar values), no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct KeyName(String);

impl KeyName {
    /// A name given as new input (the API, the settings page, the command line): trimmed,
    /// 1–100 characters, no control characters and no text-direction marks.
    pub fn parse(input: &str) -> Result<Self, KeyNameError> {
        let name = KeyName::stored(input)?;
        if name.0.chars().any(is_direction_mark) {
            return Err(KeyNameError::ControlCharacter);
        }
        Ok(name)
    }

    /// A name as records hold it (the data file, an export): the rules of every version.
    /// Direction marks came later and are refused only in new input, so that a name stored
    /// before still loads.
    fn stored(input: &str) -> Result<Self, KeyNameError> {
        let trimmed = input.trim();
        let chars = trimmed.chars().count();
        if chars == 0 {
            return Err(KeyNameError::Empty);
        }
        if chars > MAX_NAME_CHARS {
            return Err(KeyNameError::TooLong);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(KeyNameError::ControlCharacter);
        }
        Ok(KeyName(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for KeyName {
    type Error = KeyNameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        KeyName::stored(&value)
    }
}

impl From<KeyName> for String {
    fn from(name: KeyName) -> String {
        name.0
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be a whole number from 1 to 1000000000; leave it out for no limit")]
pub struct RateLimitError;

/// Requests per hour and per day; `None` is unlimited. Deserialising goes through
/// [`RateLimit::new`], so a stored or imported zero (which the bucket math divides by) is
/// refused at the door.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawRateLimit")]
pub struct RateLimit {
    per_hour: Option<u32>,
    per_day: Option<u32>,
}

/// The wire shape of [`RateLimit`], before validation.
#[derive(Deserialize)]
struct RawRateLimit {
    per_hour: Option<u32>,
    per_day: Option<u32>,
}

impl TryFrom<RawRateLimit> for RateLimit {
    type Error = String;
    fn try_from(raw: RawRateLimit) -> Result<Self, String> {
        RateLimit::new(raw.per_hour.map(u64::from), raw.per_day.map(u64::from))
            .map_err(|(field, err)| format!("rate_limit.{field}: {err}"))
    }
}

impl RateLimit {
    pub const UNLIMITED: RateLimit = RateLimit { per_hour: None, per_day: None };

    pub fn new(per_hour: Option<u64>, per_day: Option<u64>) -> Result<Self, (&'static str, RateLimitError)> {
        let check = |field: &'static str, value: Option<u64>| match value {
            None => Ok(None),
            Some(n) if (1..=u64::from(MAX_LIMIT)).contains(&n) => Ok(Some(n as u32)),
            Some(_) => Err((field, RateLimitError)),
        };
        Ok(RateLimit { per_hour: check("per_hour", per_hour)?, per_day: check("per_day", per_day)? })
    }

    pub fn per_hour(&self) -> Option<u32> {
        self.per_hour
    }

    pub fn per_day(&self) -> Option<u32> {
        self.per_day
    }

    pub fn is_unlimited(&self) -> bool {
        self.per_hour.is_none() && self.per_day.is_none()
    }
}

/// Where a key stands at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    /// Rotated with a grace period: works until the given instant.
    RevokesAt(Timestamp),
    Revoked,
    Expired,
}

impl KeyStatus {
    pub fn label(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::RevokesAt(_) => "rotating",
            KeyStatus::Revoked => "revoked",
            KeyStatus::Expired => "expired",
        }
    }
}

/// Why a well-formed, known key may not be used. Order matters: the first that applies wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    Revoked,
    Expired,
    UserDisabled,
    InsufficientScope { missing: Vec<String> },
}

/// Why a requested change to a key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyChangeError {
    /// Shown after the field's name ("grace_seconds: …").
    #[error("must be at most {MAX_GRACE_SECONDS} seconds (7 days)")]
    GraceTooLong,
    #[error("the key is revoked; a revoked key cannot be rotated")]
    AlreadyRevoked,
    #[error("the key has already been rotated and stops working at {0}; revoke it to stop it now")]
    AlreadyRotating(Timestamp),
    #[error("the key has expired; create a new key instead")]
    Expired,
}

/// What we keep about a key. There is no secret here: only its blake3 hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub id: KeyId,
    pub user_id: UserId,
    /// Store-assigned creation order; lists are newest first by this.
    pub seq: u64,
    pub name: KeyName,
    pub hash: KeyHash,
    pub start: String,
    pub end: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub request_count: u64,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub rate_limit: RateLimit,
    pub scopes: Scopes,
    /// Whose token buckets this key draws from: its own id, or for a rotated key the id its
    /// predecessor drew from, so rotating never hands out a fresh budget and the old and new
    /// key share one budget during a grace period.
    pub limit_id: KeyId,
}

/// The part of a key that decides whether it may be used: small enough to keep a copy of
/// next to a lookup that runs on every request (see `service::memo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    revoked_at: Option<Timestamp>,
    expires_at: Option<Timestamp>,
    scopes: Scopes,
}

impl Access {
    /// May the key be used now, by this owner, for something that needs `required`?
    pub fn authorize(&self, owner_disabled: bool, required: &[&str], now: Timestamp) -> Result<(), Denial> {
        match status_of(self.revoked_at, self.expires_at, now) {
            KeyStatus::Revoked => return Err(Denial::Revoked),
            KeyStatus::Expired => return Err(Denial::Expired),
            KeyStatus::Active | KeyStatus::RevokesAt(_) => {}
        }
        if owner_disabled {
            return Err(Denial::UserDisabled);
        }
        let missing: Vec<String> =
            required.iter().filter(|s| !self.scopes.contains(s)).map(|s| (*s).to_owned()).collect();
        if !missing.is_empty() {
            return Err(Denial::InsufficientScope { missing });
        }
        Ok(())
    }
}

fn status_of(revoked_at: Option<Timestamp>, expires_at: Option<Timestamp>, now: Timestamp) -> KeyStatus {
    match revoked_at {
        Some(at) if at <= now => return KeyStatus::Revoked,
        _ => {}
    }
    if expires_at.is_some_and(|at| at <= now) {
        return KeyStatus::Expired;
    }
    match revoked_at {
        Some(at) => KeyStatus::RevokesAt(at),
        None => KeyStatus::Active,
    }
}

/// What a new key is made of, before the store gives it a sequence number.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub name: KeyName,
    pub expires_at: Option<Timestamp>,
    pub rate_limit: RateLimit,
    pub scopes: Scopes,
}

impl Key {
    /// A fresh key record for `token`, owned by `user_id`.
    pub fn new(id: KeyId, user_id: UserId, token: &Token, spec: KeySpec, now: Timestamp) -> Key {
        Key {
            limit_id: id.clone(),
            id,
            user_id,
            seq: 0,
            name: spec.name,
            hash: token.hash(),
            start: token.start().to_owned(),
            end: token.end().to_owned(),
            created_at: now,
            last_used_at: None,
            request_count: 0,
            expires_at: spec.expires_at,
            revoked_at: None,
            rate_limit: spec.rate_limit,
            scopes: spec.scopes,
        }
    }

    pub fn status(&self, now: Timestamp) -> KeyStatus {
        status_of(self.revoked_at, self.expires_at, now)
    }

    /// What deciding whether this key may be used reads from it (see [`Access::authorize`]).
    pub fn access(&self) -> Access {
        Access { revoked_at: self.revoked_at, expires_at: self.expires_at, scopes: self.scopes.clone() }
    }

    /// Revokes now. Idempotent: an already revoked key keeps its original time, and a key
    /// waiting out a rotation grace period is cut off now.
    pub fn revoke(&mut self, now: Timestamp) {
        self.revoked_at = Some(match self.revoked_at {
            Some(at) if at <= now => at,
            _ => now,
        });
    }

    /// The successor's spec and the instant the old key stops working, for a rotation at
    /// `now_ms` with `grace_seconds` of overlap: none at all for 0, else at least that long
    /// ([`Timestamp::at_least_seconds_after`]). The grace never outlives the old key's own
    /// expiry.
    pub fn plan_rotation(&self, grace_seconds: u64, now_ms: u64) -> Result<(KeySpec, Timestamp), KeyChangeError> {
        let now = Timestamp::from_millis(now_ms);
        if grace_seconds > MAX_GRACE_SECONDS {
            return Err(KeyChangeError::GraceTooLong);
        }
        match self.status(now) {
            KeyStatus::Revoked => return Err(KeyChangeError::AlreadyRevoked),
            KeyStatus::Expired => return Err(KeyChangeError::Expired),
            KeyStatus::RevokesAt(at) => return Err(KeyChangeError::AlreadyRotating(at)),
            KeyStatus::Active => {}
        }
        let mut cutoff = match grace_seconds {
            0 => now,
            _ => Timestamp::at_least_seconds_after(now_ms, grace_seconds),
        };
        if let Some(expiry) = self.expires_at {
            cutoff = cutoff.min(expiry);
        }
        let spec = KeySpec {
            name: self.name.clone(),
            expires_at: self.expires_at,
            rate_limit: self.rate_limit,
            scopes: self.scopes.clone(),
        };
        Ok((spec, cutoff))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(now: Timestamp) -> Key {
        let token = Token::generate(&mut getrandom::SysRng).unwrap();
        let spec = KeySpec {
            name: KeyName::parse("ci").unwrap(),
            expires_at: Some(now.plus_seconds(3_600)),
            rate_limit: RateLimit::UNLIMITED,
            scopes: Scopes::parse(&["keys:read"]).unwrap(),
        };
        Key::new(
            KeyId::generate(&mut getrandom::SysRng).unwrap(),
            UserId::generate(&mut getrandom::SysRng).unwrap(),
            &token,
            spec,
            now,
        )
    }

    #[test]
    fn names_are_trimmed_and_bounded_in_characters_not_bytes() {
        assert_eq!(KeyName::parse("  prod  ").unwrap().as_str(), "prod");
        assert!(KeyName::parse(&"é".repeat(100)).is_ok());
        assert_eq!(KeyName::parse(&"é".repeat(101)), Err(KeyNameError::TooLong));
        assert_eq!(KeyName::parse("   "), Err(KeyNameError::Empty));
        assert_eq!(KeyName::parse("a\u{0}b"), Err(KeyNameError::ControlCharacter));
        assert_eq!(KeyName::parse("\u{202E}evil"), Err(KeyNameError::ControlCharacter), "right-to-left override");
        assert_eq!(KeyName::parse("a\u{2067}b"), Err(KeyNameError::ControlCharacter), "right-to-left isolate");
        assert!(KeyName::parse("deploy 👩\u{200D}💻 ключ").is_ok(), "joiners and other scripts are names");
        // A name stored before direction marks were refused still loads.
        let stored: KeyName = serde_json::from_str("\"\u{202E}old\"").expect("a stored name loads");
        assert_eq!(stored.as_str(), "\u{202E}old");
    }

    #[test]
    fn limits_must_be_positive_and_bounded() {
        assert!(RateLimit::new(Some(1), None).is_ok());
        assert_eq!(RateLimit::new(Some(0), None), Err(("per_hour", RateLimitError)));
        assert_eq!(RateLimit::new(None, Some(2_000_000_000)), Err(("per_day", RateLimitError)));
    }

    #[test]
    fn a_stored_zero_limit_is_refused_when_decoded() {
        let zero = serde_json::json!({"per_hour": 0, "per_day": null});
        assert!(serde_json::from_value::<RateLimit>(zero).is_err());
        let fine = serde_json::json!({"per_hour": 5, "per_day": null});
        assert_eq!(serde_json::from_value::<RateLimit>(fine).unwrap(), RateLimit::new(Some(5), None).unwrap());
    }

    #[test]
    fn denials_come_in_the_documented_order() {
        let now = Timestamp::from_unix(1_000_000);
        let mut k = key(now);
        assert_eq!(k.access().authorize(false, &["keys:read"], now), Ok(()));
        assert_eq!(
            k.access().authorize(false, &["keys:write"], now),
            Err(Denial::InsufficientScope { missing: vec!["keys:write".into()] })
        );
        assert_eq!(k.access().authorize(true, &[], now), Err(Denial::UserDisabled));
        let later = now.plus_seconds(3_600);
        assert_eq!(k.access().authorize(true, &[], later), Err(Denial::Expired));
        k.revoke(now);
        assert_eq!(k.access().authorize(true, &[], later), Err(Denial::Revoked));
    }

    #[test]
    fn revoke_is_idempotent_and_cuts_a_grace_period_short() {
        let now = Timestamp::from_unix(1_000_000);
        let mut k = key(now);
        k.revoked_at = Some(now.plus_seconds(600));
        assert_eq!(k.status(now), KeyStatus::RevokesAt(now.plus_seconds(600)));
        k.revoke(now.plus_seconds(10));
        assert_eq!(k.revoked_at, Some(now.plus_seconds(10)));
        k.revoke(now.plus_seconds(20));
        assert_eq!(k.revoked_at, Some(now.plus_seconds(10)));
    }

    #[test]
    fn rotation_grace_is_bounded_by_seven_days_and_the_old_expiry() {
        let now = Timestamp::from_unix(1_000_000);
        let now_ms = 1_000_000_000;
        let k = key(now);
        let (spec, cutoff) = k.plan_rotation(60, now_ms).unwrap();
        assert_eq!(cutoff, now.plus_seconds(60));
        assert_eq!(spec.expires_at, k.expires_at);
        let (_, capped) = k.plan_rotation(MAX_GRACE_SECONDS, now_ms).unwrap();
        assert_eq!(Some(capped), k.expires_at);
        assert_eq!(k.plan_rotation(MAX_GRACE_SECONDS + 1, now_ms).unwrap_err(), KeyChangeError::GraceTooLong);
    }

    #[test]
    fn a_grace_period_is_never_shorter_than_asked_and_none_ends_now() {
        let k = key(Timestamp::from_unix(1_000_000));
        // 999 ms into second 1,000,000: one second of grace ends at 1,000,002, 1.001 s later,
        // not at 1,000,001, 1 ms later.
        let now_ms = 1_000_000_999;
        assert_eq!(k.plan_rotation(1, now_ms).unwrap().1, Timestamp::from_unix(1_000_002));
        assert_eq!(k.plan_rotation(0, now_ms).unwrap().1, Timestamp::from_unix(1_000_000));
        // On the dot, it is exactly as long.
        assert_eq!(k.plan_rotation(1, 1_000_000_000).unwrap().1, Timestamp::from_unix(1_000_001));
    }
}
