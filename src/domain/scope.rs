//! Scopes: what a key may do.
//!
//! Two scopes mean something to iblueprint itself (`keys:read`, `keys:write`); any other
//! scope matching `[a-z0-9_.:-]{1,64}` is carried along and handed to upstream services by
//! forward-auth. A key holds at most [`MAX_SCOPES`], kept sorted and without duplicates so
//! that two equal sets always compare and serialise the same way.

use std::fmt;

use serde::{Deserialize, Serialize};

pub const MAX_SCOPE_LEN: usize = 64;
pub const MAX_SCOPES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("a scope must be 1–64 characters of a-z, 0-9, '_', '.', ':' or '-'")]
    Invalid,
    #[error("a key can hold at most 32 scopes")]
    TooMany,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scope(String);

impl Scope {
    pub const KEYS_READ: &'static str = "keys:read";
    pub const KEYS_WRITE: &'static str = "keys:write";

    pub fn parse(input: &str) -> Result<Self, ScopeError> {
        let valid_char = |c: u8| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b':' | b'-');
        if input.is_empty() || input.len() > MAX_SCOPE_LEN || !input.bytes().all(valid_char) {
            return Err(ScopeError::Invalid);
        }
        Ok(Scope(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Scope {
    type Error = ScopeError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Scope::parse(&value)
    }
}

impl From<Scope> for String {
    fn from(scope: Scope) -> String {
        scope.0
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key's set of scopes: sorted, unique, at most [`MAX_SCOPES`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Scope>", into = "Vec<Scope>")]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    pub fn parse<S: AsRef<str>>(items: &[S]) -> Result<Self, ScopeError> {
        let scopes = items.iter().map(|s| Scope::parse(s.as_ref())).collect::<Result<Vec<_>, _>>()?;
        Scopes::try_from(scopes)
    }

    pub fn contains(&self, scope: &str) -> bool {
        self.0.binary_search_by(|held| held.as_str().cmp(scope)).is_ok()
    }

    /// The scopes of `other` that this set lacks: empty when `other` is a subset.
    pub fn missing_from<'a>(&self, other: &'a Scopes) -> Vec<&'a Scope> {
        other.0.iter().filter(|s| !self.contains(s.as_str())).collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Space separated, as forward-auth passes them upstream.
    pub fn joined(&self) -> String {
        let mut out = String::new();
        for (i, scope) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(scope.as_str());
        }
        out
    }
}

impl TryFrom<Vec<Scope>> for Scopes {
    type Error = ScopeError;
    fn try_from(mut scopes: Vec<Scope>) -> Result<Self, Self::Error> {
        scopes.sort();
        scopes.dedup();
        if scopes.len() > MAX_SCOPES {
            return Err(ScopeError::TooMany);
        }
        Ok(Scopes(scopes))
    }
}

impl From<Scopes> for Vec<Scope> {
    fn from(scopes: Scopes) -> Vec<Scope> {
        scopes.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_follow_the_documented_alphabet() {
        assert!(Scope::parse("keys:read").is_ok());
        assert!(Scope::parse("billing.invoices-v2_x").is_ok());
        assert_eq!(Scope::parse(""), Err(ScopeError::Invalid));
        assert_eq!(Scope::parse("Keys:Read"), Err(ScopeError::Invalid));
        assert_eq!(Scope::parse("a b"), Err(ScopeError::Invalid));
        assert_eq!(Scope::parse(&"a".repeat(65)), Err(ScopeError::Invalid));
        assert!(Scope::parse(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn sets_are_sorted_unique_and_bounded() {
        let set = Scopes::parse(&["b", "a", "b"]).unwrap();
        assert_eq!(set.joined(), "a b");
        let many: Vec<String> = (0..33).map(|i| format!("s{i}")).collect();
        assert_eq!(Scopes::parse(&many), Err(ScopeError::TooMany));
        // Duplicates do not count against the limit.
        let dupes: Vec<&str> = vec!["x"; 40];
        assert!(Scopes::parse(&dupes).is_ok());
    }

    #[test]
    fn missing_from_lists_what_would_be_an_escalation() {
        let held = Scopes::parse(&["keys:read", "keys:write"]).unwrap();
        let wanted = Scopes::parse(&["keys:read", "admin"]).unwrap();
        let missing: Vec<&str> = held.missing_from(&wanted).iter().map(|s| s.as_str()).collect();
        assert_eq!(missing, vec!["admin"]);
    }
}
