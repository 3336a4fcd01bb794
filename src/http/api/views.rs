//! The JSON shapes the API sends and accepts. Views never carry a secret or a hash; the
//! one response that carries a secret builds it explicitly from the token.

use std::fmt;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::domain::{Key, RateLimit, Timestamp, User};

/// An API key as the API shows it: never the secret, never its hash.
#[derive(Serialize, ToSchema)]
#[schema(as = Key)]
pub struct KeyView {
    /// The key's public id, used in URLs.
    #[schema(pattern = "^key_[0-9A-Za-z]{16}$", example = "key_3kTMd9vXq0LpZ2aB")]
    pub id: String,
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// The first 8 characters of the secret, to recognise it.
    #[schema(example = "ibp_a1B2")]
    pub start: String,
    /// The last 4 characters of the secret.
    #[schema(example = "x9Zq")]
    pub end: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When the key last verified a request (written behind, up to one flush interval late).
    #[schema(format = DateTime)]
    pub last_used_at: Option<String>,
    pub request_count: u64,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// When the key was revoked, or will be when it is `rotating`.
    #[schema(format = DateTime)]
    pub revoked_at: Option<String>,
    pub rate_limit: RateLimitView,
    #[schema(value_type = Vec<ScopeSchema>)]
    pub scopes: Vec<String>,
    /// `active`, `rotating` (revokes at `revoked_at`), `revoked` or `expired`.
    #[schema(schema_with = key_status)]
    pub status: &'static str,
}

fn key_status() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(["active", "rotating", "revoked", "expired"]))
        .description(Some("`active`, `rotating` (revokes at `revoked_at`), `revoked` or `expired`."))
        .build()
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

/// Requests per hour and per day; an absent or `null` limit is unlimited.
#[derive(Serialize, Default, Debug, Clone, Copy, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RateLimit)]
pub struct RateLimitView {
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub per_hour: Option<u64>,
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub per_day: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitFields {
    per_hour: Option<u64>,
    per_day: Option<u64>,
}

/// Only from a JSON object: serde's derive would also read a struct from an array in field
/// order, so `"rate_limit": [null, 5]` would quietly mean a day limit of 5.
impl<'de> Deserialize<'de> for RateLimitView {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectOnly;
        impl<'de> Visitor<'de> for ObjectOnly {
            type Value = RateLimitFields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with `per_hour` and/or `per_day`")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RateLimitFields, A::Error> {
                RateLimitFields::deserialize(MapAccessDeserializer::new(map))
            }
        }
        let RateLimitFields { per_hour, per_day } = deserializer.deserialize_map(ObjectOnly)?;
        Ok(RateLimitView { per_hour, per_day })
    }
}

impl From<RateLimit> for RateLimitView {
    fn from(limit: RateLimit) -> Self {
        RateLimitView { per_hour: limit.per_hour().map(u64::from), per_day: limit.per_day().map(u64::from) }
    }
}

/// The user who owns a key.
#[derive(Serialize, ToSchema)]
#[schema(as = User)]
pub struct UserView {
    #[schema(example = "usr_8fJ2kLq0Zx4mN7pR")]
    pub id: String,
    pub username: String,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
        UserView { id: user.id.to_string(), username: user.username.to_string() }
    }
}

/// The scope syntax (`keys:read`, `keys:write`, or a custom scope passed on to upstream
/// services), for the document only: handlers parse scopes with [`crate::domain::Scope`].
pub struct ScopeSchema;

impl utoipa::PartialSchema for ScopeSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .pattern(Some("^[a-z0-9_.:-]{1,64}$"))
            .description(Some("`keys:read`, `keys:write`, or a custom scope passed on to upstream services."))
            .examples(["billing:read"])
            .into()
    }
}

impl ToSchema for ScopeSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "Scope".into()
    }
}

/// Distinguishes a field that is absent (`None`) from one that is `null` (`Some(None)`).
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}
