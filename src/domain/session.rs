//! Sign-in sessions for the settings page, and the one-time setup link.
//!
//! A session secret is 43 random base62 characters (about 256 bits) kept only in the
//! browser's cookie; the store keeps its blake3 hash, like API keys. The form (CSRF) token
//! is derived from the secret with blake3's key-derivation mode, so it needs no storage,
//! changes with every new session, and cannot be computed by anyone without the cookie.

use std::fmt;

use rand_core::TryCryptoRng;
use serde::{Deserialize, Serialize};

use super::base62;
use super::time::Timestamp;
use super::user::UserId;

pub const SECRET_LEN: usize = 43;
const CSRF_CONTEXT: &str = "iblueprint 2026-11 session form token";

/// A random secret carried by a cookie or a link: sessions, the setup link, and the
/// anonymous form token of the sign-in page.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; SECRET_LEN]);

impl Secret {
    pub fn generate<R: TryCryptoRng + ?Sized>(rng: &mut R) -> Result<Self, R::Error> {
        let mut bytes = [0u8; SECRET_LEN];
        base62::fill_random(rng, &mut bytes)?;
        Ok(Secret(bytes))
    }

    pub fn parse(input: &str) -> Option<Self> {
        let bytes: [u8; SECRET_LEN] = input.as_bytes().try_into().ok()?;
        base62::is_base62(&bytes).then_some(Secret(bytes))
    }

    /// What the store keeps.
    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(&self.0).as_bytes()
    }

    /// The form token for pages served under this secret.
    pub fn form_token(&self) -> String {
        let derived = blake3::derive_key(CSRF_CONTEXT, &self.0);
        derived.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `presented` is this secret's form token, compared in constant time.
    pub fn form_token_matches(&self, presented: &str) -> bool {
        let expected = blake3::derive_key(CSRF_CONTEXT, &self.0);
        let mut given = [0u8; 32];
        if presented.len() != 64 {
            return false;
        }
        for (i, chunk) in presented.as_bytes().chunks(2).enumerate() {
            match std::str::from_utf8(chunk).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b) => given[i] = b,
                None => return false,
            }
        }
        blake3::Hash::from(expected) == blake3::Hash::from(given)
    }

    /// The secret itself, for the one place that writes it into a cookie or a link.
    pub fn expose(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// A signed-in browser. Ends at `expires_at`, at logout, or when its user is disabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user_id: UserId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

impl Session {
    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip_and_form_tokens_verify_only_for_their_secret() {
        let a = Secret::generate(&mut getrandom::SysRng).unwrap();
        let b = Secret::generate(&mut getrandom::SysRng).unwrap();
        assert_eq!(Secret::parse(a.expose()), Some(a.clone()));
        assert!(a.form_token_matches(&a.form_token()));
        assert!(!a.form_token_matches(&b.form_token()));
        assert!(!a.form_token_matches(""));
        assert!(!a.form_token_matches(&"zz".repeat(32)));
        assert!(Secret::parse("short").is_none());
        assert!(!format!("{a:?}").contains(a.expose()));
    }
}
