//! `/setup/{secret}`: the first-run link `serve` prints while there are no users. It creates
//! the first administrator and signs them in. A wrong, used or expired link is a 404 page.
//!
//! The form has no `action`: it posts back to the URL it came from, so the page never
//! writes the link's secret into its own HTML.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::error::PageError;
use super::guard::AnonForm;
use super::session;
use super::view::{Chrome, FieldErrors, sentence};
use super::{html, see_other};
use crate::domain::Username;
use crate::password;
use crate::service::{Service, ServiceError};

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    chrome: Chrome,
    username: String,
    errors: FieldErrors,
    form_error: Option<String>,
    min_password: usize,
}

#[derive(Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    repeat: String,
}

pub async fn show(
    req: HttpRequest,
    service: web::Data<Service>,
    secret: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    if !service.setup_link_is_valid(&secret, crate::clock::now()) {
        return Err(PageError::SetupLinkInvalid);
    }
    let (form_secret, cookie) = session::form_secret(&req)?;
    let page = SetupPage {
        chrome: Chrome::anonymous(form_secret.form_token()),
        username: String::new(),
        errors: FieldErrors::default(),
        form_error: None,
        min_password: password::MIN_LEN,
    };
    super::html_with_form_cookie(&page, cookie)
}

pub async fn submit(
    req: HttpRequest,
    service: web::Data<Service>,
    secret: web::Path<String>,
    AnonForm { form_secret, form }: AnonForm<SetupForm>,
) -> Result<HttpResponse, PageError> {
    let now = crate::clock::now();
    if !service.setup_link_is_valid(&secret, now) {
        return Err(PageError::SetupLinkInvalid);
    }
    let SetupForm { username, password, repeat } = form;
    let username = username.trim().to_owned();
    let mut errors = FieldErrors::default();
    // The service decides; asking the same rules first lets one answer name every bad field.
    if let Err(err) = Username::parse(&username) {
        errors.add("username", sentence("The username", &err.to_string()));
    }
    if let Err(err) = password::validate(&password) {
        errors.add("password", sentence("The password", &err.to_string()));
    }
    if password != repeat {
        errors.add("repeat", "The two passwords do not match.");
    }
    let mut form_error = None;
    if errors.is_empty() {
        let name = username.clone();
        let secret = secret.into_inner();
        match web::block(move || service.complete_setup(&secret, &name, &password, now)).await? {
            Ok(sign_in) => {
                let cookie = session::session_cookie(&req, &sign_in.secret)?;
                return Ok(see_other("/settings/keys?notice=welcome").cookie(cookie).finish());
            }
            Err(ServiceError::NotFound) => return Err(PageError::SetupLinkInvalid),
            Err(ServiceError::Invalid { field: "username", message }) => {
                errors.add("username", sentence("The username", &message))
            }
            Err(ServiceError::Invalid { field: "password", message }) => {
                errors.add("password", sentence("The password", &message))
            }
            Err(ServiceError::Conflict(message)) => form_error = Some(sentence("The account", &message)),
            Err(other) => return Err(other.into()),
        }
    }
    let page = SetupPage {
        chrome: Chrome::anonymous(form_secret.form_token()),
        username,
        errors,
        form_error,
        min_password: password::MIN_LEN,
    };
    html(StatusCode::UNPROCESSABLE_ENTITY, &page)
}
