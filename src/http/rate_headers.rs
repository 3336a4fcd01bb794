//! `RateLimit-Policy` and `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers) on
//! every response to a request whose key has limits, whatever the handler answered.
//!
//! ```text
//! RateLimit-Policy: "hour";q=100;w=3600, "day";q=1000;w=86400
//! RateLimit: "hour";r=99;t=36, "day";r=999;t=87
//! ```

use std::fmt::Write;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};

use super::auth::RateState;
use crate::domain::ratelimit::Decision;

static POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static STATE: HeaderName = HeaderName::from_static("ratelimit");

pub async fn add(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let mut response = next.call(req).await?;
    let state = response.request().extensions().get::<RateState>().copied();
    if let Some(RateState(decision)) = state {
        let (policy, current) = render(&decision);
        let headers = response.headers_mut();
        if let (Ok(policy), Ok(current)) = (HeaderValue::from_str(&policy), HeaderValue::from_str(&current)) {
            headers.insert(POLICY.clone(), policy);
            headers.insert(STATE.clone(), current);
        }
    }
    Ok(response)
}

/// The two header values for a decision.
pub fn render(decision: &Decision) -> (String, String) {
    let mut policy = String::new();
    let mut current = String::new();
    for (i, w) in decision.windows().enumerate() {
        let sep = if i > 0 { ", " } else { "" };
        let _ = write!(policy, "{sep}\"{}\";q={};w={}", w.name, w.quota, w.window_seconds);
        let _ = write!(current, "{sep}\"{}\";r={};t={}", w.name, w.remaining, w.seconds_to_full);
    }
    (policy, current)
}
