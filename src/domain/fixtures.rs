//! Records for the unit tests of other modules: a user and a key with fresh random ids,
//! made one way everywhere, so each test spells out only what is special about it.

use super::{Key, KeyId, KeyName, KeySpec, RateLimit, Scopes, Timestamp, Token, User, UserId, Username};

/// An enabled member named `name`, created at the epoch, with no password.
pub fn user(name: &str) -> User {
    User {
        id: UserId::generate(&mut getrandom::SysRng).unwrap(),
        username: Username::parse(name).unwrap(),
        password_hash: String::new(),
        is_admin: false,
        created_at: Timestamp::from_unix(0),
        disabled_at: None,
    }
}

/// A key named `k` of `owner`'s, created at the epoch, without expiry or scopes.
pub fn key(owner: &UserId, rate_limit: RateLimit) -> Key {
    let token = Token::generate(&mut getrandom::SysRng).unwrap();
    let spec = KeySpec { name: KeyName::parse("k").unwrap(), expires_at: None, rate_limit, scopes: Scopes::default() };
    Key::new(KeyId::generate(&mut getrandom::SysRng).unwrap(), owner.clone(), &token, spec, Timestamp::from_unix(0))
}
