//! `RateLimit-Policy` and `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers), which
//! [`super::finish`] puts on every response to a request whose key has limits, whatever the
//! handler answered.
//!
//! ```text
//! RateLimit-Policy: "hour";q=100;w=3600, "day";q=1000;w=86400
//! RateLimit: "hour";r=99;t=36, "day";r=999;t=87
//! ```

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::domain::ratelimit::Decision;

static POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static STATE: HeaderName = HeaderName::from_static("ratelimit");

/// Sets both headers for `decision`, replacing any the handler set.
pub fn insert(headers: &mut HeaderMap, decision: &Decision) {
    let (policy, current) = render(decision);
    // Handed over without a copy; the values are ASCII by construction.
    if let (Ok(policy), Ok(current)) = (HeaderValue::try_from(policy), HeaderValue::try_from(current)) {
        headers.insert(POLICY.clone(), policy);
        headers.insert(STATE.clone(), current);
    }
}

/// The two header values for a decision. Built as bytes by hand rather than with `format!`
/// or `String` pushes: this runs on every limited request, and both showed in profiles.
pub fn render(decision: &Decision) -> (Vec<u8>, Vec<u8>) {
    let mut policy = Vec::with_capacity(64);
    let mut current = Vec::with_capacity(64);
    for (i, w) in decision.windows().enumerate() {
        if i > 0 {
            policy.extend_from_slice(b", ");
            current.extend_from_slice(b", ");
        }
        for (out, value) in [(&mut policy, "\";q="), (&mut current, "\";r=")] {
            out.push(b'"');
            out.extend_from_slice(w.name.as_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        push_number(&mut policy, u64::from(w.quota));
        policy.extend_from_slice(b";w=");
        push_number(&mut policy, w.window_seconds);
        push_number(&mut current, w.remaining);
        current.extend_from_slice(b";t=");
        push_number(&mut current, w.seconds_to_full);
    }
    (policy, current)
}

fn push_number(out: &mut Vec<u8>, mut value: u64) {
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
    out.extend_from_slice(&digits[at..]);
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
        assert_eq!(policy, b"\"hour\";q=100;w=3600, \"day\";q=1000;w=86400");
        assert_eq!(current, b"\"hour\";r=99;t=36, \"day\";r=999;t=87");
        let mut zero = Vec::new();
        push_number(&mut zero, 0);
        push_number(&mut zero, u64::MAX);
        assert_eq!(zero, format!("0{}", u64::MAX).into_bytes());
    }
}
