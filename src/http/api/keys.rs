//! `/v1/keys`: the caller's own keys. Every lookup is by (owner, id), so another user's
//! key id answers 404 exactly like one that does not exist.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::openapi::{Authenticated as AuthProblems, BadRequest, BodyProblems, Conflict, NotFound};
use super::views::{KeyView, RateLimitView, ScopeSchema, present};
use crate::domain::token::redact;
use crate::domain::{KeyName, KeySpec, RateLimit, Scopes, Timestamp};
use crate::http::auth::{Authenticated, KeysRead, KeysWrite};
use crate::http::body::{Json, OptionalJson};
use crate::http::error::ApiError;
use crate::service::{DEFAULT_PAGE, KeyPatch, MAX_PAGE, NewKey, Service};

/// A new key. Give `expires_at` or `expires_in`, not both; without `rate_limit` the key gets
/// the server's default limit, and with `"rate_limit": null` none.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// 1–100 characters once leading and trailing whitespace is trimmed; no control characters.
    /// (No `maxLength`: a longer name padded with whitespace is accepted, trimmed.)
    #[schema(min_length = 1)]
    name: String,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<RateLimitView>)]
    rate_limit: Option<Option<RateLimitView>>,
    /// An instant in the future (RFC 3339).
    #[schema(format = DateTime)]
    expires_at: Option<String>,
    /// Seconds from now (the expiry it gives must not pass 9999-12-31T23:59:59Z).
    #[schema(minimum = 1, maximum = 9_223_372_036_854_775_807_i64)]
    expires_in: Option<u64>,
    /// At most 32 distinct scopes, each of which the calling key must hold itself. Default: none.
    #[serde(default)]
    #[schema(value_type = Vec<ScopeSchema>)]
    scopes: Vec<String>,
}

/// A change to a key. `rate_limit` replaces the whole limit (`{"per_hour": 10}` leaves the day
/// unlimited; `null` removes both).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    /// 1–100 characters once leading and trailing whitespace is trimmed; no control characters.
    /// (No `maxLength`: a longer name padded with whitespace is accepted, trimmed.)
    #[schema(min_length = 1)]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<RateLimitView>)]
    rate_limit: Option<Option<RateLimitView>>,
}

/// How long the old key keeps working after a rotation (default 0: it stops now).
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    #[serde(default)]
    #[schema(minimum = 0, maximum = 604_800)]
    grace_seconds: u64,
}

/// Revocation takes no options; the body may be absent or `{}`.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeKey {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

/// One page of the caller's keys, newest first.
#[derive(Serialize, ToSchema)]
pub struct KeyList {
    keys: Vec<KeyView>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    next_cursor: Option<String>,
}

/// A new key and its secret, which is shown this once and never again.
#[derive(Serialize, ToSchema)]
pub struct Created {
    key: KeyView,
    #[schema(pattern = "^ibp_[0-9A-Za-z]{46}$")]
    secret: String,
}

/// The successor key with its secret (shown this once), and the old key with its `revoked_at`.
#[derive(Serialize, ToSchema)]
pub struct Rotated {
    key: KeyView,
    #[schema(pattern = "^ibp_[0-9A-Za-z]{46}$")]
    secret: String,
    previous: KeyView,
}

/// List the caller's keys
#[utoipa::path(
    method(get, head),
    path = "/v1/keys",
    operation_id = "list_keys",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Page size (default 50, at most 200)"),
        ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses((status = 200, description = "A page of the caller's keys, newest first", body = KeyList), BadRequest, AuthProblems),
    security(("bearer" = ["keys:read"])),
)]
pub async fn list(
    auth: Authenticated<KeysRead>,
    service: web::Data<Service>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query: ListQuery = serde_urlencoded::from_str(req.query_string())
        .map_err(|err| ApiError::invalid(format!("query string: {}", redact(&err.to_string()))))?;
    let limit = match query.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| ApiError::invalid(format!("limit: must be a whole number from 1 to {MAX_PAGE}")))?,
    };
    let page = service.list_keys(&auth.principal.user.id, query.cursor.as_deref(), limit)?;
    let now = crate::clock::now();
    Ok(HttpResponse::Ok().json(KeyList {
        keys: page.keys.iter().map(|k| KeyView::new(k, now)).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Create a key
#[utoipa::path(
    post,
    path = "/v1/keys",
    operation_id = "create_key",
    request_body = CreateKey,
    responses((status = 201, description = "The new key and its secret", body = Created), BodyProblems, Conflict, AuthProblems),
    security(("bearer" = ["keys:write"])),
)]
pub async fn create(
    auth: Authenticated<KeysWrite>,
    service: web::Data<Service>,
    Json(body): Json<CreateKey>,
) -> Result<HttpResponse, ApiError> {
    let now_ms = crate::clock::now_millis();
    let now = Timestamp::from_millis(now_ms);
    let spec = KeySpec {
        name: KeyName::parse(&body.name).map_err(|e| ApiError::invalid(format!("name: {e}")))?,
        expires_at: expiry(body.expires_at.as_deref(), body.expires_in, now_ms)?,
        rate_limit: match body.rate_limit {
            None => service.default_rate_limit(),
            Some(limit) => rate_limit(limit)?,
        },
        scopes: Scopes::parse(&body.scopes).map_err(|e| ApiError::invalid(format!("scopes: {e}")))?,
    };
    let principal = auth.principal;
    let created = web::block(move || {
        service.create_key(&principal.user.id, spec, Some(&principal.key.scopes), principal.actor(), now)
    })
    .await??;
    Ok(secret_response(StatusCode::CREATED)
        .json(Created { key: KeyView::new(&created.key, now), secret: created.token.expose_secret().to_owned() }))
}

/// Show one of the caller's keys
#[utoipa::path(
    method(get, head),
    path = "/v1/keys/{id}",
    operation_id = "show_key",
    params(("id" = String, Path, description = "A key id (`key_…`)")),
    responses((status = 200, description = "The key", body = KeyView), NotFound, AuthProblems),
    security(("bearer" = ["keys:read"])),
)]
pub async fn show(
    auth: Authenticated<KeysRead>,
    service: web::Data<Service>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = service.key_of(&auth.principal.user.id, &id)?;
    Ok(HttpResponse::Ok().json(KeyView::new(&key, crate::clock::now())))
}

/// Rename a key or change its rate limit
#[utoipa::path(
    patch,
    path = "/v1/keys/{id}",
    operation_id = "update_key",
    params(("id" = String, Path, description = "A key id (`key_…`)")),
    request_body = UpdateKey,
    responses((status = 200, description = "The changed key", body = KeyView), BodyProblems, NotFound, AuthProblems),
    security(("bearer" = ["keys:write"])),
)]
pub async fn update(
    auth: Authenticated<KeysWrite>,
    service: web::Data<Service>,
    id: web::Path<String>,
    Json(body): Json<UpdateKey>,
) -> Result<HttpResponse, ApiError> {
    let patch = KeyPatch {
        name: body
            .name
            .as_deref()
            .map(KeyName::parse)
            .transpose()
            .map_err(|e| ApiError::invalid(format!("name: {e}")))?,
        rate_limit: body.rate_limit.map(rate_limit).transpose()?,
    };
    let now_ms = crate::clock::now_millis();
    let principal = auth.principal;
    let key =
        web::block(move || service.update_key(&principal.user.id, &id, patch, principal.actor(), now_ms)).await??;
    Ok(HttpResponse::Ok().json(KeyView::new(&key, Timestamp::from_millis(now_ms))))
}

/// Revoke a key, now and for good (idempotent)
#[utoipa::path(
    post,
    path = "/v1/keys/{id}/revoke",
    operation_id = "revoke_key",
    params(("id" = String, Path, description = "A key id (`key_…`)")),
    request_body = Option<RevokeKey>,
    responses((status = 200, description = "The key with its `revoked_at`", body = KeyView), BodyProblems, NotFound, AuthProblems),
    security(("bearer" = ["keys:write"])),
)]
pub async fn revoke(
    auth: Authenticated<KeysWrite>,
    service: web::Data<Service>,
    id: web::Path<String>,
    _body: OptionalJson<RevokeKey>,
) -> Result<HttpResponse, ApiError> {
    let now = crate::clock::now();
    let principal = auth.principal;
    let key = web::block(move || service.revoke_key(&principal.user.id, &id, principal.actor(), now)).await??;
    Ok(HttpResponse::Ok().json(KeyView::new(&key, now)))
}

/// Replace a key with a new one of the same name, scopes, limits and expiry
#[utoipa::path(
    post,
    path = "/v1/keys/{id}/rotate",
    operation_id = "rotate_key",
    params(("id" = String, Path, description = "A key id (`key_…`)")),
    request_body = Option<RotateKey>,
    responses(
        (status = 201, description = "The new key, its secret, and the old key", body = Rotated),
        BodyProblems, NotFound, Conflict, AuthProblems,
    ),
    security(("bearer" = ["keys:write"])),
)]
pub async fn rotate(
    auth: Authenticated<KeysWrite>,
    service: web::Data<Service>,
    id: web::Path<String>,
    OptionalJson(body): OptionalJson<RotateKey>,
) -> Result<HttpResponse, ApiError> {
    let now_ms = crate::clock::now_millis();
    let now = Timestamp::from_millis(now_ms);
    let principal = auth.principal;
    let (NewKey { key, token }, previous) = web::block(move || {
        service.rotate_key(
            &principal.user.id,
            &id,
            body.grace_seconds,
            Some(&principal.key.scopes),
            principal.actor(),
            now_ms,
        )
    })
    .await??;
    Ok(secret_response(StatusCode::CREATED).json(Rotated {
        key: KeyView::new(&key, now),
        secret: token.expose_secret().to_owned(),
        previous: KeyView::new(&previous, now),
    }))
}

/// A response that carries a secret: never stored by any cache.
fn secret_response(status: StatusCode) -> actix_web::HttpResponseBuilder {
    let mut builder = HttpResponse::build(status);
    builder.insert_header(("Cache-Control", "no-store"));
    builder
}

fn rate_limit(body: Option<RateLimitView>) -> Result<RateLimit, ApiError> {
    let body = body.unwrap_or_default();
    RateLimit::new(body.per_hour, body.per_day)
        .map_err(|(field, err)| ApiError::invalid(format!("rate_limit.{field}: {err}")))
}

fn expiry(at: Option<&str>, seconds: Option<u64>, now_ms: u64) -> Result<Option<Timestamp>, ApiError> {
    let now = Timestamp::from_millis(now_ms);
    match (at, seconds) {
        (Some(_), Some(_)) => Err(ApiError::invalid("expires_at, expires_in: give one or the other, not both")),
        (Some(at), None) => {
            let at = Timestamp::parse_rfc3339(at).map_err(|e| ApiError::invalid(format!("expires_at: {e}")))?;
            if at <= now {
                return Err(ApiError::invalid("expires_at: must be in the future"));
            }
            Ok(Some(at))
        }
        (None, Some(0)) => Err(ApiError::invalid("expires_in: must be at least 1 second")),
        (None, Some(seconds)) => {
            let starts = Timestamp::at_least_seconds_after(now_ms, 0);
            let at = starts.plus_seconds(seconds);
            // Refused rather than clamped, like an `expires_at` past the year 9999.
            if i64::try_from(seconds).ok().and_then(|s| starts.unix().checked_add(s)) != Some(at.unix()) {
                return Err(ApiError::invalid("expires_in: too far ahead; the latest expiry is 9999-12-31T23:59:59Z"));
            }
            Ok(Some(at))
        }
        (None, None) => Ok(None),
    }
}
