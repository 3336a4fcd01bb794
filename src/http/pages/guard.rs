//! What every POST must pass before a handler sees it: the Origin check and the form token
//! (CSRF), then a small url-encoded body.
//!
//! [`SessionForm`] is for signed-in forms (the token is the session's); [`AnonForm`] for the
//! sign-in and setup forms (the token belongs to the `ibp_form` cookie). Both check the
//! origin first, then read at most 16 KiB, then check the token, and only then parse the
//! form, so a missing token is always a 403 and never a 400 about some other field.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use serde::de::DeserializeOwned;

use super::error::PageError;
use super::peer;
use super::session::{self, SignedIn};
use crate::domain::session::Secret;

pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// The origin (`scheme://host[:port]`, lower case, default port dropped) of a URL, or `None`
/// for anything that is not an absolute http(s) URL, including the `null` origin.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Userinfo (`user@host`) is not part of an origin.
    let host = authority.rsplit('@').next().unwrap_or_default().to_ascii_lowercase();
    let host = host.strip_suffix(default_port).unwrap_or(&host);
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    Some(format!("{scheme}://{host}"))
}

/// The origin POSTs must come from: `public_url`'s when configured, else the one the request
/// was sent to.
fn expected_origin(req: &HttpRequest) -> Result<String, PageError> {
    if let Some(origin) = &session::pages(req)?.public_origin {
        return Ok(origin.clone());
    }
    let own = format!("{}://{}", peer::scheme(req), peer::host(req));
    origin_of(&own).ok_or(PageError::Forbidden("the request's own origin is unusable"))
}

/// `Origin` must match; without an `Origin`, the `Referer`'s origin must. Neither is refused.
pub fn check_origin(req: &HttpRequest) -> Result<(), PageError> {
    let header_text = |name| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let presented = match header_text(header::ORIGIN) {
        Some(origin) => origin_of(&origin),
        None => header_text(header::REFERER).as_deref().and_then(origin_of),
    };
    let presented = presented.ok_or(PageError::Forbidden("no usable Origin or Referer"))?;
    if presented != expected_origin(req)? {
        return Err(PageError::Forbidden("foreign origin"));
    }
    Ok(())
}

/// A POSTed form from a signed-in user, its origin and token checked.
pub struct SessionForm<T> {
    pub signed_in: SignedIn,
    pub form: T,
}

/// A POSTed form from before sign-in, checked against the `ibp_form` cookie.
pub struct AnonForm<T> {
    pub form_secret: Secret,
    pub form: T,
}

/// A form with nothing in it but the token: sign out, revoke, disable, enable.
#[derive(serde::Deserialize)]
pub struct Empty {}

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, PageError>>>>;

impl<T: DeserializeOwned + 'static> FromRequest for SessionForm<T> {
    type Error = PageError;
    type Future = BoxFuture<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let checked = check_origin(req).and_then(|()| session::signed_in(req));
        let body = read_body(req, payload);
        Box::pin(async move {
            let signed_in = checked?;
            let form = parse_checked(&body.await?, &signed_in.secret)?;
            Ok(SessionForm { signed_in, form })
        })
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for AnonForm<T> {
    type Error = PageError;
    type Future = BoxFuture<Self>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let checked = check_origin(req)
            .and_then(|()| session::presented_form_secret(req).ok_or(PageError::Forbidden("no form cookie")));
        let body = read_body(req, payload);
        Box::pin(async move {
            let form_secret = checked?;
            let form = parse_checked(&body.await?, &form_secret)?;
            Ok(AnonForm { form_secret, form })
        })
    }
}

/// Reads a url-encoded body of at most [`MAX_FORM_BYTES`].
fn read_body(req: &HttpRequest, payload: &mut Payload) -> BoxFuture<web::Bytes> {
    let url_encoded = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    let payload = web::Payload::from_request(req, payload).into_inner();
    let deadline = crate::http::limits::BodyDeadline::of(req);
    Box::pin(async move {
        if !url_encoded {
            return Err(PageError::BadRequest("Forms must be sent as application/x-www-form-urlencoded."));
        }
        let payload = payload.map_err(|_| PageError::BadRequest("The form could not be read."))?;
        let read = actix_web::rt::time::timeout(deadline, payload.to_bytes_limited(MAX_FORM_BYTES));
        match read.await.map_err(|_| PageError::BadRequest("The form did not arrive in time."))? {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(_)) => Err(PageError::BadRequest("The form could not be read.")),
            Err(_) => Err(PageError::BadRequest("The form is larger than 16 KiB.")),
        }
    })
}

/// Checks the `csrf` field against `secret`, then parses the whole form as `T` (which
/// ignores the `csrf` field).
fn parse_checked<T: DeserializeOwned>(body: &[u8], secret: &Secret) -> Result<T, PageError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|_| PageError::BadRequest("The form could not be read."))?;
    let mut tokens = pairs.iter().filter(|(name, _)| name == "csrf").map(|(_, value)| value);
    match (tokens.next(), tokens.next()) {
        (Some(token), None) if secret.form_token_matches(token) => {}
        _ => return Err(PageError::Forbidden("missing or wrong form token")),
    }
    // The decoder puts U+FFFD where the bytes are not UTF-8: refused here, rather than
    // stored as a key name of replacement characters. (A browser always sends UTF-8.)
    if pairs.iter().any(|(name, value)| name.contains('\u{FFFD}') || value.contains('\u{FFFD}')) {
        return Err(PageError::BadRequest("The form has text that is not valid UTF-8."));
    }
    serde_urlencoded::from_bytes(body)
        .map_err(|_| PageError::BadRequest("The form has a field twice, or a value this page cannot use."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_drop_paths_default_ports_and_case() {
        assert_eq!(origin_of("https://Keys.Example.com/login?x#y").as_deref(), Some("https://keys.example.com"));
        assert_eq!(origin_of("https://keys.example.com:443").as_deref(), Some("https://keys.example.com"));
        assert_eq!(origin_of("http://127.0.0.1:8080/a").as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(origin_of("http://user@host:80/").as_deref(), Some("http://host"));
        assert_eq!(origin_of("http://[::1]:8080").as_deref(), Some("http://[::1]:8080"));
        for bad in ["null", "", "ftp://x", "https://", "//host", "https:// evil"] {
            assert_eq!(origin_of(bad), None, "{bad}");
        }
    }
}
