//! The signed-in user as an extractor, and the two cookies.
//!
//! - `ibp_session`: the session secret. The store keeps its hash; [`Service::session_user`]
//!   answers only for a live session of an enabled user, so logout, expiry and disabling
//!   all end it on the next request.
//! - `ibp_form`: a random secret for the forms shown before there is a session (sign-in and
//!   setup), whose form token the form must echo.
//!
//! Both are `HttpOnly; SameSite=Strict; Path=/`, and `Secure` when the request came over
//! https or `public_url` is https.

use std::future::{Ready, ready};

use actix_web::cookie::{Cookie, SameSite, time::Duration};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest, web};
use getrandom::SysRng;

use super::error::PageError;
use super::view::Chrome;
use super::{Pages, peer};
use crate::domain::session::Secret;
use crate::domain::{Actor, User};
use crate::service::Service;

pub const SESSION_COOKIE: &str = "ibp_session";
pub const FORM_COOKIE: &str = "ibp_form";

/// A request from a signed-in, enabled user with a live session.
pub struct SignedIn {
    pub user: User,
    pub secret: Secret,
}

impl SignedIn {
    /// The layout for a settings page, with this session's form token.
    pub fn chrome(&self, section: &'static str) -> Chrome {
        Chrome::signed_in(&self.user, self.secret.form_token(), section)
    }

    pub fn actor(&self) -> Actor {
        Actor::User(self.user.id.clone())
    }
}

/// The signed-in user if there is one, for pages that work either way.
pub struct MaybeSignedIn(pub Option<SignedIn>);

/// A signed-in administrator. Members get the 404 page: to them, admin pages do not exist.
pub struct Admin(pub SignedIn);

pub fn service(req: &HttpRequest) -> Result<&web::Data<Service>, PageError> {
    req.app_data::<web::Data<Service>>().ok_or_else(|| PageError::unexpected(anyhow::anyhow!("service missing")))
}

pub fn pages(req: &HttpRequest) -> Result<&web::Data<Pages>, PageError> {
    req.app_data::<web::Data<Pages>>().ok_or_else(|| PageError::unexpected(anyhow::anyhow!("pages state missing")))
}

/// The session behind the request's cookie, if it is live.
fn lookup(req: &HttpRequest) -> Result<Option<SignedIn>, PageError> {
    let Some(secret) = req.cookie(SESSION_COOKIE).and_then(|c| Secret::parse(c.value())) else { return Ok(None) };
    let user = service(req)?.session_user(&secret, crate::clock::now())?;
    Ok(user.map(|user| SignedIn { user, secret }))
}

pub fn signed_in(req: &HttpRequest) -> Result<SignedIn, PageError> {
    match lookup(req)? {
        Some(signed_in) => Ok(signed_in),
        None => {
            let stale_cookie = match req.cookie(SESSION_COOKIE) {
                Some(_) => Some(Box::new(removal(req, SESSION_COOKIE)?)),
                None => None,
            };
            Err(PageError::SignInRequired { stale_cookie })
        }
    }
}

impl FromRequest for SignedIn {
    type Error = PageError;
    type Future = Ready<Result<Self, PageError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(signed_in(req))
    }
}

impl FromRequest for MaybeSignedIn {
    type Error = PageError;
    type Future = Ready<Result<Self, PageError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(lookup(req).map(MaybeSignedIn))
    }
}

impl FromRequest for Admin {
    type Error = PageError;
    type Future = Ready<Result<Self, PageError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(signed_in(req).and_then(|s| if s.user.is_admin { Ok(Admin(s)) } else { Err(PageError::NotFound) }))
    }
}

/// Whether cookies must be `Secure`: the request came over https, or the public URL is https.
fn secure(req: &HttpRequest) -> Result<bool, PageError> {
    let public_https =
        pages(req)?.public_url.as_deref().is_some_and(|url| url.to_ascii_lowercase().starts_with("https:"));
    Ok(public_https || peer::scheme(req) == "https")
}

fn cookie(req: &HttpRequest, name: &'static str, value: String) -> Result<Cookie<'static>, PageError> {
    Ok(Cookie::build(name, value).path("/").http_only(true).same_site(SameSite::Strict).secure(secure(req)?).finish())
}

/// The session cookie for a new sign-in; it lasts as long as the session.
pub fn session_cookie(req: &HttpRequest, secret: &Secret) -> Result<Cookie<'static>, PageError> {
    let ttl = service(req)?.settings().session_ttl_seconds;
    let mut cookie = cookie(req, SESSION_COOKIE, secret.expose().to_owned())?;
    cookie.set_max_age(Duration::seconds(i64::try_from(ttl).unwrap_or(i64::MAX / 1000)));
    Ok(cookie)
}

/// A cookie that deletes `name` in the browser.
pub fn removal(req: &HttpRequest, name: &'static str) -> Result<Cookie<'static>, PageError> {
    let mut cookie = cookie(req, name, String::new())?;
    cookie.make_removal();
    Ok(cookie)
}

/// The pre-session form secret: the request's own if it sent a well-formed one, else a new
/// one together with the cookie that sets it.
pub fn form_secret(req: &HttpRequest) -> Result<(Secret, Option<Cookie<'static>>), PageError> {
    if let Some(secret) = presented_form_secret(req) {
        return Ok((secret, None));
    }
    let secret = Secret::generate(&mut SysRng).map_err(PageError::unexpected)?;
    let cookie = cookie(req, FORM_COOKIE, secret.expose().to_owned())?;
    Ok((secret, Some(cookie)))
}

pub fn presented_form_secret(req: &HttpRequest) -> Option<Secret> {
    req.cookie(FORM_COOKIE).and_then(|c| Secret::parse(c.value()))
}
