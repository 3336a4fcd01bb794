//! The pure core: token format, ids, names, scopes, key rules and time arithmetic.
//!
//! Nothing here does I/O or reads the clock: `now` is always a parameter and randomness
//! comes in through a `rand_core` RNG argument. This module never imports actix or redb,
//! so every rule can be tested in microseconds with any instant and any RNG.

pub mod audit;
pub mod base62;
#[cfg(test)]
pub mod fixtures;
pub mod id;
pub mod key;
pub mod ratelimit;
pub mod scope;
pub mod session;
pub mod throttle;
pub mod time;
pub mod token;
pub mod user;

pub use audit::{Action, Actor, AuditEvent};
pub use key::{Access, Denial, Key, KeyChangeError, KeyId, KeyName, KeySpec, KeyStatus, RateLimit};
pub use scope::{Scope, Scopes};
pub use time::Timestamp;
pub use token::{KeyHash, Token, TokenError};
pub use user::{User, UserId, Username};
