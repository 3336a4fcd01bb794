//! Per-key token buckets (SPEC §5) over real HTTP: headers, exactness under concurrency,
//! persistence across restarts and crashes, rotation and limit changes.

use serde_json::{Value, json};

use crate::helpers::*;

fn header(response: &reqwest::blocking::Response, name: &str) -> String {
    response.headers().get(name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

fn limited_key(f: &Fixture, per_hour: u64, per_day: Option<u64>) -> (Value, String) {
    let mut limit = json!({"per_hour": per_hour});
    if let Some(day) = per_day {
        limit["per_day"] = json!(day);
    }
    f.server.create_key(&f.root_key, json!({"name": "limited", "rate_limit": limit}))
}

#[test]
fn every_response_carries_exact_ratelimit_headers_and_a_429_has_retry_after() {
    let f = alice();
    let (_, secret) = limited_key(&f, 3, Some(10));
    let expected = [("2", "1200", "9", "8640"), ("1", "2400", "8", "17280"), ("0", "3600", "7", "25920")];
    for (hour_left, hour_full, day_left, day_full) in expected {
        let response = f.server.get("/v1/me", Some(&secret));
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "ratelimit-policy"), "\"hour\";q=3;w=3600, \"day\";q=10;w=86400");
        // `t` can be one second less if the clock ticked a millisecond between requests.
        let state = header(&response, "ratelimit");
        let exact = format!("\"hour\";r={hour_left};t={hour_full}, \"day\";r={day_left};t={day_full}");
        assert!(state == exact || ratelimit_within_a_second(&state, &exact), "{state} vs {exact}");
    }
    let refused = f.server.get("/v1/me", Some(&secret));
    assert_eq!(header(&refused, "retry-after"), "1200");
    assert!(header(&refused, "ratelimit").starts_with("\"hour\";r=0;"));
    assert_problem(refused, 429, "rate_limited");
}

/// Forward-auth sets the headers of a passed check itself, and leaves the key to the
/// response middleware only for the log line, so it is checked with the request log off as
/// well as on (every other test server logs at debug).
#[test]
fn forward_auth_carries_the_ratelimit_headers_with_the_request_log_on_and_off() {
    for log in ["debug", "warn"] {
        let f = alice_with(&[("RUST_LOG", log)]);
        let server = &f.server;
        let (_, secret) = server.create_key(&f.root_key, json!({"name": "limited", "rate_limit": {"per_hour": 2}}));
        let passed = server.get("/v1/auth", Some(&secret));
        assert_eq!(passed.status(), 200, "{log}");
        assert_eq!(header(&passed, "ratelimit-policy"), "\"hour\";q=2;w=3600", "{log}");
        assert!(header(&passed, "ratelimit").starts_with("\"hour\";r=1;"), "{log}");
        // A bad scope query is refused after the key was checked (and counted).
        let refused = server.get("/v1/auth?scope=Not%20A%20Scope", Some(&secret));
        assert!(header(&refused, "ratelimit").starts_with("\"hour\";r=0;"), "{log}");
        assert_problem(refused, 400, "invalid_request");
        let limited = server.get("/v1/auth", Some(&secret));
        assert_eq!(header(&limited, "ratelimit-policy"), "\"hour\";q=2;w=3600", "{log}");
        assert!(header(&limited, "ratelimit").starts_with("\"hour\";r=0;"), "{log}");
        assert_eq!(header(&limited, "retry-after"), "1800", "{log}");
        assert_problem(limited, 429, "rate_limited");
    }
}

/// True when `state` equals `exact` except that each `t` may be one smaller.
fn ratelimit_within_a_second(state: &str, exact: &str) -> bool {
    let nums = |s: &str| -> Vec<i64> {
        s.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty()).map(|p| p.parse().unwrap()).collect()
    };
    let (a, b) = (nums(state), nums(exact));
    a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x == y || *x == y - 1)
}

#[test]
fn keys_without_limits_get_no_ratelimit_headers() {
    let f = alice();
    let response = f.server.get("/v1/me", Some(&f.root_key));
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("ratelimit").is_none());
    assert!(response.headers().get("ratelimit-policy").is_none());
}

#[test]
fn thirty_two_concurrent_clients_get_exactly_the_hourly_quota() {
    let f = alice();
    let (_, secret) = limited_key(&f, 100, None);
    let admitted = std::sync::atomic::AtomicUsize::new(0);
    let refused = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..32 {
            scope.spawn(|| {
                let client = reqwest::blocking::Client::new();
                for _ in 0..5 {
                    let status = client.get(f.server.url("/v1/auth")).bearer_auth(&secret).send().unwrap().status();
                    match status.as_u16() {
                        200 => admitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
                        429 => refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
                        other => panic!("unexpected status {other}"),
                    };
                }
            });
        }
    });
    assert_eq!(admitted.into_inner(), 100);
    assert_eq!(refused.into_inner(), 60);
}

#[test]
fn a_refused_request_does_not_spend_the_day_bucket() {
    let f = alice();
    let (key, secret) = limited_key(&f, 2, Some(10));
    for _ in 0..2 {
        assert_eq!(f.server.get("/v1/me", Some(&secret)).status(), 200);
    }
    for _ in 0..3 {
        let refused = f.server.get("/v1/me", Some(&secret));
        assert_eq!(refused.status(), 429);
        assert!(header(&refused, "ratelimit").contains("\"day\";r=8;"), "{}", header(&refused, "ratelimit"));
    }
    // Raising the hourly limit keeps the hour level (0) but lets the day bucket decide.
    let id = key["id"].as_str().unwrap();
    let patched = f.server.patch(
        &format!("/v1/keys/{id}"),
        Some(&f.root_key),
        &json!({"rate_limit": {"per_hour": 1000, "per_day": 10}}),
    );
    assert_eq!(patched.status(), 200);
    let refused = f.server.get("/v1/me", Some(&secret));
    assert_eq!(refused.status(), 429, "raising a limit must not refill the bucket");
}

#[test]
fn lowering_a_limit_caps_the_current_level() {
    let f = alice();
    let (key, secret) = limited_key(&f, 100, None);
    assert_eq!(f.server.get("/v1/me", Some(&secret)).status(), 200); // 99 left
    let id = key["id"].as_str().unwrap();
    f.server.patch(&format!("/v1/keys/{id}"), Some(&f.root_key), &json!({"rate_limit": {"per_hour": 5}}));
    let response = f.server.get("/v1/me", Some(&secret));
    assert!(header(&response, "ratelimit").starts_with("\"hour\";r=4;"), "{}", header(&response, "ratelimit"));
}

#[test]
fn rotation_does_not_reset_the_budget() {
    let f = alice();
    let (key, secret) = limited_key(&f, 5, None);
    for _ in 0..3 {
        assert_eq!(f.server.get("/v1/me", Some(&secret)).status(), 200);
    }
    let id = key["id"].as_str().unwrap();
    let rotated: Value = f
        .server
        .post(&format!("/v1/keys/{id}/rotate"), Some(&f.root_key), &json!({"grace_seconds": 600}))
        .json()
        .unwrap();
    let new_secret = rotated["secret"].as_str().unwrap();
    let response = f.server.get("/v1/me", Some(new_secret));
    assert!(header(&response, "ratelimit").starts_with("\"hour\";r=1;"), "{}", header(&response, "ratelimit"));
    // During the grace period old and new key share one budget.
    assert_eq!(f.server.get("/v1/me", Some(&secret)).status(), 200);
    assert_eq!(f.server.get("/v1/me", Some(new_secret)).status(), 429);
    assert_eq!(f.server.get("/v1/me", Some(&secret)).status(), 429);
}

#[test]
fn an_exhausted_key_stays_429_after_a_clean_restart() {
    let f = alice();
    let (_, secret) = limited_key(&f, 3, None);
    for _ in 0..3 {
        assert_eq!(f.server.get("/v1/me", Some(&secret)).status(), 200);
    }
    assert!(f.server.stop().success());
    let server = f.dir.start();
    assert_problem(server.get("/v1/me", Some(&secret)), 429, "rate_limited");
}

#[test]
fn an_exhausted_key_stays_429_after_a_crash_once_a_flush_interval_has_passed() {
    let f = alice_with(&[("IBLUEPRINT_FLUSH_INTERVAL_MS", "50")]);
    let (key, secret) = f.server.create_key(&f.root_key, json!({"name": "limited", "rate_limit": {"per_hour": 4}}));
    for _ in 0..4 {
        assert_eq!(f.server.get("/v1/me", Some(&secret)).status(), 200);
    }
    // request_count is written in the same flush as (and never before) the bucket levels,
    // so once the API shows all four uses, the spent budget is on disk.
    let id = key["id"].as_str().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let shown: Value = f.server.get(&format!("/v1/keys/{id}"), Some(&f.root_key)).json().unwrap();
        if shown["request_count"] == 4 {
            assert!(shown["last_used_at"].is_string());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "usage never flushed: {shown}");
        std::thread::yield_now();
    }
    f.server.kill();
    let server = f.dir.start();
    assert_problem(server.get("/v1/me", Some(&secret)), 429, "rate_limited");
}

#[test]
fn me_shows_the_usage_of_the_latest_flush() {
    // The server's memo of verified keys outlives the limiter's flushes, which change nothing
    // a verification decides on; /v1/me must still show the counters they wrote.
    let f = alice_with(&[("IBLUEPRINT_FLUSH_INTERVAL_MS", "50")]);
    let (_, secret) = f.server.create_key(&f.root_key, json!({"name": "counted"}));
    for _ in 0..3 {
        assert_eq!(f.server.get("/v1/auth", Some(&secret)).status(), 200);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let me: Value = f.server.get("/v1/me", Some(&secret)).json().unwrap();
        // Every /v1/me is a use too, so the count only grows.
        if me["key"]["request_count"].as_u64().is_some_and(|count| count >= 3) {
            assert!(me["key"]["last_used_at"].is_string(), "{me}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "usage never reached /v1/me: {me}");
        std::thread::yield_now();
    }
}

#[test]
fn usage_counts_reach_the_key_after_a_clean_shutdown() {
    let f = alice();
    let (key, secret) = f.server.create_key(&f.root_key, json!({"name": "counted"}));
    for _ in 0..7 {
        assert_eq!(f.server.get("/v1/auth", Some(&secret)).status(), 200);
    }
    assert_problem(f.server.get("/v1/keys", Some(&secret)), 403, "insufficient_scope");
    assert!(f.server.stop().success());
    let server = f.dir.start();
    let id = key["id"].as_str().unwrap();
    let shown: Value = server.get(&format!("/v1/keys/{id}"), Some(&f.root_key)).json().unwrap();
    assert_eq!(shown["request_count"], 7, "refused requests are not counted: {shown}");
    assert!(shown["last_used_at"].is_string());
}
