//! The Prometheus listener (`metrics.listen`, SPEC §9): requests by route and status,
//! verifications by outcome with a latency histogram, flushes, and the data file's size,
//! all counted exactly for a known sequence of requests.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

struct Scraper {
    url: String,
    client: reqwest::blocking::Client,
}

impl Scraper {
    /// The listener's address is printed after the API's (one line per API address).
    fn of(server: &mut TestServer) -> Scraper {
        let mut seen = Vec::new();
        while seen.len() < 8 {
            let line = server.next_stdout_line();
            if let Some(url) = line.trim().strip_prefix("iblueprint metrics on ") {
                return Scraper { url: url.to_owned(), client: reqwest::blocking::Client::new() };
            }
            assert!(!line.is_empty(), "the server's output ended without a metrics line: {seen:?}");
            seen.push(line);
        }
        panic!("no metrics line among {seen:?}");
    }

    fn scrape(&self) -> String {
        let response = self.client.get(&self.url).send().expect("scrape");
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        response.text().expect("text")
    }
}

/// The value of the one sample whose name and labels are exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.rsplit_once(' ').filter(|(name, _)| *name == series))
        .map(|(_, value)| value.parse().expect("a number"))
}

fn metrics_server(dir: &TestDir, env: &[(&str, &str)]) -> (TestServer, Scraper) {
    let mut env = env.to_vec();
    env.push(("IBLUEPRINT_METRICS_LISTEN", "127.0.0.1:0"));
    let mut server = dir.start_with(&[], &env);
    let scraper = Scraper::of(&mut server);
    (server, scraper)
}

#[test]
fn requests_and_verifications_are_counted_exactly_by_route_status_and_outcome() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let root = dir.issue_key("alice", &["keys:read", "keys:write"]);
    let (server, metrics) = metrics_server(&dir, &[]);

    let (revoked, revoked_secret) = server.create_key(&root, json!({"name": "old"}));
    let id = revoked["id"].as_str().unwrap();
    assert_eq!(server.post(&format!("/v1/keys/{id}/revoke"), Some(&root), &json!({})).status(), 200);
    let (_, limited) = server.create_key(&root, json!({"name": "one", "rate_limit": {"per_hour": 1}}));
    let (_, reader) = server.create_key(&root, json!({"name": "reader", "scopes": []}));

    assert_eq!(server.get("/v1/health", None).status(), 200);
    assert_eq!(server.get("/v1/me", Some(&root)).status(), 200);
    assert_eq!(server.get("/v1/auth", Some(&limited)).status(), 200);
    assert_eq!(server.get("/v1/auth", Some(&limited)).status(), 429);
    assert_eq!(server.get("/v1/me", Some(&revoked_secret)).status(), 403);
    assert_eq!(server.get("/v1/keys", Some(&reader)).status(), 403);
    // The last character changed (to one it is not: a fixed '0' was the same key once in 62).
    let last = if root.ends_with('0') { '1' } else { '0' };
    let bad_checksum = format!("{}{last}", &root[..root.len() - 1]);
    assert_eq!(server.get("/v1/me", Some(&bad_checksum)).status(), 401);
    assert_eq!(server.get("/v1/me", None).status(), 401);
    assert_eq!(server.get("/no/such/thing", None).status(), 404);

    let text = metrics.scrape();
    let requests = |route: &str, status: u16| {
        sample(&text, &format!("iblueprint_http_requests_total{{route=\"{route}\",status=\"{status}\"}}"))
    };
    assert_eq!(requests("keys", 201), Some(3.0), "{text}");
    assert_eq!(requests("key_revoke", 200), Some(1.0));
    assert_eq!(requests("health", 200), Some(1.0));
    assert_eq!(requests("me", 200), Some(1.0));
    assert_eq!(requests("me", 403), Some(1.0));
    assert_eq!(requests("me", 401), Some(2.0));
    assert_eq!(requests("auth", 200), Some(1.0));
    assert_eq!(requests("auth", 429), Some(1.0));
    assert_eq!(requests("keys", 403), Some(1.0));
    assert_eq!(requests("unmatched", 404), Some(1.0));
    assert!(!text.contains("/no/such/thing"), "raw paths never become labels");

    let outcome = |name: &str| sample(&text, &format!("iblueprint_verifications_total{{outcome=\"{name}\"}}"));
    // The root key verified for 3 creates, the revoke and /v1/me; the limited key once.
    assert_eq!(outcome("ok"), Some(6.0), "{text}");
    assert_eq!(outcome("rate_limited"), Some(1.0));
    assert_eq!(outcome("revoked"), Some(1.0));
    assert_eq!(outcome("insufficient_scope"), Some(1.0));
    assert_eq!(outcome("invalid"), Some(1.0), "a missing header is not a verification");
    assert_eq!(outcome("expired"), Some(0.0));
    let count = sample(&text, "iblueprint_verification_duration_seconds_count");
    assert_eq!(count, Some(10.0));
    assert_eq!(sample(&text, "iblueprint_verification_duration_seconds_bucket{le=\"+Inf\"}"), Some(10.0));
    let sum = sample(&text, "iblueprint_verification_duration_seconds_sum").expect("sum");
    assert!(sum > 0.0 && sum < 10.0, "{sum}");

    let size = std::fs::metadata(dir.data()).expect("data file").len();
    assert_eq!(sample(&text, "iblueprint_data_file_bytes"), Some(size as f64));
}

#[test]
fn flushes_are_timed_and_counted() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let root = dir.issue_key("alice", &["keys:read", "keys:write"]);
    let (server, metrics) = metrics_server(&dir, &[("IBLUEPRINT_FLUSH_INTERVAL_MS", "10")]);
    for _ in 0..3 {
        assert_eq!(server.get("/v1/me", Some(&root)).status(), 200);
    }
    // The flusher runs on its own clock: poll until it has written the usage.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = metrics.scrape();
        if sample(&text, "iblueprint_flush_duration_seconds_count").unwrap_or(0.0) >= 1.0 {
            break text;
        }
        assert!(Instant::now() < deadline, "no flush within 10 s:\n{text}");
        std::thread::yield_now();
    };
    // One key's usage counter (it has no limits, so no bucket levels) per flush.
    assert_eq!(
        sample(&text, "iblueprint_flush_batch_records_sum"),
        sample(&text, "iblueprint_flush_batch_records_count"),
        "{text}"
    );
    assert_eq!(sample(&text, "iblueprint_flush_failures_total"), Some(0.0));
}

#[test]
fn the_listener_serves_only_metrics_and_the_api_does_not_serve_them() {
    let dir = TestDir::new();
    let (server, metrics) = metrics_server(&dir, &[]);
    let base = metrics.url.trim_end_matches("/metrics");
    let other = metrics.client.get(format!("{base}/v1/health")).send().expect("request");
    assert_eq!(other.status(), 404);
    let post = metrics.client.post(&metrics.url).send().expect("request");
    assert_eq!(post.status(), 404);
    assert_problem(server.get("/metrics", None), 404, "not_found");
}

#[test]
fn a_metrics_address_already_taken_stops_start_up_with_a_message_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = TestDir::new();
    let config = dir.dir.path().join("iblueprint.toml");
    std::fs::write(&config, format!("[metrics]\nlisten = \"{addr}\"\n")).expect("config");
    let data = dir.data();
    let args =
        ["serve", "--listen", "127.0.0.1:0", "--config", config.to_str().unwrap(), "--data", data.to_str().unwrap()];
    let out = run_cli(&args, None, "");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("metrics listener on {addr}")), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"), "the API was never announced");
}
