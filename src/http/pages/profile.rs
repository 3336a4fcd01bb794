//! `/settings/profile`: who you are, and changing your password. A password change ends all
//! of your sessions and starts a fresh one for this browser.

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::error::PageError;
use super::guard::SessionForm;
use super::session::{self, SignedIn};
use super::view::{Chrome, FieldErrors, When, notice, sentence};
use super::{html, see_other};
use crate::password;
use crate::service::{LoginError, Service, ServiceError};

#[derive(Template)]
#[template(path = "profile.html")]
struct ProfilePage {
    chrome: Chrome,
    username: String,
    is_admin: bool,
    created: When,
    errors: FieldErrors,
    min_password: usize,
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    repeat_password: String,
}

fn page(
    signed_in: &SignedIn,
    chrome: Chrome,
    errors: FieldErrors,
    status: StatusCode,
) -> Result<HttpResponse, PageError> {
    let user = &signed_in.user;
    let page = ProfilePage {
        chrome,
        username: user.username.to_string(),
        is_admin: user.is_admin,
        created: When::new(user.created_at),
        errors,
        min_password: password::MIN_LEN,
    };
    html(status, &page)
}

pub async fn show(req: HttpRequest, signed_in: SignedIn) -> Result<HttpResponse, PageError> {
    let chrome = signed_in.chrome("profile").with_notice(notice(super::query(&req).get("notice")));
    page(&signed_in, chrome, FieldErrors::default(), StatusCode::OK)
}

pub async fn change_password(
    req: HttpRequest,
    service: web::Data<Service>,
    SessionForm { signed_in, form }: SessionForm<PasswordForm>,
) -> Result<HttpResponse, PageError> {
    let PasswordForm { current_password, new_password, repeat_password } = form;
    let mut errors = FieldErrors::default();
    if new_password != repeat_password {
        errors.add("repeat_password", "The two new passwords do not match.");
    } else {
        let (id, now) = (signed_in.user.id.clone(), crate::clock::now());
        match web::block(move || service.change_own_password(&id, &current_password, &new_password, now)).await? {
            Ok(sign_in) => {
                let cookie = session::session_cookie(&req, &sign_in.secret)?;
                return Ok(see_other("/settings/profile?notice=password_changed").cookie(cookie).finish());
            }
            Err(LoginError::Service(ServiceError::Invalid { field: "password", message })) => {
                errors.add("new_password", sentence("The new password", &message))
            }
            Err(LoginError::Throttled(seconds)) => {
                errors.add(
                    "current_password",
                    format!(
                        "Too many wrong passwords. Checking it is paused for {} minutes to keep the account safe.",
                        seconds.div_ceil(60)
                    ),
                );
                let mut response =
                    page(&signed_in, signed_in.chrome("profile"), errors, StatusCode::TOO_MANY_REQUESTS)?;
                let retry = HeaderValue::from(seconds);
                response.headers_mut().insert(RETRY_AFTER, retry);
                return Ok(response);
            }
            Err(LoginError::Invalid) => errors.add("current_password", "That is not your current password."),
            Err(LoginError::Service(err)) => return Err(err.into()),
        }
    }
    page(&signed_in, signed_in.chrome("profile"), errors, StatusCode::UNPROCESSABLE_ENTITY)
}
