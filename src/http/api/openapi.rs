//! The OpenAPI 3.1 document of `/v1`, served at `GET /v1/openapi.json` (no key needed).
//!
//! Paths come from the route table ([`super::ENDPOINTS`]): each handler's `#[utoipa::path]`
//! annotation, so a route and its documentation are one declaration. The shapes of bodies are
//! derived from the http-side view structs (`views.rs`, `keys.rs`, `me.rs`); `domain` and
//! `store` know nothing of OpenAPI.
//!
//! The parts utoipa 5 cannot express are written here as JSON and merged in: the RFC 9457
//! problem responses (one per status, each listing the `code`s it can carry, derived from
//! [`PROBLEMS`]), and response headers that are `required` (`WWW-Authenticate` on a 401,
//! `Retry-After` on a 429, the identity headers of forward-auth), which utoipa's `Header` lacks.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use actix_web::HttpResponse;
use actix_web::http::header::ContentType;
use serde_json::{Value, json};
use utoipa::openapi::path::{HttpMethod, PathItem, PathsBuilder};
use utoipa::openapi::{Ref, RefOr, Response};
use utoipa::{IntoResponses, OpenApi};

use super::keys::{CreateKey, Created, KeyList, RevokeKey, RotateKey, Rotated, UpdateKey};
use super::me::{Health, Me};
use super::views::{KeyView, RateLimitView, ScopeSchema, UserView};
use crate::http::error::ApiError;

/// Every problem the API can answer with: (status, component name, what it means, codes).
/// A unit test holds this against [`ApiError`], so a new error variant must be listed here.
pub const PROBLEMS: &[(u16, &str, &str, &[&str])] = &[
    (
        400,
        "BadRequest",
        "Malformed JSON, an unknown field, or an invalid value; `detail` names the field",
        &["invalid_request"],
    ),
    (
        401,
        "Unauthorized",
        "No API key, or one that is malformed, has a bad checksum, or does not exist",
        &["missing_key", "invalid_key"],
    ),
    (
        403,
        "Forbidden",
        "The key is revoked or expired, its owner is disabled, or it lacks a needed scope",
        &["key_revoked", "key_expired", "user_disabled", "insufficient_scope"],
    ),
    (404, "NotFound", "No such key among the caller's own (another user's key answers the same)", &["not_found"]),
    (
        405,
        "MethodNotAllowed",
        "The path exists but not with this method; `Allow` lists those it has",
        &["method_not_allowed"],
    ),
    (
        409,
        "Conflict",
        "The key cannot change this way (e.g. rotating a revoked key), or the key limit is reached",
        &["conflict", "key_limit_reached"],
    ),
    (413, "PayloadTooLarge", "The request body is larger than 64 KiB", &["payload_too_large"]),
    (429, "TooManyRequests", "The key's rate limit is used up; retry after `Retry-After` seconds", &["rate_limited"]),
    (500, "InternalError", "Something failed on the server", &["internal_error"]),
    (
        503,
        "ServiceUnavailable",
        "The data file failed: the request was not completed, and a change it asked for is unconfirmed",
        &["storage_unavailable"],
    ),
];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "iblueprint",
        description = "API keys: create, list, rotate and revoke your own keys, and verify keys for a \
            forward-auth proxy.\n\n\
            Every request except `GET /v1/health` and `GET /v1/openapi.json` carries \
            `Authorization: Bearer ibp_…`. Errors are RFC 9457 `application/problem+json` bodies with \
            a stable `code`. Responses to a key with rate limits carry `RateLimit-Policy` and \
            `RateLimit` (draft-ietf-httpapi-ratelimit-headers). A method a path does not list \
            answers 405 with an `Allow` header; an unknown path answers 404. Times are RFC 3339 UTC. \
            Limits on the connection itself are answered before any route, without a problem body: \
            408 for a request head slower than the server's request timeout, 431 for too many or \
            too large headers.",
    ),
    components(schemas(
        KeyView, RateLimitView, ScopeSchema, UserView, Me, Health, KeyList, Created, Rotated, CreateKey, UpdateKey, RotateKey,
        RevokeKey
    )),
    tags(
        (name = "keys", description = "The caller's own keys"),
        (name = "verification", description = "Forward-auth for reverse proxies"),
        (name = "service", description = "Health and this document"),
    ),
)]
struct Derived;

/// This document
#[utoipa::path(
    method(get, head),
    path = "/v1/openapi.json",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)),
)]
pub async fn openapi_json() -> Result<HttpResponse, ApiError> {
    static JSON: LazyLock<Result<Vec<u8>, String>> =
        LazyLock::new(|| document().and_then(|doc| serde_json::to_vec(&doc)).map_err(|e| e.to_string()));
    match &*JSON {
        Ok(bytes) => Ok(HttpResponse::Ok().insert_header(ContentType::json()).body(bytes.clone())),
        Err(err) => Err(ApiError::unexpected(anyhow::anyhow!("OpenAPI document: {err}"))),
    }
}

/// The whole document as JSON.
pub fn document() -> Result<Value, serde_json::Error> {
    let mut paths = PathsBuilder::new();
    for (path, methods, operation) in super::documented() {
        for method in methods {
            let mut operation = operation.clone();
            // One handler for several methods (forward-auth) is one operation per method,
            // and OpenAPI wants their ids unique.
            if methods.len() > 1 {
                operation.operation_id = operation.operation_id.map(|id| format!("{id}_{}", name_of(method)));
            }
            paths = paths.path(path, PathItem::new(method.clone(), operation));
        }
    }
    let mut api = Derived::openapi();
    api.paths = paths.build();
    let mut doc = serde_json::to_value(&api)?;
    add_rate_headers(&mut doc);
    optional_bodies_are_absent_not_null(&mut doc);
    let components = &mut doc["components"];
    // What utoipa cannot say: a new key's expiry is `expires_at` or `expires_in`, not both
    // (a `null` counts as absent, as it does on the server).
    components["schemas"]["CreateKey"]["not"] = json!({
        "required": ["expires_at", "expires_in"],
        "properties": {"expires_at": {"type": "string"}, "expires_in": {"type": "integer"}}
    });
    components["schemas"]["Problem"] = problem_schema();
    components["responses"] = responses();
    components["headers"] = headers();
    components["securitySchemes"] = json!({
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "ibp_ + 46 base62 characters",
            "description": "An API key. `keys:read` and `keys:write` are the scopes some operations need."
        }
    });
    Ok(doc)
}

fn name_of(method: &HttpMethod) -> String {
    serde_json::to_value(method).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Any response to a request whose key has limits carries the two rate-limit headers, the
/// handler's own answers included; problem responses name them in their components.
fn add_rate_headers(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for operation in paths.values_mut().filter_map(Value::as_object_mut).flat_map(|item| item.values_mut()) {
        let secured = operation.get("security").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
        let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) else { continue };
        for (status, response) in responses.iter_mut() {
            if secured && status.starts_with('2') && response.get("$ref").is_none() {
                response["headers"] = rate_header_refs(false);
            }
        }
    }
}

/// utoipa writes an optional body (`Option<T>`) as `oneOf: [null, T]`; ours may be absent
/// (or whitespace), but a JSON `null` is refused like any other non-object.
fn optional_bodies_are_absent_not_null(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return };
    for operation in paths.values_mut().filter_map(Value::as_object_mut).flat_map(|item| item.values_mut()) {
        let Some(body) = operation.get_mut("requestBody") else { continue };
        if body.get("required") == Some(&Value::Bool(true)) {
            continue;
        }
        for media in body.get_mut("content").and_then(Value::as_object_mut).into_iter().flat_map(|c| c.values_mut()) {
            let schema = &mut media["schema"];
            let not_null = schema
                .get("oneOf")
                .and_then(Value::as_array)
                .and_then(|choices| choices.iter().find(|c| c.get("type") != Some(&json!("null"))).cloned());
            if let Some(not_null) = not_null {
                *schema = not_null;
            }
        }
    }
}

fn rate_header_refs(required: bool) -> Value {
    if required {
        json!({
            "RateLimit-Policy": {"$ref": "#/components/headers/RateLimit-Policy-Required"},
            "RateLimit": {"$ref": "#/components/headers/RateLimit-Required"},
        })
    } else {
        json!({
            "RateLimit-Policy": {"$ref": "#/components/headers/RateLimit-Policy"},
            "RateLimit": {"$ref": "#/components/headers/RateLimit"},
        })
    }
}

fn problem_schema() -> Value {
    let codes: Vec<&str> = PROBLEMS.iter().flat_map(|(_, _, _, codes)| codes.iter().copied()).collect();
    json!({
        "type": "object",
        "description": "An RFC 9457 problem.",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string", "format": "uri", "examples": ["urn:iblueprint:problem:not_found"]},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string", "description": "What went wrong, naming the field at fault."},
            "code": {"type": "string", "enum": codes, "description": "Stable and machine-readable: switch on this."}
        }
    })
}

fn responses() -> Value {
    let mut out = serde_json::Map::new();
    for (status, name, description, codes) in PROBLEMS {
        let mut response = json!({
            "description": description,
            "content": {"application/problem+json": {"schema": {"allOf": [
                {"$ref": "#/components/schemas/Problem"},
                {"properties": {"status": {"const": status}, "code": {"enum": codes}}}
            ]}}}
        });
        let headers = match status {
            401 => json!({"WWW-Authenticate": {"$ref": "#/components/headers/WWW-Authenticate-Required"}}),
            // Only a missing scope names one; the other denials have no challenge.
            403 => json!({"WWW-Authenticate": {"$ref": "#/components/headers/WWW-Authenticate"}}),
            405 => json!({"Allow": {"$ref": "#/components/headers/Allow"}}),
            429 => {
                let mut headers = rate_header_refs(true);
                headers["Retry-After"] = json!({"$ref": "#/components/headers/Retry-After"});
                headers
            }
            // A problem after the key was verified (a bad body, a foreign id) still reports its limits.
            _ => rate_header_refs(false),
        };
        response["headers"] = headers;
        out.insert((*name).to_owned(), response);
    }
    out.insert(
        "ForwardAuthPassed".to_owned(),
        json!({
            "description": "The key is valid and holds every `scope` asked for. The body is empty; the \
                headers identify the key for the proxy to pass upstream.",
            "headers": {
                "X-Iblueprint-Key-Id": {"$ref": "#/components/headers/X-Iblueprint-Key-Id"},
                "X-Iblueprint-User": {"$ref": "#/components/headers/X-Iblueprint-User"},
                "X-Iblueprint-Scopes": {"$ref": "#/components/headers/X-Iblueprint-Scopes"},
                "RateLimit-Policy": {"$ref": "#/components/headers/RateLimit-Policy"},
                "RateLimit": {"$ref": "#/components/headers/RateLimit"},
            }
        }),
    );
    Value::Object(out)
}

fn headers() -> Value {
    let policy = json!({
        "description": "The key's limits, e.g. `\"hour\";q=100;w=3600, \"day\";q=1000;w=86400`. Sent when the key has limits.",
        "schema": {"type": "string"}
    });
    let state = json!({
        "description": "Whole requests left and seconds until full, per window, e.g. `\"hour\";r=99;t=36`. Sent when the key has limits.",
        "schema": {"type": "string"}
    });
    let challenge = json!({
        "description": "`Bearer realm=\"iblueprint\"`, with `error=\"invalid_token\"` or `error=\"insufficient_scope\"`.",
        "schema": {"type": "string", "pattern": "^Bearer realm=\"iblueprint\""}
    });
    let required = |mut header: Value| {
        header["required"] = json!(true);
        header
    };
    json!({
        "RateLimit-Policy": policy,
        "RateLimit": state,
        "RateLimit-Policy-Required": required(policy.clone()),
        "RateLimit-Required": required(state.clone()),
        "WWW-Authenticate": challenge,
        "WWW-Authenticate-Required": required(challenge.clone()),
        "Retry-After": {
            "description": "Whole seconds until the request would pass.",
            "required": true,
            "schema": {"type": "integer", "minimum": 1}
        },
        "Allow": {
            "description": "The methods the path has, e.g. `GET, POST`.",
            "required": true,
            "schema": {"type": "string"}
        },
        "X-Iblueprint-Key-Id": {
            "description": "The verified key's id.",
            "required": true,
            "schema": {"type": "string", "pattern": "^key_[0-9A-Za-z]{16}$"}
        },
        "X-Iblueprint-User": {
            "description": "The username of the key's owner.",
            "required": true,
            "schema": {"type": "string"}
        },
        "X-Iblueprint-Scopes": {
            "description": "The key's scopes, space separated (empty when it has none).",
            "required": true,
            "schema": {"type": "string"}
        }
    })
}

/// Problem responses, by status, as `#[utoipa::path(responses(...))]` entries.
macro_rules! problem_responses {
    ($($(#[$doc:meta])* $name:ident => [$($status:literal),+];)*) => {$(
        $(#[$doc])*
        pub struct $name;
        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                [$($status),+].into_iter().map(|status: u16| (status.to_string(), problem_ref(status))).collect()
            }
        }
    )*};
}

problem_responses! {
    /// What any operation that needs a key can answer before its handler runs.
    Authenticated => [401, 403, 429, 500, 503];
    BadRequest => [400];
    /// What an operation that reads a JSON body can answer about it.
    BodyProblems => [400, 413];
    NotFound => [404];
    Conflict => [409];
}

/// The 200 of forward-auth, with its required identity headers.
pub struct ForwardAuthPassed;
impl IntoResponses for ForwardAuthPassed {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        BTreeMap::from([("200".to_owned(), RefOr::Ref(Ref::from_response_name("ForwardAuthPassed")))])
    }
}

fn problem_ref(status: u16) -> RefOr<Response> {
    let name = PROBLEMS.iter().find(|(s, ..)| *s == status).map_or("InternalError", |(_, name, ..)| name);
    RefOr::Ref(Ref::from_response_name(name))
}

#[cfg(test)]
mod tests {
    use actix_web::ResponseError;

    use super::*;

    #[test]
    fn every_api_error_is_a_documented_problem() {
        // A match, so that a new variant fails to compile until it is listed here.
        let every = |err: &ApiError| match err {
            ApiError::MissingKey
            | ApiError::InvalidKey
            | ApiError::KeyRevoked
            | ApiError::KeyExpired
            | ApiError::UserDisabled
            | ApiError::InsufficientScope(_)
            | ApiError::RateLimited(_)
            | ApiError::InvalidRequest(_)
            | ApiError::PayloadTooLarge(_)
            | ApiError::NotFound
            | ApiError::MethodNotAllowed(_)
            | ApiError::Conflict(_)
            | ApiError::KeyLimitReached(_)
            | ApiError::StorageUnavailable(_)
            | ApiError::Unexpected(_) => (),
        };
        let errors = [
            ApiError::MissingKey,
            ApiError::InvalidKey,
            ApiError::KeyRevoked,
            ApiError::KeyExpired,
            ApiError::UserDisabled,
            ApiError::InsufficientScope(vec![]),
            ApiError::RateLimited(1),
            ApiError::InvalidRequest(String::new()),
            ApiError::PayloadTooLarge(1),
            ApiError::NotFound,
            ApiError::MethodNotAllowed("GET"),
            ApiError::Conflict(String::new()),
            ApiError::KeyLimitReached(String::new()),
            ApiError::StorageUnavailable(crate::store::StoreError::Missing(Default::default())),
            ApiError::unexpected(anyhow::anyhow!("x")),
        ];
        for err in &errors {
            every(err);
            let status = err.status_code().as_u16();
            let listed = PROBLEMS.iter().find(|(s, ..)| *s == status);
            assert!(
                listed.is_some_and(|(_, _, _, codes)| codes.contains(&err.code())),
                "{status} {} is not in PROBLEMS",
                err.code()
            );
        }
    }
}
