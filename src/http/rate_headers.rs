//! `RateLimit-Policy` and `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers) on
//! every response to a request whose key has limits, whatever the handler answered.
//!
//! ```text
//! RateLimit-Policy: "hour";q=100;w=3600, "day";q=1000;w=86400
//! RateLimit: "hour";r=99;t=36, "day";r=999;t=87
//! ```

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

/// The two header values for a decision. Built by hand rather than with `format!`: this
/// runs on every limited request and the formatting machinery showed up in profiles.
pub fn render(decision: &Decision) -> (String, String) {
    let mut policy = String::with_capacity(64);
    let mut current = String::with_capacity(64);
    for (i, w) in decision.windows().enumerate() {
        if i > 0 {
            policy.push_str(", ");
            current.push_str(", ");
        }
        policy.push('"');
        policy.push_str(w.name);
        policy.push_str("\";q=");
        push_number(&mut policy, u64::from(w.quota));
        policy.push_str(";w=");
        push_number(&mut policy, w.window_seconds);
        current.push('"');
        current.push_str(w.name);
        current.push_str("\";r=");
        push_number(&mut current, w.remaining);
        current.push_str(";t=");
        push_number(&mut current, w.seconds_to_full);
    }
    (policy, current)
}

fn push_number(out: &mut String, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RateLimit;
    use crate::domain::ratelimit::Buckets;

    #[test]
    fn headers_follow_the_draft_syntax() {
        let limit = RateLimit::new(Some(100), Some(1000)).unwrap();
        let decision = Buckets::default().check(limit, 0);
        let (policy, current) = render(&decision);
        assert_eq!(policy, "\"hour\";q=100;w=3600, \"day\";q=1000;w=86400");
        assert_eq!(current, "\"hour\";r=99;t=36, \"day\";r=999;t=87");
        let mut zero = String::new();
        push_number(&mut zero, 0);
        push_number(&mut zero, u64::MAX);
        assert_eq!(zero, format!("0{}", u64::MAX));
    }
}
