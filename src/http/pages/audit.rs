//! `/settings/audit`: the newest 200 audit events. Administrators see everyone's; members
//! see the events about themselves and their keys (the service decides which).

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;

use super::error::PageError;
use super::html;
use super::session::SignedIn;
use super::view::{Chrome, When};
use crate::domain::{Action, Actor, AuditEvent, UserId};
use crate::service::{MAX_PAGE, Service};

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    events: Vec<AuditRow>,
    everyone: bool,
}

struct AuditRow {
    at: When,
    who: String,
    /// The stable code (`key.created`), for `data-action`.
    code: &'static str,
    action: &'static str,
    /// The user the event is about.
    subject: Option<String>,
    key_id: Option<String>,
}

pub async fn list(signed_in: SignedIn, service: web::Data<Service>) -> Result<HttpResponse, PageError> {
    let events = service.audit_for(&signed_in.user, MAX_PAGE)?;
    let names: HashMap<UserId, String> = service.users()?.into_iter().map(|u| (u.id, u.username.to_string())).collect();
    let name = |id: &UserId| names.get(id).cloned().unwrap_or_else(|| id.to_string());
    let page = AuditPage {
        chrome: signed_in.chrome("audit"),
        events: events.iter().map(|event| row(event, &name)).collect(),
        everyone: signed_in.user.is_admin,
    };
    html(StatusCode::OK, &page)
}

fn row(event: &AuditEvent, name: &impl Fn(&UserId) -> String) -> AuditRow {
    let who = match (&event.actor, event.action) {
        // Failed sign-ins have nobody proven behind them (older records used `Cli` for these).
        (Actor::Anonymous, _) | (Actor::Cli, Action::LoginFailed) => "not signed in".to_owned(),
        (Actor::Cli, _) => "operator".to_owned(),
        (Actor::User(id), _) => name(id),
        (Actor::Key { user_id, key_id }, _) => format!("{} (key {key_id})", name(user_id)),
    };
    AuditRow {
        at: When::new(event.at),
        who,
        code: event.action.label(),
        action: label(event.action),
        subject: event.user_id.as_ref().map(name),
        key_id: event.key_id.as_ref().map(|k| k.to_string()),
    }
}

fn label(action: Action) -> &'static str {
    match action {
        Action::KeyCreated => "Key created",
        Action::KeyUpdated => "Key changed",
        Action::KeyRotated => "Key rotated",
        Action::KeyRevoked => "Key revoked",
        Action::UserCreated => "User added",
        Action::UserDisabled => "User disabled",
        Action::UserEnabled => "User enabled",
        Action::PasswordChanged => "Password changed",
        Action::Login => "Signed in",
        Action::LoginFailed => "Failed sign-in",
    }
}
