//! `/settings/users`, for administrators only (members get the 404 page): the users, adding
//! one with a temporary password, and disabling or enabling them. Disabling ends the user's
//! sessions and stops their keys at once; nobody can disable themself (the service refuses).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::error::PageError;
use super::guard::{Empty, SessionForm};
use super::session::{Admin, SignedIn};
use super::view::{Chrome, FieldErrors, When, initials, notice, sentence};
use super::{html, see_other};
use crate::domain::{User, Username};
use crate::password;
use crate::service::{Service, ServiceError};

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    chrome: Chrome,
    users: Vec<UserRow>,
    username: String,
    is_admin: bool,
    errors: FieldErrors,
    form_error: Option<String>,
    min_password: usize,
}

struct UserRow {
    id: String,
    username: String,
    initials: String,
    is_admin: bool,
    disabled: bool,
    created: When,
    is_self: bool,
}

#[derive(Deserialize)]
pub struct AddUserForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    is_admin: Option<String>,
}

pub async fn list(
    req: HttpRequest,
    Admin(admin): Admin,
    service: web::Data<Service>,
) -> Result<HttpResponse, PageError> {
    let chrome = admin.chrome("users").with_notice(notice(super::query(&req).get("notice")));
    users_page(&service, &admin, chrome, String::new(), false, FieldErrors::default(), None, StatusCode::OK)
}

#[allow(clippy::too_many_arguments)]
fn users_page(
    service: &Service,
    admin: &SignedIn,
    chrome: Chrome,
    username: String,
    is_admin: bool,
    errors: FieldErrors,
    form_error: Option<String>,
    status: StatusCode,
) -> Result<HttpResponse, PageError> {
    let mut users = service.users()?;
    users.sort_by(|a, b| a.username.cmp(&b.username));
    let rows = users.iter().map(|u| row(u, admin)).collect();
    let page =
        UsersPage { chrome, users: rows, username, is_admin, errors, form_error, min_password: password::MIN_LEN };
    html(status, &page)
}

fn row(user: &User, admin: &SignedIn) -> UserRow {
    UserRow {
        id: user.id.to_string(),
        username: user.username.to_string(),
        initials: initials(user.username.as_str()),
        is_admin: user.is_admin,
        disabled: user.is_disabled(),
        created: When::new(user.created_at),
        is_self: user.id == admin.user.id,
    }
}

/// Signed in, and an administrator; otherwise the same answers as [`Admin`].
fn require_admin(signed_in: SignedIn) -> Result<SignedIn, PageError> {
    if signed_in.user.is_admin { Ok(signed_in) } else { Err(PageError::NotFound) }
}

pub async fn add(
    service: web::Data<Service>,
    SessionForm { signed_in, form }: SessionForm<AddUserForm>,
) -> Result<HttpResponse, PageError> {
    let admin = require_admin(signed_in)?;
    let AddUserForm { username, password, is_admin } = form;
    let username = username.trim().to_owned();
    let is_admin = is_admin.is_some();
    let (name, actor, now, worker) = (username.clone(), admin.actor(), crate::clock::now(), service.clone());
    let mut errors = FieldErrors::default();
    let mut form_error = None;
    // The service decides; asking the same rules first lets one answer name every bad field.
    if let Err(err) = Username::parse(&username) {
        errors.add("username", sentence("The username", &err.to_string()));
    }
    if let Err(err) = password::validate(&password) {
        errors.add("password", sentence("The temporary password", &err.to_string()));
    }
    if errors.is_empty() {
        match web::block(move || worker.add_user(&name, &password, is_admin, actor, now)).await? {
            Ok(_) => return Ok(see_other("/settings/users?notice=user_added").finish()),
            Err(ServiceError::Invalid { field: "username", message }) => {
                errors.add("username", sentence("The username", &message))
            }
            Err(ServiceError::Invalid { field: "password", message }) => {
                errors.add("password", sentence("The temporary password", &message))
            }
            Err(ServiceError::Conflict(message)) => errors.add("username", sentence("The username", &message)),
            Err(ServiceError::Invalid { field, message }) => form_error = Some(sentence(field, &message)),
            Err(err) => return Err(err.into()),
        }
    }
    // The password is never shown again, not even to the admin who typed it.
    users_page(
        &service,
        &admin,
        admin.chrome("users"),
        username,
        is_admin,
        errors,
        form_error,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
}

pub async fn disable(
    service: web::Data<Service>,
    id: web::Path<String>,
    form: SessionForm<Empty>,
) -> Result<HttpResponse, PageError> {
    set_disabled(service, id.into_inner(), form.signed_in, true).await
}

pub async fn enable(
    service: web::Data<Service>,
    id: web::Path<String>,
    form: SessionForm<Empty>,
) -> Result<HttpResponse, PageError> {
    set_disabled(service, id.into_inner(), form.signed_in, false).await
}

async fn set_disabled(
    service: web::Data<Service>,
    id: String,
    signed_in: SignedIn,
    disabled: bool,
) -> Result<HttpResponse, PageError> {
    let admin = require_admin(signed_in)?;
    let user = service.user_by_id(&id)?;
    let (actor, now, worker) = (admin.actor(), crate::clock::now(), service.clone());
    let name = user.username.to_string();
    match web::block(move || worker.set_disabled(&name, disabled, actor, now)).await? {
        Ok(_) if disabled => Ok(see_other("/settings/users?notice=user_disabled").finish()),
        Ok(_) => Ok(see_other("/settings/users?notice=user_enabled").finish()),
        Err(ServiceError::Conflict(message)) => {
            let chrome = admin.chrome("users").with_error(sentence("You", &message));
            users_page(
                &service,
                &admin,
                chrome,
                String::new(),
                false,
                FieldErrors::default(),
                None,
                StatusCode::CONFLICT,
            )
        }
        Err(err) => Err(err.into()),
    }
}
