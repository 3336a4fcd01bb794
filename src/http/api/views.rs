//! The JSON shapes the API sends and accepts. Views never carry a secret or a hash; the
//! one response that carries a secret builds it explicitly from the token.

use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::{Key, RateLimit, Timestamp, User};

#[derive(Serialize)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub start: String,
    pub end: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub request_count: u64,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub rate_limit: RateLimitView,
    pub scopes: Vec<String>,
    /// `active`, `rotating` (revokes at `revoked_at`), `revoked` or `expired`.
    pub status: &'static str,
}

impl KeyView {
    pub fn new(key: &Key, now: Timestamp) -> Self {
        KeyView {
            id: key.id.to_string(),
            name: key.name.to_string(),
            start: key.start.clone(),
            end: key.end.clone(),
            created_at: key.created_at.to_string(),
            last_used_at: key.last_used_at.map(|t| t.to_string()),
            request_count: key.request_count,
            expires_at: key.expires_at.map(|t| t.to_string()),
            revoked_at: key.revoked_at.map(|t| t.to_string()),
            rate_limit: RateLimitView::from(key.rate_limit),
            scopes: key.scopes.iter().map(|s| s.to_string()).collect(),
            status: key.status(now).label(),
        }
    }
}

#[derive(Serialize, Deserialize, Default, Debug, Clone, Copy)]
#[serde(deny_unknown_fields)]
pub struct RateLimitView {
    pub per_hour: Option<u64>,
    pub per_day: Option<u64>,
}

impl From<RateLimit> for RateLimitView {
    fn from(limit: RateLimit) -> Self {
        RateLimitView { per_hour: limit.per_hour().map(u64::from), per_day: limit.per_day().map(u64::from) }
    }
}

#[derive(Serialize)]
pub struct UserView {
    pub id: String,
    pub username: String,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
        UserView { id: user.id.to_string(), username: user.username.to_string() }
    }
}

/// Distinguishes a field that is absent (`None`) from one that is `null` (`Some(None)`).
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}
