//! `/settings/keys`: the signed-in user's own keys. Create, see the secret once, rotate,
//! revoke (after a confirmation page). Every lookup goes through the service by (owner, id),
//! so another user's key id is the 404 page, exactly like one that does not exist.
//!
//! The owner acting through the page is `Actor::User` and has no scope ceiling: unlike a
//! key making a key, a signed-in person may give their keys any scope.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

use super::error::PageError;
use super::guard::{Empty, SessionForm};
use super::reveal::{self, Pending};
use super::session::SignedIn;
use super::view::{Choice, Chrome, FieldErrors, KeyRow, When, choices, grouped, notice, sentence};
use super::{Pages, html, peer, respond, see_other, see_other_to};
use crate::domain::key::MAX_LIMIT;
use crate::domain::{KeyName, KeySpec, RateLimit, Scope, Scopes, Timestamp};
use crate::service::{MAX_PAGE, NewKey, Service, ServiceError};

const EXPIRY: &[(&str, &str)] =
    &[("never", "Never"), ("7d", "In 7 days"), ("30d", "In 30 days"), ("90d", "In 90 days"), ("365d", "In 1 year")];

const GRACE: &[(&str, &str)] = &[
    ("0", "Stop the old key now"),
    ("3600", "Keep the old key for 1 hour"),
    ("86400", "Keep the old key for 1 day"),
    ("604800", "Keep the old key for 7 days"),
];

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    chrome: Chrome,
    keys: Vec<KeyRow>,
    older: Option<String>,
    newer: bool,
    grace: Vec<Choice>,
}

#[derive(Template)]
#[template(path = "key_new.html")]
struct NewKeyPage {
    chrome: Chrome,
    form: KeyFormValues,
    expiry: Vec<Choice>,
    errors: FieldErrors,
    form_error: Option<String>,
}

#[derive(Template)]
#[template(path = "key_secret.html")]
struct SecretPage {
    chrome: Chrome,
    key: KeyRow,
    secret: String,
    /// For a rotation: the previous key's id and when it stops working.
    previous: Option<(String, When)>,
    previous_stops_now: bool,
    api_base: String,
}

#[derive(Template)]
#[template(path = "key_gone.html")]
struct SecretGonePage {
    chrome: Chrome,
    key: KeyRow,
}

#[derive(Template)]
#[template(path = "key_revoke.html")]
struct RevokePage {
    chrome: Chrome,
    key: KeyRow,
}

/// The create form as typed, to show again with its errors.
#[derive(Deserialize, Default)]
pub struct KeyFormValues {
    #[serde(default)]
    name: String,
    #[serde(default)]
    per_hour: String,
    #[serde(default)]
    per_day: String,
    #[serde(default)]
    expires: String,
    #[serde(default)]
    scopes: String,
    #[serde(default, deserialize_with = "checkbox")]
    scope_keys_read: bool,
    #[serde(default, deserialize_with = "checkbox")]
    scope_keys_write: bool,
}

/// A checkbox is sent (with any value) when ticked and left out when not.
fn checkbox<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    <String as Deserialize>::deserialize(d).map(|_| true)
}

#[derive(Deserialize)]
pub struct RotateForm {
    #[serde(default)]
    grace_seconds: String,
}

pub async fn to_list() -> HttpResponse {
    see_other("/settings/keys").finish()
}

pub async fn list(
    req: HttpRequest,
    signed_in: SignedIn,
    service: web::Data<Service>,
) -> Result<HttpResponse, PageError> {
    let query = super::query(&req);
    let chrome = signed_in.chrome("keys").with_notice(notice(query.get("notice")));
    keys_page(&service, &signed_in, chrome, query.get("cursor"), StatusCode::OK)
}

fn keys_page(
    service: &Service,
    signed_in: &SignedIn,
    chrome: Chrome,
    cursor: Option<&str>,
    status: StatusCode,
) -> Result<HttpResponse, PageError> {
    let page = match service.list_keys(&signed_in.user.id, cursor, MAX_PAGE) {
        Ok(page) => page,
        Err(ServiceError::Invalid { .. }) => return Err(PageError::BadRequest("That page of keys does not exist.")),
        Err(err) => return Err(err.into()),
    };
    let now = crate::clock::now();
    let page = KeysPage {
        chrome,
        keys: page.keys.iter().map(|k| KeyRow::new(k, now)).collect(),
        older: page.next_cursor.map(|cursor| format!("/settings/keys?cursor={cursor}")),
        newer: cursor.is_some(),
        grace: choices(GRACE, "0"),
    };
    html(status, &page)
}

pub async fn new_form(signed_in: SignedIn, service: web::Data<Service>) -> Result<HttpResponse, PageError> {
    // The operator's default limits, filled in so that what the form shows is what the key gets.
    let defaults = service.default_rate_limit();
    let form = KeyFormValues {
        per_hour: defaults.per_hour().map(|n| n.to_string()).unwrap_or_default(),
        per_day: defaults.per_day().map(|n| n.to_string()).unwrap_or_default(),
        expires: "never".to_owned(),
        ..KeyFormValues::default()
    };
    let page = NewKeyPage {
        chrome: signed_in.chrome("keys"),
        expiry: choices(EXPIRY, &form.expires),
        form,
        errors: FieldErrors::default(),
        form_error: None,
    };
    html(StatusCode::OK, &page)
}

pub async fn create(
    service: web::Data<Service>,
    pages: web::Data<Pages>,
    SessionForm { signed_in, form }: SessionForm<KeyFormValues>,
) -> Result<HttpResponse, PageError> {
    let now = crate::clock::now();
    let mut errors = FieldErrors::default();
    let spec = validate(&form, now, &mut errors);
    let mut form_error = None;
    if let Some(spec) = spec.filter(|_| errors.is_empty()) {
        let owner = signed_in.user.id.clone();
        let actor = signed_in.actor();
        let service = service.clone();
        match web::block(move || service.create_key(&owner, spec, None, actor, now)).await? {
            Ok(NewKey { key, token }) => {
                pages.reveals.put(&signed_in.secret, &key.id, token, reveal::Origin::Created);
                return Ok(see_other_to(format!("/settings/keys/{}/secret", key.id)).finish());
            }
            Err(ServiceError::KeyLimitReached(_)) => {
                form_error = Some("You have as many active keys as allowed. Revoke one you no longer use first.".into())
            }
            Err(ServiceError::Invalid { field, message }) => form_error = Some(sentence(field, &message)),
            Err(err) => return Err(err.into()),
        }
    }
    let page = NewKeyPage {
        chrome: signed_in.chrome("keys"),
        expiry: choices(EXPIRY, &form.expires),
        form,
        errors,
        form_error,
    };
    html(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

/// Turns the form into a key spec, adding a plain-words error per bad field.
fn validate(form: &KeyFormValues, now: Timestamp, errors: &mut FieldErrors) -> Option<KeySpec> {
    let name = if form.name.trim().is_empty() {
        errors.add("name", "Give the key a name, so you can tell it apart later.");
        None
    } else {
        KeyName::parse(&form.name)
            .map_err(|_| errors.add("name", "The name must be at most 100 characters, with no control characters."))
            .ok()
    };
    let limit_error = |what| {
        format!(
            "The {what} limit must be a whole number from 1 to {}, or empty for no limit.",
            grouped(MAX_LIMIT.into())
        )
    };
    let per_hour = parse_limit(&form.per_hour).map_err(|()| errors.add("per_hour", limit_error("per-hour"))).ok();
    let per_day = parse_limit(&form.per_day).map_err(|()| errors.add("per_day", limit_error("per-day"))).ok();
    let expires_at = match form.expires.as_str() {
        "" | "never" => Some(None),
        "7d" => Some(Some(now.plus_seconds(7 * 86_400))),
        "30d" => Some(Some(now.plus_seconds(30 * 86_400))),
        "90d" => Some(Some(now.plus_seconds(90 * 86_400))),
        "365d" => Some(Some(now.plus_seconds(365 * 86_400))),
        _ => {
            errors.add("expires", "Choose when the key expires from the list.");
            None
        }
    };
    let scopes = parse_scopes(form, errors);
    let rate_limit = RateLimit::new(per_hour?, per_day?).ok()?;
    Some(KeySpec { name: name?, expires_at: expires_at?, rate_limit, scopes: scopes? })
}

/// `""` is no limit; digits may be grouped with commas, spaces or underscores.
fn parse_limit(raw: &str) -> Result<Option<u64>, ()> {
    let digits: String = raw.chars().filter(|c| !matches!(c, ',' | '_' | ' ' | '\u{a0}')).collect();
    if digits.is_empty() {
        return Ok(None);
    }
    match digits.parse::<u64>() {
        Ok(n) if (1..=u64::from(MAX_LIMIT)).contains(&n) => Ok(Some(n)),
        _ => Err(()),
    }
}

fn parse_scopes(form: &KeyFormValues, errors: &mut FieldErrors) -> Option<Scopes> {
    let mut wanted: Vec<&str> =
        form.scopes.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).collect();
    if form.scope_keys_read {
        wanted.push(Scope::KEYS_READ);
    }
    if form.scope_keys_write {
        wanted.push(Scope::KEYS_WRITE);
    }
    if let Some(bad) = wanted.iter().find(|s| Scope::parse(s).is_err()) {
        let shown: String = bad.chars().take(70).collect();
        errors.add(
            "scopes",
            format!("“{shown}” is not a scope. Scopes are 1–64 characters of a-z, 0-9, and _ . : - (for example orders:read)."),
        );
        return None;
    }
    Scopes::parse(&wanted).map_err(|_| errors.add("scopes", "A key can hold at most 32 scopes.")).ok()
}

pub async fn secret(
    req: HttpRequest,
    signed_in: SignedIn,
    service: web::Data<Service>,
    pages: web::Data<Pages>,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let key = service.key_of(&signed_in.user.id, &id)?;
    let now = crate::clock::now();
    let row = KeyRow::new(&key, now);
    let Some(Pending { token, origin, .. }) = pages.reveals.take(&signed_in.secret, &id) else {
        return html(StatusCode::OK, &SecretGonePage { chrome: signed_in.chrome("keys"), key: row });
    };
    let (previous, previous_stops_now) = match origin {
        reveal::Origin::Created => (None, false),
        reveal::Origin::Rotated { previous, cutoff } => {
            (Some((previous.to_string(), When::new(cutoff))), cutoff <= now)
        }
    };
    let api_base = pages.public_url.clone().unwrap_or_else(|| format!("{}://{}", peer::scheme(&req), peer::host(&req)));
    let page = SecretPage {
        chrome: signed_in.chrome("keys"),
        key: row,
        secret: token.expose_secret().to_owned(),
        previous,
        previous_stops_now,
        api_base,
    };
    let mut response = respond(StatusCode::OK);
    response.insert_header(("Cache-Control", "no-store"));
    Ok(response.body(super::render(&page)?))
}

pub async fn confirm_revoke(
    signed_in: SignedIn,
    service: web::Data<Service>,
    id: web::Path<String>,
) -> Result<HttpResponse, PageError> {
    let key = service.key_of(&signed_in.user.id, &id)?;
    let page = RevokePage { chrome: signed_in.chrome("keys"), key: KeyRow::new(&key, crate::clock::now()) };
    html(StatusCode::OK, &page)
}

pub async fn revoke(
    service: web::Data<Service>,
    id: web::Path<String>,
    SessionForm { signed_in, .. }: SessionForm<Empty>,
) -> Result<HttpResponse, PageError> {
    let now = crate::clock::now();
    let (owner, actor, id) = (signed_in.user.id.clone(), signed_in.actor(), id.into_inner());
    web::block(move || service.revoke_key(&owner, &id, actor, now)).await??;
    Ok(see_other("/settings/keys?notice=key_revoked").finish())
}

pub async fn rotate(
    service: web::Data<Service>,
    pages: web::Data<Pages>,
    id: web::Path<String>,
    SessionForm { signed_in, form }: SessionForm<RotateForm>,
) -> Result<HttpResponse, PageError> {
    let grace: u64 = match form.grace_seconds.trim() {
        "" => 0,
        raw => raw.parse().map_err(|_| PageError::BadRequest("The grace period must be a number of seconds."))?,
    };
    let now_ms = crate::clock::now_millis();
    let now = Timestamp::from_millis(now_ms);
    let (owner, actor, id) = (signed_in.user.id.clone(), signed_in.actor(), id.into_inner());
    let worker = service.clone();
    match web::block(move || worker.rotate_key(&owner, &id, grace, None, actor, now_ms)).await? {
        Ok((NewKey { key, token }, previous)) => {
            let cutoff = previous.revoked_at.unwrap_or(now);
            pages.reveals.put(
                &signed_in.secret,
                &key.id,
                token,
                reveal::Origin::Rotated { previous: previous.id, cutoff },
            );
            Ok(see_other_to(format!("/settings/keys/{}/secret", key.id)).finish())
        }
        Err(ServiceError::Conflict(message)) => {
            let chrome = signed_in.chrome("keys").with_error(sentence("The key", &message));
            keys_page(&service, &signed_in, chrome, None, StatusCode::CONFLICT)
        }
        Err(ServiceError::Invalid { message, .. }) => {
            let chrome = signed_in.chrome("keys").with_error(sentence("The grace period", &message));
            keys_page(&service, &signed_in, chrome, None, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(err) => Err(err.into()),
    }
}
