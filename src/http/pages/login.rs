//! `/` (a redirect), `/login` and `/logout`.
//!
//! A wrong password, an unknown username and a disabled user get the same page with the
//! same words; the service makes them take the same time. When throttled, even the right
//! password gets the 429 page, with `Retry-After`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::error::PageError;
use super::guard::{AnonForm, Empty, SessionForm};
use super::session::{self, MaybeSignedIn, SESSION_COOKIE};
use super::view::{Chrome, When, notice};
use super::{html, peer, respond, see_other};
use crate::service::{LoginError, Service};

pub const MISMATCH: &str = "That username and password do not match.";

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    username: String,
    error: Option<String>,
    /// When throttled: minutes to wait and the time it ends.
    retry: Option<Retry>,
}

struct Retry {
    minutes: u64,
    at: When,
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

pub async fn root(current: MaybeSignedIn) -> HttpResponse {
    match current.0 {
        Some(_) => see_other("/settings/keys").finish(),
        None => see_other("/login").finish(),
    }
}

pub async fn show(req: HttpRequest, current: MaybeSignedIn) -> Result<HttpResponse, PageError> {
    if current.0.is_some() {
        return Ok(see_other("/settings/keys").finish());
    }
    let (form_secret, cookie) = session::form_secret(&req)?;
    let query = super::query(&req);
    let page = LoginPage {
        chrome: Chrome::anonymous(form_secret.form_token()).with_notice(notice(query.get("notice"))),
        username: String::new(),
        error: None,
        retry: None,
    };
    super::html_with_form_cookie(&page, cookie)
}

pub async fn submit(
    req: HttpRequest,
    service: web::Data<Service>,
    AnonForm { form_secret, form }: AnonForm<LoginForm>,
) -> Result<HttpResponse, PageError> {
    let address = peer::client_address(&req);
    let now = crate::clock::now();
    let LoginForm { username, password } = form;
    let typed = username.clone();
    let outcome = web::block(move || service.login(&username, &password, &address, now)).await?;
    let page = |error: &str, retry| LoginPage {
        chrome: Chrome::anonymous(form_secret.form_token()),
        username: typed.trim().to_owned(),
        error: Some(error.to_owned()),
        retry,
    };
    match outcome {
        Ok(sign_in) => {
            let cookie = session::session_cookie(&req, &sign_in.secret)?;
            Ok(see_other("/settings/keys").cookie(cookie).finish())
        }
        Err(LoginError::Invalid) => html(StatusCode::UNPROCESSABLE_ENTITY, &page(MISMATCH, None)),
        Err(LoginError::Throttled(seconds)) => {
            let retry = Retry { minutes: seconds.div_ceil(60), at: When::new(now.plus_seconds(seconds)) };
            let message = "Too many failed sign-ins. Signing in is paused for a while to keep the account safe.";
            let mut response = respond(StatusCode::TOO_MANY_REQUESTS);
            response.insert_header(("Retry-After", seconds.to_string()));
            Ok(response.body(super::render(&page(message, Some(retry)))?))
        }
        Err(LoginError::Service(err)) => Err(err.into()),
    }
}

pub async fn logout(
    req: HttpRequest,
    service: web::Data<Service>,
    SessionForm { signed_in, .. }: SessionForm<Empty>,
) -> Result<HttpResponse, PageError> {
    web::block(move || service.logout(&signed_in.secret)).await??;
    let cookie = session::removal(&req, SESSION_COOKIE)?;
    Ok(see_other("/login?notice=signed_out").cookie(cookie).finish())
}
