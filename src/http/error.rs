//! Every error the API can answer with, as an RFC 9457 `application/problem+json` body.
//!
//! Expected outcomes (a bad key, a missing field, another user's key) are variants with a
//! fixed status and `code`. Anything else is `Unexpected`: the log gets the whole cause
//! chain, the client a plain 500 that reveals nothing.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::Denial;
use crate::service::{ServiceError, VerifyError};

const REALM: &str = "Bearer realm=\"iblueprint\"";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("this request needs an API key in the Authorization header: `Authorization: Bearer ibp_…`")]
    MissingKey,
    #[error("the API key is malformed, has a bad checksum, or does not exist")]
    InvalidKey,
    #[error("the API key has been revoked")]
    KeyRevoked,
    #[error("the API key has expired")]
    KeyExpired,
    #[error("the owner of this API key is disabled")]
    UserDisabled,
    #[error("the API key lacks the scope(s): {}", .0.join(", "))]
    InsufficientScope(Vec<String>),
    #[error("the API key's rate limit is used up; retry in {0} seconds")]
    RateLimited(u64),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("request body is larger than {} KiB", .0 / 1024)]
    PayloadTooLarge(usize),
    #[error("no such resource")]
    NotFound,
    /// Carries the methods the resource does allow, for the `Allow` header.
    #[error("this method is not allowed here; allowed: {0}")]
    MethodNotAllowed(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    KeyLimitReached(String),
    /// The data file failed (I/O). Carries the cause for the log only. A change that met
    /// the failure is unconfirmed rather than "not made": see `store` (I/O errors).
    #[error(
        "the data store failed: the request was not completed, and a change it asked for is unconfirmed; check once the service is back"
    )]
    StorageUnavailable(#[source] crate::store::StoreError),
    #[error("internal error")]
    Unexpected(#[source] anyhow::Error),
}

impl ApiError {
    pub fn invalid(detail: impl Into<String>) -> Self {
        ApiError::InvalidRequest(detail.into())
    }

    pub fn unexpected(err: impl Into<anyhow::Error>) -> Self {
        ApiError::Unexpected(err.into())
    }

    /// The stable, machine-readable `code` clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MissingKey => "missing_key",
            ApiError::InvalidKey => "invalid_key",
            ApiError::KeyRevoked => "key_revoked",
            ApiError::KeyExpired => "key_expired",
            ApiError::UserDisabled => "user_disabled",
            ApiError::InsufficientScope(_) => "insufficient_scope",
            ApiError::RateLimited(_) => "rate_limited",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::KeyLimitReached(_) => "key_limit_reached",
            ApiError::StorageUnavailable(_) => "storage_unavailable",
            ApiError::Unexpected(_) => "internal_error",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::MissingKey => "API key required",
            ApiError::InvalidKey => "Invalid API key",
            ApiError::KeyRevoked => "API key revoked",
            ApiError::KeyExpired => "API key expired",
            ApiError::UserDisabled => "User disabled",
            ApiError::InsufficientScope(_) => "Insufficient scope",
            ApiError::RateLimited(_) => "Rate limit exceeded",
            ApiError::InvalidRequest(_) => "Invalid request",
            ApiError::PayloadTooLarge(_) => "Request body too large",
            ApiError::NotFound => "Not found",
            ApiError::MethodNotAllowed(_) => "Method not allowed",
            ApiError::Conflict(_) => "Conflict",
            ApiError::KeyLimitReached(_) => "Key limit reached",
            ApiError::StorageUnavailable(_) => "Storage unavailable",
            ApiError::Unexpected(_) => "Internal server error",
        }
    }

    fn www_authenticate(&self) -> Option<String> {
        match self {
            ApiError::MissingKey => Some(REALM.to_owned()),
            ApiError::InvalidKey => Some(format!("{REALM}, error=\"invalid_token\"")),
            ApiError::InsufficientScope(missing) => {
                Some(format!("{REALM}, error=\"insufficient_scope\", scope=\"{}\"", missing.join(" ")))
            }
            _ => None,
        }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    code: &'a str,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::MissingKey | ApiError::InvalidKey => StatusCode::UNAUTHORIZED,
            ApiError::KeyRevoked | ApiError::KeyExpired | ApiError::UserDisabled | ApiError::InsufficientScope(_) => {
                StatusCode::FORBIDDEN
            }
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) | ApiError::KeyLimitReached(_) => StatusCode::CONFLICT,
            ApiError::StorageUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Unexpected(cause) = self {
            tracing::error!(error = format!("{cause:#}"), "request failed");
        }
        if let ApiError::StorageUnavailable(cause) = self {
            tracing::error!(error = %cause, "request failed: the data file is unavailable");
        }
        let status = self.status_code();
        let code = self.code();
        let problem = Problem {
            kind: format!("urn:iblueprint:problem:{code}"),
            title: self.title(),
            status: status.as_u16(),
            detail: self.to_string(),
            code,
        };
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json")));
        response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        if let Some(value) = self.www_authenticate() {
            response.insert_header((header::WWW_AUTHENTICATE, value));
        }
        if let ApiError::MethodNotAllowed(allowed) = self {
            response.insert_header((header::ALLOW, *allowed));
        }
        if let ApiError::RateLimited(seconds) = self {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(problem)
    }
}

impl From<VerifyError> for ApiError {
    fn from(err: VerifyError) -> Self {
        match err {
            VerifyError::Invalid => ApiError::InvalidKey,
            VerifyError::Denied { denial, .. } => match denial {
                Denial::Revoked => ApiError::KeyRevoked,
                Denial::Expired => ApiError::KeyExpired,
                Denial::UserDisabled => ApiError::UserDisabled,
                Denial::InsufficientScope { missing } => ApiError::InsufficientScope(missing),
            },
            VerifyError::RateLimited { decision, .. } => ApiError::RateLimited(decision.retry_after.max(1)),
            VerifyError::Store(err) => ApiError::from(err),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::NotFound => ApiError::NotFound,
            ServiceError::Invalid { .. } => ApiError::InvalidRequest(err.to_string()),
            ServiceError::Conflict(message) => ApiError::Conflict(message),
            ServiceError::KeyLimitReached(_) => ApiError::KeyLimitReached(err.to_string()),
            ServiceError::Store(err) => ApiError::from(err),
            other => ApiError::unexpected(other),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        if err.is_unavailable() { ApiError::StorageUnavailable(err) } else { ApiError::unexpected(err) }
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(err: actix_web::error::BlockingError) -> Self {
        ApiError::unexpected(anyhow::anyhow!("blocking task failed: {err}"))
    }
}
