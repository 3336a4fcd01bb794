//! The settings page (SPEC §7): server-rendered HTML from askama templates, one file per
//! page or concern, no external assets and no JavaScript except the copy button.
//!
//! ## Routes
//!
//! | Method | Path | What |
//! |---|---|---|
//! | GET | `/` | 303 to `/settings/keys` when signed in, else to `/login` |
//! | GET, POST | `/setup/{secret}` | first run: create the first admin (404 page once used, expired or wrong) |
//! | GET, POST | `/login` | sign in; 422 with one message for any wrong combination, 429 + `Retry-After` when throttled |
//! | POST | `/logout` | ends the session, clears the cookie |
//! | GET | `/settings` | 303 to `/settings/keys` |
//! | GET | `/settings/keys` | the signed-in user's keys (`?cursor=` for older ones) |
//! | GET, POST | `/settings/keys/new` | the "Create API key" form; success is a 303 to the secret page |
//! | GET | `/settings/keys/{id}/secret` | the new secret, shown once (then a "no longer shown" page) |
//! | GET, POST | `/settings/keys/{id}/revoke` | confirmation page; only the POST revokes |
//! | POST | `/settings/keys/{id}/rotate` | rotate with `grace_seconds` 0, 3600, 86400 or 604800; 303 to the secret page |
//! | GET, POST | `/settings/users` | admins only (members get 404): list and add users |
//! | POST | `/settings/users/{id}/disable`, `/settings/users/{id}/enable` | admins only |
//! | GET | `/settings/audit` | the last 200 audit events: all for admins, their own for members |
//! | GET | `/settings/profile` | username, role, the change-password form |
//! | POST | `/settings/profile/password` | change password (starts a fresh session) |
//! | GET | `/assets/{name}` | `app.css`, `copy.js`, `favicon.svg`, embedded in the binary |
//!
//! Signed-out requests for a settings page get a 303 to `/login`. Another user's key id,
//! and any settings path that does not exist, get the HTML 404 page.
//!
//! ## Security
//!
//! - **Sessions** ([`session`]): cookie `ibp_session` holding a 43-character random secret
//!   whose blake3 hash is the session's key in redb; `HttpOnly; SameSite=Strict; Path=/`,
//!   `Max-Age` the session lifetime, and `Secure` when the request came over https or
//!   `public_url` is https. A new secret at every sign-in and password change; logout deletes
//!   the session; a disabled user's sessions are deleted and refused.
//! - **CSRF** ([`guard`]): every POST form has a hidden `csrf` field. Signed in, it must be
//!   the session's form token ([`Secret::form_token`]). The sign-in and setup forms have no
//!   session yet: they use a pre-session cookie `ibp_form` (a random secret, same cookie
//!   attributes, no `Max-Age`) and its form token, a double submit that a foreign site can
//!   neither read nor forge. On top, every POST must carry an `Origin` (or, without one, a
//!   `Referer`) equal to `public_url`'s origin when that is set, else to the scheme and host
//!   the request came to. A missing or wrong token or origin is a 403 page and changes
//!   nothing; both are checked before the body is interpreted.
//! - **Client address** ([`peer`]): login throttling counts failures per username and per
//!   address. The address is the TCP peer. Only when the peer is loopback (a reverse proxy
//!   on the same machine) is the last `X-Forwarded-For` entry used instead, and only then are
//!   `Forwarded`/`X-Forwarded-Proto`/`X-Forwarded-Host` believed for the scheme and host. A
//!   proxy on another machine therefore throttles as one address: run it on the same host, or
//!   accept that.
//! - **Headers** on every page: `Content-Security-Policy: default-src 'self'; base-uri
//!   'none'; form-action 'self'; frame-ancestors 'none'` (no inline script or style
//!   anywhere), `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff`,
//!   `Referrer-Policy: same-origin`, `Cache-Control: no-store`.
//! - **Escaping**: askama escapes every value; no template uses `|safe`.
//! - **Bodies**: `application/x-www-form-urlencoded`, at most 16 KiB, else a 400 page.
//! - **The one-time secret**: creating or rotating a key answers 303 to
//!   `/settings/keys/{id}/secret` (so reloading never re-submits the form). Between the POST
//!   and that GET the token waits in memory only ([`reveal`]), bound to the session, for at
//!   most five minutes; the GET takes it out, so it is shown exactly once. It is never written
//!   to disk or a log.
//!
//! ## Stable DOM hooks (for end-to-end tests)
//!
//! - Top bar: `header.topbar`, `a.brand`; the avatar menu `details#avatar-menu` whose
//!   `summary.avatar` shows the initials, containing `a#menu-settings` and the sign-out
//!   `form#sign-out-form` with `button#sign-out`.
//! - Sidebar `nav.sidebar` with `a#nav-profile`, `a#nav-keys`, `a#nav-audit` and, for admins,
//!   `a#nav-users`; the current one has `aria-current="page"`.
//! - Messages: `.flash` (`.flash-notice` after a redirect, `.flash-error` for a refused
//!   action), `.form-error` (next to a form or under a field; fields with an error have
//!   `aria-invalid="true"`). Error pages: `#not-found`, `#forbidden`, `#bad-request`,
//!   `#setup-invalid`, `#method-not-allowed`, `#internal-error`.
//! - Setup: `form#setup-form` (inputs `#username`, `#password`, `#repeat`; submit
//!   `button#create-admin`).
//! - Sign-in: `form#login-form` (inputs `#username`, `#password`; submit `button#sign-in`);
//!   `#throttled` holds the message when throttled.
//! - Keys: `a#new-key-link` (to `/settings/keys/new`), `table#keys-table` with one
//!   `tr.key-row[data-key-id="key_…"][data-status="active|rotating|revoked|expired"]` per key,
//!   cells `td.key-name` (with `.name` and `code.key-token` = `start…end`), `td.key-created`,
//!   `td.key-last-used`, `td.key-expires`, `td.key-limits`, `td.key-status .badge`,
//!   `td.key-scopes code.scope`, `td.key-actions`. Each row's menu `details.key-menu`
//!   (`summary` is the "…" button; no menu on revoked keys) holds `form.rotate-form` (select
//!   `grace_seconds`, `button.rotate-button`; only on active keys) and `a.revoke-link`.
//!   Empty state `#keys-empty`; paging `a#older-keys`.
//! - Create: `form#create-key-form` with inputs `#name`, `#per_hour`, `#per_day` (named alike),
//!   select `#expires` (`never`, `7d`, `30d`, `90d`, `365d`), text `#scopes` (space or comma
//!   separated) and checkboxes `#scope-keys-read` / `#scope-keys-write` (named
//!   `scope_keys_read`, `scope_keys_write`); submit `button#create-key`.
//! - Secret page: `input#new-secret` (readonly, holds the secret), `button#copy-secret`
//!   (hidden until `copy.js` runs; `#copy-status` says "Copied…"), `#secret-warning`,
//!   `a#secret-done` back to the list; `#secret-gone` when the secret was already shown.
//! - Revoke confirmation: `form#revoke-form` with `button#confirm-revoke` and
//!   `a#cancel-revoke`; `#already-revoked` instead for a revoked key.
//! - Users: `table#users-table` with `tr.user-row[data-user-id][data-username][data-status]`,
//!   `form.disable-user-form` / `form.enable-user-form` per row (none on your own row);
//!   `form#add-user-form` with `#new-username` (name `username`), `#new-password` (name
//!   `password`), checkbox `#new-is-admin` (name `is_admin`), submit `button#add-user-button`.
//! - Audit: `table#audit-table`, rows `tr[data-action="key.created"]` (the codes of
//!   [`crate::domain::Action::label`]); `#audit-empty`.
//! - Profile: `#profile-username`; `form#password-form` with inputs `#current_password`,
//!   `#new_password`, `#repeat_password` (named alike), submit `button#change-password`.

mod assets;
mod audit;
mod error;
mod guard;
mod keys;
mod login;
mod peer;
mod profile;
mod reveal;
mod session;
mod setup;
mod users;
mod view;

use actix_web::http::StatusCode;
use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpResponse, HttpResponseBuilder, web};
use askama::Template;

pub use error::PageError;

/// What the pages need from the configuration.
#[derive(Debug, Clone, Default)]
pub struct PagesConfig {
    /// The public URL people reach the service at (`public_url`), if configured: its origin
    /// is the one POSTs must come from, and an https one makes cookies `Secure`.
    pub public_url: Option<String>,
}

/// Shared state of the pages, one per server (all workers), installed as app data.
pub struct Pages {
    /// `public_url`'s origin (`scheme://host[:port]`), when configured.
    public_origin: Option<String>,
    public_url: Option<String>,
    reveals: reveal::Reveals,
}

impl Pages {
    pub fn new(config: PagesConfig) -> Self {
        Pages {
            public_origin: config.public_url.as_deref().and_then(guard::origin_of),
            public_url: config.public_url,
            reveals: reveal::Reveals::default(),
        }
    }
}

const CSP: &str = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The headers every HTML response carries.
fn page_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("Content-Security-Policy", CSP))
        .add(("X-Frame-Options", "DENY"))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Referrer-Policy", "same-origin"))
        .add(("Cache-Control", "no-store"))
}

/// A named page resource with an HTML 405 for other methods. Its security headers come from
/// the `/settings` scope, or from a `.wrap(page_headers())` after its routes.
fn page(path: &str, name: &str) -> actix_web::Resource {
    web::resource(path).name(name).default_service(web::to(method_not_allowed))
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(page("/", "page_root").route(web::get().to(login::root)).wrap(page_headers()))
        .service(
            page("/login", "page_login")
                .route(web::get().to(login::show))
                .route(web::post().to(login::submit))
                .wrap(page_headers()),
        )
        .service(page("/logout", "page_logout").route(web::post().to(login::logout)).wrap(page_headers()))
        .service(
            page("/setup/{secret}", "page_setup")
                .route(web::get().to(setup::show))
                .route(web::post().to(setup::submit))
                .wrap(page_headers()),
        )
        .service(web::resource("/assets/{name}").name("asset").route(web::get().to(assets::serve)))
        .service(
            web::scope("/settings")
                .wrap(page_headers())
                .service(page("", "settings").route(web::get().to(keys::to_list)))
                .service(page("/", "settings_slash").route(web::get().to(keys::to_list)))
                .service(page("/keys", "settings_keys").route(web::get().to(keys::list)))
                .service(
                    page("/keys/new", "settings_key_new")
                        .route(web::get().to(keys::new_form))
                        .route(web::post().to(keys::create)),
                )
                .service(page("/keys/{id}/secret", "settings_key_secret").route(web::get().to(keys::secret)))
                .service(
                    page("/keys/{id}/revoke", "settings_key_revoke")
                        .route(web::get().to(keys::confirm_revoke))
                        .route(web::post().to(keys::revoke)),
                )
                .service(page("/keys/{id}/rotate", "settings_key_rotate").route(web::post().to(keys::rotate)))
                .service(
                    page("/users", "settings_users")
                        .route(web::get().to(users::list))
                        .route(web::post().to(users::add)),
                )
                .service(page("/users/{id}/disable", "settings_user_disable").route(web::post().to(users::disable)))
                .service(page("/users/{id}/enable", "settings_user_enable").route(web::post().to(users::enable)))
                .service(page("/audit", "settings_audit").route(web::get().to(audit::list)))
                .service(page("/profile", "settings_profile").route(web::get().to(profile::show)))
                .service(page("/profile/password", "settings_password").route(web::post().to(profile::change_password)))
                .default_service(web::to(not_found)),
        );
}

async fn not_found() -> Result<HttpResponse, PageError> {
    Err(PageError::NotFound)
}

async fn method_not_allowed() -> Result<HttpResponse, PageError> {
    Err(PageError::MethodNotAllowed)
}

/// Renders a page as the whole body of a response with `status`.
fn html(status: StatusCode, page: &impl Template) -> Result<HttpResponse, PageError> {
    Ok(respond(status).body(render(page)?))
}

/// Renders a signed-out form page (sign-in, setup), setting the pre-session form cookie when
/// `form_secret` had to make a new one.
fn html_with_form_cookie(
    page: &impl Template,
    cookie: Option<actix_web::cookie::Cookie<'static>>,
) -> Result<HttpResponse, PageError> {
    let mut response = respond(StatusCode::OK);
    if let Some(cookie) = cookie {
        response.cookie(cookie);
    }
    Ok(response.body(render(page)?))
}

fn render(page: &impl Template) -> Result<String, PageError> {
    page.render().map_err(PageError::unexpected)
}

fn respond(status: StatusCode) -> HttpResponseBuilder {
    let mut builder = HttpResponse::build(status);
    builder.content_type("text/html; charset=utf-8");
    builder
}

/// A 303 to a path on this site (never a URL taken from the request).
fn see_other(location: &'static str) -> HttpResponseBuilder {
    see_other_to(location.to_owned())
}

fn see_other_to(location: String) -> HttpResponseBuilder {
    let mut builder = HttpResponse::SeeOther();
    builder.insert_header(("Location", location));
    builder
}

/// The query string's parameters (the last of each name wins); unreadable ones are ignored.
struct Query(Vec<(String, String)>);

impl Query {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

fn query(req: &actix_web::HttpRequest) -> Query {
    Query(serde_urlencoded::from_str(req.query_string()).unwrap_or_default())
}
