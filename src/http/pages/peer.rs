//! Who is on the other end: the client address for login throttling, and the scheme and
//! host a request came to (for the Origin check and the cookie's `Secure` flag).
//!
//! Forwarding headers are believed only from a loopback peer, i.e. a reverse proxy on the
//! same machine. From anyone else they are ignored: a client could write anything there,
//! and a throttle keyed on a header the attacker controls throttles nothing.

use std::net::IpAddr;

use actix_web::HttpRequest;
use actix_web::http::header;

/// Whether the TCP peer is this machine (a local reverse proxy, or a local client).
fn peer_is_loopback(req: &HttpRequest) -> bool {
    req.peer_addr().is_some_and(|addr| addr.ip().to_canonical().is_loopback())
}

/// The address login failures are counted against: the TCP peer, or, when the peer is
/// loopback, the last `X-Forwarded-For` entry (the one the local proxy appended) if there
/// is one and it is an IP address.
pub fn client_address(req: &HttpRequest) -> String {
    let peer = req.peer_addr().map(|addr| addr.ip().to_canonical());
    if peer.is_some_and(|ip| ip.is_loopback())
        && let Some(forwarded) = last_forwarded_for(req)
    {
        return forwarded.to_string();
    }
    peer.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

fn last_forwarded_for(req: &HttpRequest) -> Option<IpAddr> {
    let last_header = req.headers().get_all("x-forwarded-for").last()?;
    let last_entry = last_header.to_str().ok()?.rsplit(',').next()?.trim();
    last_entry.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// `http` or `https`: how the request reached us (or the local proxy).
pub fn scheme(req: &HttpRequest) -> String {
    if peer_is_loopback(req) {
        req.connection_info().scheme().to_ascii_lowercase()
    } else if req.app_config().secure() {
        "https".to_owned()
    } else {
        "http".to_owned()
    }
}

/// The `Host` the request was sent to (or, behind a local proxy, the forwarded host).
pub fn host(req: &HttpRequest) -> String {
    if peer_is_loopback(req) {
        return req.connection_info().host().to_ascii_lowercase();
    }
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or_else(|| req.app_config().host())
        .to_ascii_lowercase()
}
