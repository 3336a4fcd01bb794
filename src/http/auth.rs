//! Bearer-key verification as an extractor whose type names the scope it needs.
//!
//! A handler that takes `Authenticated<KeysWrite>` cannot run unless the request carried a
//! valid key holding `keys:write`; forgetting the check is a compile error, not a review
//! comment. The check itself is [`Service::verify`]: it reads the store's shared view, which
//! every commit replaces before it returns, so a revocation committed by any worker is seen
//! by the very next request in every worker.

use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};

use super::error::ApiError;
use crate::domain::ratelimit::Decision;
use crate::domain::{Key, Scope};
use crate::service::{Principal, Service, VerifyError, verification_outcome};

/// The scopes a handler needs, as a type.
pub trait ScopeRule {
    const REQUIRED: &'static [&'static str];
}

/// Any valid key, whatever its scopes.
pub struct AnyScope;
impl ScopeRule for AnyScope {
    const REQUIRED: &'static [&'static str] = &[];
}

/// Listing and showing the caller's own keys.
pub struct KeysRead;
impl ScopeRule for KeysRead {
    const REQUIRED: &'static [&'static str] = &[Scope::KEYS_READ];
}

/// Creating, changing, rotating and revoking the caller's own keys.
pub struct KeysWrite;
impl ScopeRule for KeysWrite {
    const REQUIRED: &'static [&'static str] = &[Scope::KEYS_WRITE];
}

/// A request whose key was verified and holds every scope `S` requires.
pub struct Authenticated<S: ScopeRule> {
    pub principal: Principal,
    _rule: PhantomData<S>,
}

/// The key a request presented, for the request log (which shows its public id, never the
/// secret), and where its rate limits stand, for the `RateLimit` response headers. One
/// request extension for both, sharing the verified record: this runs per request.
pub struct PresentedKey {
    pub key: Arc<Key>,
    pub rate: Option<Decision>,
}

impl<S: ScopeRule> FromRequest for Authenticated<S> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req, S::REQUIRED).map(|principal| Authenticated { principal, _rule: PhantomData }))
    }
}

/// Verifies the request's bearer key against `required` scopes. Also used directly by
/// forward-auth, whose scopes come from the query string.
pub fn authenticate(req: &HttpRequest, required: &[&str]) -> Result<Principal, ApiError> {
    let service = req
        .app_data::<web::Data<Service>>()
        .ok_or_else(|| ApiError::unexpected(anyhow::anyhow!("service missing from app data")))?;
    let presented = bearer_token(req)?;
    let started = Instant::now();
    let verdict = service.verify(presented, required, crate::clock::now_millis());
    service.metrics().record_verification(verification_outcome(&verdict), started.elapsed());
    match verdict {
        Ok(principal) => {
            req.extensions_mut().insert(PresentedKey { key: Arc::clone(&principal.key), rate: principal.rate });
            Ok(principal)
        }
        Err(err) => {
            let presented = match &err {
                VerifyError::Denied { key, .. } => Some(PresentedKey { key: Arc::clone(key), rate: None }),
                VerifyError::RateLimited { key, decision } => {
                    Some(PresentedKey { key: Arc::clone(key), rate: Some(**decision) })
                }
                VerifyError::Invalid | VerifyError::Store(_) => None,
            };
            if let Some(presented) = presented {
                req.extensions_mut().insert(presented);
            }
            Err(err.into())
        }
    }
}

/// The token from `Authorization: Bearer <token>`. A header that is present but is not a
/// bearer credential counts as an invalid key, not a missing one.
fn bearer_token(req: &HttpRequest) -> Result<&str, ApiError> {
    let value = req.headers().get(header::AUTHORIZATION).ok_or(ApiError::MissingKey)?.as_bytes();
    let space = value.iter().position(|&b| b == b' ').ok_or(ApiError::InvalidKey)?;
    let (scheme, token) = (&value[..space], &value[space + 1..]);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(ApiError::InvalidKey);
    }
    // Whatever the bytes are, a token is ASCII: anything else fails the token parse later.
    std::str::from_utf8(token.trim_ascii()).map_err(|_| ApiError::InvalidKey)
}
