//! Password hashing with argon2id at OWASP's recommended parameters (19 MiB, t=2, p=1,
//! the `argon2` crate's defaults), stored as PHC strings so the parameters travel with
//! the hash and can be raised later without a migration.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

pub const MIN_LEN: usize = 8;
/// Long enough for any passphrase, short enough that nobody can make us hash megabytes.
pub const MAX_LEN: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("must be at least {MIN_LEN} and at most {MAX_LEN} characters")]
    BadLength,
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// Checks the password policy without hashing.
pub fn validate(password: &str) -> Result<(), PasswordError> {
    let chars = password.chars().count();
    if !(MIN_LEN..=MAX_LEN).contains(&chars) {
        return Err(PasswordError::BadLength);
    }
    Ok(())
}

pub fn hash(password: &str) -> Result<String, PasswordError> {
    validate(password)?;
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|err| PasswordError::Hashing(err.to_string()))
}

/// True when `password` matches the stored PHC string. The comparison inside argon2 is
/// constant time; a malformed stored hash simply never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    if password.len() > MAX_LEN * 4 {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let phc = hash("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse battery", &phc));
        assert!(!verify("wrong horse battery", &phc));
        assert!(!verify("anything", "not a phc string"));
    }

    #[test]
    fn length_is_bounded() {
        assert!(matches!(hash("short"), Err(PasswordError::BadLength)));
        assert!(matches!(hash(&"x".repeat(MAX_LEN + 1)), Err(PasswordError::BadLength)));
    }
}
