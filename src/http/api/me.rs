//! `/v1/health`, `/v1/me` and `/v1/auth` (forward-auth for nginx, Caddy and Traefik).

use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;

use super::views::{KeyView, UserView};
use crate::domain::Scope;
use crate::domain::token::redact;
use crate::http::auth::{AnyScope, Authenticated, authenticate};
use crate::http::error::ApiError;

pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

#[derive(Serialize)]
struct Me {
    user: UserView,
    key: KeyView,
}

pub async fn me(auth: Authenticated<AnyScope>) -> HttpResponse {
    let principal = auth.principal;
    HttpResponse::Ok()
        .json(Me { user: UserView::from(&*principal.user), key: KeyView::new(&principal.key, crate::clock::now()) })
}

/// Any method. `?scope=a&scope=b` names scopes the key must hold. On success: 200, an empty
/// body, and the key id, username and scopes as headers for the proxy to pass upstream.
pub async fn forward_auth(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(req.query_string())
        .map_err(|err| ApiError::invalid(format!("query string: {}", redact(&err.to_string()))))?;
    let mut required = Vec::new();
    for (_, value) in pairs.iter().filter(|(name, _)| name == "scope") {
        let scope = Scope::parse(value).map_err(|e| ApiError::invalid(format!("scope: {e}")))?;
        required.push(scope);
    }
    let required: Vec<&str> = required.iter().map(Scope::as_str).collect();
    let principal = authenticate(&req, &required)?;
    Ok(HttpResponse::Ok()
        .insert_header(("X-Iblueprint-Key-Id", principal.key.id.as_str()))
        .insert_header(("X-Iblueprint-User", principal.user.username.as_str()))
        .insert_header(("X-Iblueprint-Scopes", principal.key.scopes.joined()))
        .finish())
}
