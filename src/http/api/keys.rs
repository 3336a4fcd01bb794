//! `/v1/keys`: the caller's own keys. Every lookup is by (owner, id), so another user's
//! key id answers 404 exactly like one that does not exist.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::views::{KeyView, RateLimitView, present};
use crate::domain::token::redact;
use crate::domain::{KeyName, KeySpec, RateLimit, Scopes, Timestamp};
use crate::http::auth::{Authenticated, KeysRead, KeysWrite};
use crate::http::body::{Json, OptionalJson};
use crate::http::error::ApiError;
use crate::service::{DEFAULT_PAGE, KeyPatch, MAX_PAGE, NewKey, Service};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    name: String,
    #[serde(default, deserialize_with = "present")]
    rate_limit: Option<Option<RateLimitView>>,
    expires_at: Option<String>,
    expires_in: Option<u64>,
    #[serde(default)]
    scopes: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    rate_limit: Option<Option<RateLimitView>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    #[serde(default)]
    grace_seconds: u64,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RevokeKey {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct KeyList {
    keys: Vec<KeyView>,
    next_cursor: Option<String>,
}

#[derive(Serialize)]
struct Created {
    key: KeyView,
    secret: String,
}

#[derive(Serialize)]
struct Rotated {
    key: KeyView,
    secret: String,
    previous: KeyView,
}

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

pub async fn create(
    auth: Authenticated<KeysWrite>,
    service: web::Data<Service>,
    Json(body): Json<CreateKey>,
) -> Result<HttpResponse, ApiError> {
    let now = crate::clock::now();
    let spec = KeySpec {
        name: KeyName::parse(&body.name).map_err(|e| ApiError::invalid(format!("name: {e}")))?,
        expires_at: expiry(body.expires_at.as_deref(), body.expires_in, now)?,
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

pub async fn show(
    auth: Authenticated<KeysRead>,
    service: web::Data<Service>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = service.key_of(&auth.principal.user.id, &id)?;
    Ok(HttpResponse::Ok().json(KeyView::new(&key, crate::clock::now())))
}

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
    let now = crate::clock::now();
    let principal = auth.principal;
    let key = web::block(move || service.update_key(&principal.user.id, &id, patch, principal.actor(), now)).await??;
    Ok(HttpResponse::Ok().json(KeyView::new(&key, now)))
}

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

pub async fn rotate(
    auth: Authenticated<KeysWrite>,
    service: web::Data<Service>,
    id: web::Path<String>,
    OptionalJson(body): OptionalJson<RotateKey>,
) -> Result<HttpResponse, ApiError> {
    let now = crate::clock::now();
    let principal = auth.principal;
    let (NewKey { key, token }, previous) = web::block(move || {
        service.rotate_key(
            &principal.user.id,
            &id,
            body.grace_seconds,
            Some(&principal.key.scopes),
            principal.actor(),
            now,
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

fn expiry(at: Option<&str>, seconds: Option<u64>, now: Timestamp) -> Result<Option<Timestamp>, ApiError> {
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
        (None, Some(seconds)) => Ok(Some(now.plus_seconds(seconds))),
        (None, None) => Ok(None),
    }
}
