//! `RateLimit-Policy` and `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers), which
//! [`super::finish`] puts on every response to a request whose key has limits, whatever the
//! handler answered.
//!
//! ```text
//! RateLimit-Policy: "hour";q=100;w=3600, "day";q=1000;w=86400
//! RateLimit: "hour";r=99;t=36, "day";r=999;t=87
//! ```

use std::cell::RefCell;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::domain::ratelimit::{Decision, WindowState};

static POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static STATE: HeaderName = HeaderName::from_static("ratelimit");

thread_local! {
    /// The policy header of the limits this worker answered for last. Most keys share a few
    /// limits (the configured default), so the value is rendered once instead of per request.
    static LAST_POLICY: RefCell<Option<(Quotas, HeaderValue)>> = const { RefCell::new(None) };
}

/// What the policy header depends on: each window's quota.
type Quotas = (Option<u32>, Option<u32>);

/// Sets both headers for `decision`, replacing any the handler set.
pub fn insert(headers: &mut HeaderMap, decision: &Decision) {
    let quotas = (decision.hour.map(|w| w.quota), decision.day.map(|w| w.quota));
    let policy = LAST_POLICY.with_borrow_mut(|last| match last {
        Some((seen, value)) if *seen == quotas => Some(value.clone()),
        _ => {
            let value = HeaderValue::try_from(policy(decision)).ok()?;
            *last = Some((quotas, value.clone()));
            Some(value)
        }
    });
    // Handed over without a copy; the values are ASCII by construction.
    if let (Some(policy), Ok(state)) = (policy, HeaderValue::try_from(state(decision))) {
        headers.insert(POLICY.clone(), policy);
        headers.insert(STATE.clone(), state);
    }
}

/// `RateLimit-Policy`: each window's quota and length.
fn policy(decision: &Decision) -> Vec<u8> {
    render(decision, [(b"q=", |w| u64::from(w.quota)), (b"w=", |w| w.window_seconds)])
}

/// `RateLimit`: what is left of each window now, and how long until it is full.
fn state(decision: &Decision) -> Vec<u8> {
    render(decision, [(b"r=", |w| w.remaining), (b"t=", |w| w.seconds_to_full)])
}

/// A parameter of each window's item: its name with `=`, and where its value comes from.
type Field = (&'static [u8], fn(&WindowState) -> u64);

/// `"hour";a=1;b=2, "day";a=3;b=4`. Built as bytes by hand rather than with `format!` or
/// `String` pushes: this runs on every limited request, and both showed in profiles.
fn render(decision: &Decision, fields: [Field; 2]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    for (i, window) in decision.windows().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.push(b'"');
        out.extend_from_slice(window.name.as_bytes());
        out.push(b'"');
        for (name, value) in fields {
            out.push(b';');
            out.extend_from_slice(name);
            push_number(&mut out, value(window));
        }
    }
    out
}

fn push_number(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
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
        assert_eq!(policy(&decision), b"\"hour\";q=100;w=3600, \"day\";q=1000;w=86400");
        assert_eq!(state(&decision), b"\"hour\";r=99;t=36, \"day\";r=999;t=87");
        let mut zero = Vec::new();
        push_number(&mut zero, 0);
        push_number(&mut zero, u64::MAX);
        assert_eq!(zero, format!("0{}", u64::MAX).into_bytes());
    }

    #[test]
    fn the_remembered_policy_follows_the_limits() {
        let mut headers = HeaderMap::new();
        let policy_for = |headers: &mut HeaderMap, hour, day| {
            let limit = RateLimit::new(hour, day).unwrap();
            insert(headers, &Buckets::default().check(limit, 0));
            headers.get(&POLICY).unwrap().to_str().unwrap().to_owned()
        };
        assert_eq!(policy_for(&mut headers, Some(100), None), "\"hour\";q=100;w=3600");
        assert_eq!(policy_for(&mut headers, Some(100), None), "\"hour\";q=100;w=3600");
        assert_eq!(policy_for(&mut headers, Some(100), Some(5)), "\"hour\";q=100;w=3600, \"day\";q=5;w=86400");
        assert_eq!(policy_for(&mut headers, None, Some(5)), "\"day\";q=5;w=86400");
        assert_eq!(headers.get(&STATE).unwrap().to_str().unwrap(), "\"day\";r=4;t=17280");
    }
}
