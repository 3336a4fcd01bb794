//! `/v1/health`, `/v1/me` and `/v1/auth` (forward-auth for nginx, Caddy and Traefik).

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::openapi::{Authenticated as AuthProblems, BadRequest, ForwardAuthPassed};
use super::views::{KeyView, ScopeSchema, UserView};
use crate::domain::Scope;
use crate::domain::token::redact;
use crate::http::auth::{AnyScope, Authenticated, authenticate, authenticate_identity};
use crate::http::error::ApiError;
use crate::http::rate_headers;
use crate::service::Service;

/// The server is up.
#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(schema_with = ok)]
    status: &'static str,
}

fn ok() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::String).enum_values(Some(["ok"])).build()
}

/// Is the server up? (no key needed)
#[utoipa::path(
    method(get, head),
    path = "/v1/health",
    operation_id = "health",
    responses((status = 200, description = "The server is up", body = Health)),
)]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// The key that made the request and its user.
#[derive(Serialize, ToSchema)]
pub struct Me {
    user: UserView,
    key: KeyView,
}

/// Who am I? The calling key and its user
#[utoipa::path(
    method(get, head),
    path = "/v1/me",
    operation_id = "me",
    responses((status = 200, description = "The calling key and its user", body = Me), AuthProblems),
    security(("bearer" = [])),
)]
pub async fn me(auth: Authenticated<AnyScope>, service: web::Data<Service>) -> Result<HttpResponse, ApiError> {
    let principal = auth.principal;
    // Read again for its usage counters, which the verified record may predate (see
    // `Store::write_usage`).
    let key = service.current_key(&principal.key)?;
    Ok(HttpResponse::Ok()
        .json(Me { user: UserView::from(&*principal.user), key: KeyView::new(&key, crate::clock::now()) }))
}

/// Any method. `?scope=a&scope=b` names scopes the key must hold. On success: 200, an empty
/// body, and the key id, username and scopes as headers for the proxy to pass upstream.
#[utoipa::path(
    method(get, head, post, put, patch, delete, options, trace),
    path = "/v1/auth",
    operation_id = "forward_auth",
    summary = "Forward-auth: verify the request's key for a proxy (nginx `auth_request`, Caddy `forward_auth`, \
        Traefik ForwardAuth)",
    description = "Answers every method alike, because a proxy may pass the method of the request it \
        guards. The body is ignored. `?scope=a&scope=b` names scopes the key must hold; other query \
        parameters are ignored. On success: 200, an empty body, and the key id, username and scopes \
        as headers for the proxy to pass upstream.",
    params(("scope" = Option<Vec<ScopeSchema>>, Query, explode, description = "A scope the key must hold; repeat for several")),
    responses(ForwardAuthPassed, BadRequest, AuthProblems),
    security(("bearer" = [])),
)]
pub async fn forward_auth(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let required = match required_scopes(req.query_string()) {
        Ok(required) => required,
        Err(err) => {
            // The key is checked first, as on every other route: a caller without a valid
            // key gets 401 and learns nothing about what else is wrong with the request.
            authenticate(&req, &[])?;
            return Err(err);
        }
    };
    let required: Vec<&str> = required.iter().map(Scope::as_str).collect();
    let verified = authenticate_identity(&req, &required)?;
    let mut response = HttpResponse::Ok().finish();
    if let Some(decision) = &verified.rate {
        rate_headers::insert(response.headers_mut(), decision);
    }
    // Names parsed once, values checked by `HeaderValue` (ids, usernames and scopes are
    // printable ASCII by construction, so a failure here is a bug, answered as a 500).
    let identity = &verified.identity;
    let headers = response.headers_mut();
    for (name, value) in [(&KEY_ID, identity.key_id()), (&USER, identity.username()), (&SCOPES, identity.scopes())] {
        let value = HeaderValue::from_str(value)
            .map_err(|e| ApiError::unexpected(anyhow::anyhow!("identity header {name}: {e}")))?;
        headers.insert(name.clone(), value);
    }
    Ok(response)
}

static KEY_ID: HeaderName = HeaderName::from_static("x-iblueprint-key-id");
static USER: HeaderName = HeaderName::from_static("x-iblueprint-user");
static SCOPES: HeaderName = HeaderName::from_static("x-iblueprint-scopes");

fn required_scopes(query: &str) -> Result<Vec<Scope>, ApiError> {
    if query.is_empty() {
        // The common case for a proxy's sub-request, answered without the parser's allocations.
        return Ok(Vec::new());
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
        .map_err(|err| ApiError::invalid(format!("query string: {}", redact(&err.to_string()))))?;
    pairs
        .iter()
        .filter(|(name, _)| name == "scope")
        .map(|(_, value)| Scope::parse(value).map_err(|e| ApiError::invalid(format!("scope: {e}"))))
        .collect()
}
