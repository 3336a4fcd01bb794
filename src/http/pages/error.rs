//! Every way a page request can fail, answered as an HTML page (or, for a signed-out
//! visitor, a 303 to the sign-in page). Unexpected failures log their cause chain and show
//! a plain 500 page that reveals nothing.

use actix_web::cookie::Cookie;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use askama::Template;

use super::view::Chrome;
use crate::service::ServiceError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// No live session: 303 to `/login`, clearing a stale session cookie if one was sent.
    #[error("sign in first")]
    SignInRequired { stale_cookie: Option<Box<Cookie<'static>>> },
    /// A missing or wrong form token, or a foreign or missing Origin.
    #[error("form refused: {0}")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    /// The first-run link is wrong, used or expired.
    #[error("setup link invalid")]
    SetupLinkInvalid,
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("internal error")]
    Unexpected(#[source] anyhow::Error),
}

impl PageError {
    pub fn unexpected(err: impl Into<anyhow::Error>) -> Self {
        PageError::Unexpected(err.into())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    status: u16,
    heading: &'static str,
    message: &'static str,
    element_id: &'static str,
    link_href: &'static str,
    link_text: &'static str,
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            PageError::SignInRequired { .. } => StatusCode::SEE_OTHER,
            PageError::Forbidden(_) => StatusCode::FORBIDDEN,
            PageError::NotFound | PageError::SetupLinkInvalid => StatusCode::NOT_FOUND,
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            PageError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if let PageError::SignInRequired { stale_cookie } = self {
            let mut response = HttpResponse::SeeOther();
            response.insert_header((header::LOCATION, "/login"));
            response.insert_header((header::CACHE_CONTROL, "no-store"));
            if let Some(cookie) = stale_cookie {
                response.cookie(cookie.as_ref().clone());
            }
            return response.finish();
        }
        if let PageError::Unexpected(cause) = self {
            tracing::error!(error = format!("{cause:#}"), "page request failed");
        }
        let (heading, message, element_id, link_href, link_text) = match self {
            PageError::Forbidden(reason) => {
                tracing::info!(reason, "form refused");
                (
                    "This form could not be accepted",
                    "It was sent from another site, or it has expired. Nothing was changed. Go back, reload the page and try again.",
                    "forbidden",
                    "/",
                    "Go to iblueprint",
                )
            }
            PageError::NotFound => (
                "Page not found",
                "There is nothing here, or it belongs to someone else.",
                "not-found",
                "/settings/keys",
                "Back to API keys",
            ),
            PageError::SetupLinkInvalid => (
                "This setup link does not work",
                "It is wrong, has already been used, or has expired. Setup links work once, for an hour. If nobody has signed up yet, restart the server to get a new link, or run “iblueprint users add NAME --admin” on the server.",
                "setup-invalid",
                "/login",
                "Go to sign in",
            ),
            PageError::BadRequest(reason) => {
                ("The request could not be read", *reason, "bad-request", "/", "Go to iblueprint")
            }
            PageError::MethodNotAllowed => (
                "This page cannot do that",
                "The request used a method this page does not accept.",
                "method-not-allowed",
                "/",
                "Go to iblueprint",
            ),
            PageError::SignInRequired { .. } | PageError::Unexpected(_) => (
                "Something went wrong",
                "The server could not finish this request. Nothing secret was lost; please try again in a moment.",
                "internal-error",
                "/",
                "Go to iblueprint",
            ),
        };
        let page = ErrorPage {
            chrome: Chrome::anonymous(String::new()),
            status: status.as_u16(),
            heading,
            message,
            element_id,
            link_href,
            link_text,
        };
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        match page.render() {
            Ok(body) => response.content_type("text/html; charset=utf-8").body(body),
            Err(_) => response.content_type("text/plain; charset=utf-8").body(heading),
        }
    }
}

impl From<ServiceError> for PageError {
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::NotFound => PageError::NotFound,
            other => PageError::unexpected(other),
        }
    }
}

impl From<StoreError> for PageError {
    fn from(err: StoreError) -> Self {
        PageError::unexpected(err)
    }
}

impl From<actix_web::error::BlockingError> for PageError {
    fn from(err: actix_web::error::BlockingError) -> Self {
        PageError::unexpected(anyhow::anyhow!("blocking task failed: {err}"))
    }
}
