//! Bearer-key verification as an extractor whose type names the scope it needs.
//!
//! A handler that takes `Authenticated<KeysWrite>` cannot run unless the request carried a
//! valid key holding `keys:write`; forgetting the check is a compile error, not a review
//! comment. The check itself is [`Service::verify`]: it reads the store's shared view, which
//! every commit replaces before it returns, so a revocation committed by any worker is seen
//! by the very next request in every worker.

use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::time::Instant;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};

use super::error::ApiError;
use crate::domain::Scope;
use crate::domain::ratelimit::Decision;
use crate::service::{Identity, Principal, Service, Verified, VerifyError, verification_outcome};

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
/// secret), and where its rate limits stand, for the `RateLimit` response headers (`None`:
/// no limits, or the handler set them). One request extension for both; the identity is
/// the verification memo's, shared, not copied.
pub struct PresentedKey {
    pub identity: Identity,
    pub rate: Option<Decision>,
}

impl<S: ScopeRule> FromRequest for Authenticated<S> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req, S::REQUIRED).map(|principal| Authenticated { principal, _rule: PhantomData }))
    }
}

/// Verifies the request's bearer key against `required` scopes, and leaves the key in the
/// request for [`super::finish`] (the `RateLimit` headers, the log line).
pub fn authenticate(req: &HttpRequest, required: &[&str]) -> Result<Principal, ApiError> {
    let principal = verify(req, |service, presented, now_ms| service.verify(presented, required, now_ms))?;
    req.extensions_mut().insert(PresentedKey { identity: principal.identity.clone(), rate: principal.rate });
    Ok(principal)
}

/// [`authenticate`] for forward-auth, which a proxy calls before every request it guards:
/// it returns only the key's identity ([`Service::verify_identity`]), and the handler sets
/// the `RateLimit` headers of a passed check itself, so a passed key is left in the request
/// only when the request log, which names it, is on.
pub fn authenticate_identity(req: &HttpRequest, required: &[&str]) -> Result<Verified, ApiError> {
    let verified = verify(req, |service, presented, now_ms| service.verify_identity(presented, required, now_ms))?;
    if super::finish::logs_requests() {
        req.extensions_mut().insert(PresentedKey { identity: verified.identity.clone(), rate: None });
    }
    Ok(verified)
}

/// Runs `check` on the request's bearer token, records the outcome in the metrics, and
/// leaves a refused key in the request.
fn verify<T>(
    req: &HttpRequest,
    check: impl FnOnce(&Service, &[u8], u64) -> Result<T, VerifyError>,
) -> Result<T, ApiError> {
    let service = req
        .app_data::<web::Data<Service>>()
        .ok_or_else(|| ApiError::unexpected(anyhow::anyhow!("service missing from app data")))?;
    let presented = bearer_token(req)?;
    let started = Instant::now();
    let verdict = check(service, presented, crate::clock::now_millis());
    service.metrics().record_verification(verification_outcome(verdict.as_ref().err()), started.elapsed());
    verdict.map_err(|err| {
        let presented = match &err {
            VerifyError::Denied { identity, .. } => Some(PresentedKey { identity: identity.clone(), rate: None }),
            VerifyError::RateLimited { identity, decision } => {
                Some(PresentedKey { identity: identity.clone(), rate: Some(**decision) })
            }
            VerifyError::Invalid | VerifyError::Store(_) => None,
        };
        if let Some(presented) = presented {
            req.extensions_mut().insert(presented);
        }
        err.into()
    })
}

/// The token from `Authorization: Bearer <token>`, as bytes: a key that verified before is
/// found by its hash alone, and anything else goes through the token parse, which refuses
/// what is not a token. A header that is present but is not a bearer credential counts as
/// an invalid key, not a missing one.
fn bearer_token(req: &HttpRequest) -> Result<&[u8], ApiError> {
    let value = req.headers().get(header::AUTHORIZATION).ok_or(ApiError::MissingKey)?.as_bytes();
    let space = value.iter().position(|&b| b == b' ').ok_or(ApiError::InvalidKey)?;
    let (scheme, token) = (&value[..space], &value[space + 1..]);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(ApiError::InvalidKey);
    }
    Ok(token.trim_ascii())
}
