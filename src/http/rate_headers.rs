//! `RateLimit-Policy` and `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers), on
//! every response to a request whose key has limits, whatever the handler answered:
//! [`super::finish`] puts them on, except on a passed forward-auth check, whose handler
//! does (see `auth::authenticate_identity`).
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
            let value = policy(decision).to_header()?;
            *last = Some((quotas, value.clone()));
            Some(value)
        }
    });
    // The values are ASCII by construction, so neither conversion fails in practice; if one
    // did, the response goes out without the pair rather than with half of it.
    if let (Some(policy), Some(state)) = (policy, state(decision).to_header()) {
        headers.insert(POLICY.clone(), policy);
        headers.insert(STATE.clone(), state);
    }
}

/// `RateLimit-Policy`: each window's quota and length.
fn policy(decision: &Decision) -> Rendered {
    render(decision, b"q=", |w| u64::from(w.quota), b";w=", |w| w.window_seconds)
}

/// `RateLimit`: what is left of each window now, and how long until it is full.
fn state(decision: &Decision) -> Rendered {
    render(decision, b"r=", |w| w.remaining, b";t=", |w| w.seconds_to_full)
}

/// The longest value: two windows, each `"hour";r=<20 digits>;t=<20 digits>` ("hour" is the
/// longer of the domain's window names), and `, `.
const RENDERED_MAX: usize = 2 * (b"\"hour\";r=".len() + 20 + b";t=".len() + 20) + b", ".len();

/// `"hour";a=1;b=2, "day";a=3;b=4`: each window in the decision's order, named as the
/// domain names it, with two parameters. Written into a buffer on the stack, byte by byte:
/// this runs on every limited request, and `format!`, then a `Vec` (two allocations once it
/// became a header value), each showed in profiles.
#[inline]
fn render(
    decision: &Decision,
    first: &[u8],
    first_value: impl Fn(&WindowState) -> u64,
    second: &[u8],
    second_value: impl Fn(&WindowState) -> u64,
) -> Rendered {
    let mut out = Rendered { bytes: [0; RENDERED_MAX], len: 0 };
    for window in decision.windows() {
        if out.len > 0 {
            out.push(b", ");
        }
        out.push(b"\"");
        out.push(window.name.as_bytes());
        out.push(b"\";");
        out.push(first);
        out.push_number(first_value(window));
        out.push(second);
        out.push_number(second_value(window));
    }
    out
}

/// A header value being written. It cannot overflow (see [`RENDERED_MAX`]); were it ever to,
/// the value is cut short, which [`Rendered::to_header`] refuses, rather than a panic on a
/// request path.
struct Rendered {
    bytes: [u8; RENDERED_MAX],
    len: usize,
}

impl Rendered {
    #[inline]
    fn push(&mut self, part: &[u8]) {
        if let Some(to) = self.bytes.get_mut(self.len..self.len + part.len()) {
            to.copy_from_slice(part);
            self.len += part.len();
        } else {
            self.len = RENDERED_MAX + 1;
        }
    }

    /// Decimal digits, written in place from the last.
    #[inline]
    fn push_number(&mut self, mut value: u64) {
        let digits = value.checked_ilog10().map_or(1, |log| log as usize + 1);
        let Some(to) = self.bytes.get_mut(self.len..self.len + digits) else {
            self.len = RENDERED_MAX + 1;
            return;
        };
        for digit in to.iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
        self.len += digits;
    }

    fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    fn to_header(&self) -> Option<HeaderValue> {
        if self.len > RENDERED_MAX {
            return None;
        }
        HeaderValue::from_bytes(self.as_bytes()).ok()
    }
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
        assert_eq!(policy(&decision).as_bytes(), b"\"hour\";q=100;w=3600, \"day\";q=1000;w=86400");
        assert_eq!(state(&decision).as_bytes(), b"\"hour\";r=99;t=36, \"day\";r=999;t=87");
    }

    #[test]
    fn the_longest_value_fits() {
        let window = |name| WindowState {
            name,
            quota: u32::MAX,
            window_seconds: 0,
            remaining: u64::MAX,
            seconds_to_full: u64::MAX,
        };
        let decision = Decision { allowed: true, retry_after: 0, hour: Some(window("hour")), day: Some(window("day")) };
        let max = u64::MAX;
        let expected = format!("\"hour\";r={max};t={max}, \"day\";r={max};t={max}");
        assert_eq!(std::str::from_utf8(state(&decision).as_bytes()).unwrap(), expected);
        assert!(state(&decision).to_header().is_some());
    }

    #[test]
    fn every_number_is_written_in_full() {
        for value in [0, 1, 9, 10, 99, 100, 3600, 86_400, 999_999_999, 1_000_000_000, u64::MAX / 10, u64::MAX] {
            let mut out = Rendered { bytes: [0; RENDERED_MAX], len: 0 };
            out.push_number(value);
            assert_eq!(out.as_bytes(), value.to_string().as_bytes());
        }
    }

    #[test]
    fn a_value_too_long_for_the_buffer_is_refused_whole() {
        let mut out = Rendered { bytes: [0; RENDERED_MAX], len: 0 };
        for _ in 0..RENDERED_MAX / 20 + 1 {
            out.push_number(u64::MAX);
        }
        out.push(b"x");
        assert!(out.as_bytes().is_empty());
        assert!(out.to_header().is_none());
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
