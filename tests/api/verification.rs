//! Every row of the verification table (SPEC §4), over real HTTP.

use serde_json::json;

use crate::helpers::*;

#[test]
fn health_needs_no_key() {
    let f = alice();
    let response = f.server.get("/v1/health", None);
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<serde_json::Value>().unwrap(), json!({"status": "ok"}));
}

#[test]
fn a_request_without_a_key_gets_401_missing_key_with_a_bearer_challenge() {
    let f = alice();
    let response = f.server.get("/v1/me", None);
    let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert_eq!(challenge, "Bearer realm=\"iblueprint\"");
    assert_problem(response, 401, "missing_key");
}

#[test]
fn malformed_bad_checksum_and_unknown_keys_all_get_401_invalid_key() {
    let f = alice();
    let mut bad_checksum = f.root_key.clone();
    let last = bad_checksum.pop().unwrap();
    bad_checksum.push(if last == 'a' { 'b' } else { 'a' });
    // Well-formed (valid checksum) but never issued: made by the real generator.
    let unknown = {
        let other = TestDir::new();
        other.add_user("bob");
        other.issue_key("bob", &[])
    };
    let cases = [
        "not-a-key".to_owned(),
        "ibp_short".to_owned(),
        format!("{}0", f.root_key),
        bad_checksum,
        unknown,
        "ibp_".to_owned() + &"!".repeat(46),
    ];
    for key in &cases {
        let response = f.server.get("/v1/me", Some(key));
        let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert_eq!(challenge, "Bearer realm=\"iblueprint\", error=\"invalid_token\"", "{key}");
        let body = assert_problem(response, 401, "invalid_key");
        assert!(!body.to_string().contains(key.as_str()), "the error echoed the presented key");
    }
    // A header that is not a bearer credential is an invalid key, not a missing one.
    let response =
        f.server.send(f.server.client.get(f.server.url("/v1/me")).header("Authorization", "Basic YTpi"), None);
    assert_problem(response, 401, "invalid_key");
}

#[test]
fn revoked_key_gets_403_on_the_next_request() {
    let f = alice();
    let (key, secret) = f.server.create_key(&f.root_key, json!({"name": "doomed"}));
    assert_eq!(f.server.get("/v1/me", Some(&secret)).status(), 200);
    let id = key["id"].as_str().unwrap();
    let response = f.server.post(&format!("/v1/keys/{id}/revoke"), Some(&f.root_key), &json!({}));
    assert_eq!(response.status(), 200);
    assert_problem(f.server.get("/v1/me", Some(&secret)), 403, "key_revoked");
    assert_problem(f.server.get("/v1/auth", Some(&secret)), 403, "key_revoked");
}

#[test]
fn revocation_survives_a_restart() {
    let f = alice();
    let (key, secret) = f.server.create_key(&f.root_key, json!({"name": "doomed"}));
    let id = key["id"].as_str().unwrap();
    f.server.post(&format!("/v1/keys/{id}/revoke"), Some(&f.root_key), &json!({}));
    assert!(f.server.stop().success());
    let server = f.dir.start();
    assert_problem(server.get("/v1/me", Some(&secret)), 403, "key_revoked");
}

#[test]
fn expired_key_gets_403_key_expired() {
    let f = alice();
    let (_, secret) = f.server.create_key(&f.root_key, json!({"name": "brief", "expires_in": 1}));
    // Expiry has one-second resolution: poll until the clock passes it (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let response = f.server.get("/v1/me", Some(&secret));
        if response.status() == 403 {
            assert_problem(response, 403, "key_expired");
            break;
        }
        assert_eq!(response.status(), 200, "a live key must verify until it expires");
        assert!(std::time::Instant::now() < deadline, "key never expired");
        std::thread::yield_now();
    }
}

#[test]
fn disabling_a_user_stops_all_their_keys_with_403_user_disabled() {
    let dir = TestDir::new();
    dir.add_user("carol");
    let first = dir.issue_key("carol", &[]);
    let second = dir.issue_key("carol", &["keys:read"]);
    let out = dir.cli(&["users", "disable", "carol"], "");
    assert!(out.status.success());
    let server = dir.start();
    assert_problem(server.get("/v1/me", Some(&first)), 403, "user_disabled");
    assert_problem(server.get("/v1/keys", Some(&second)), 403, "user_disabled");
    drop(server);
    assert!(dir.cli(&["users", "enable", "carol"], "").status.success());
    let server = dir.start();
    assert_eq!(server.get("/v1/me", Some(&first)).status(), 200);
}

#[test]
fn a_key_without_the_needed_scope_gets_403_insufficient_scope() {
    let f = alice();
    let (_, reader) = f.server.create_key(&f.root_key, json!({"name": "reader", "scopes": ["keys:read"]}));
    let response = f.server.post("/v1/keys", Some(&reader), &json!({"name": "x"}));
    let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Bearer realm=\"iblueprint\", error=\"insufficient_scope\""), "{challenge}");
    assert_problem(response, 403, "insufficient_scope");
    // No scopes at all: /v1/me and /v1/auth only.
    let (_, bare) = f.server.create_key(&f.root_key, json!({"name": "bare"}));
    assert_eq!(f.server.get("/v1/me", Some(&bare)).status(), 200);
    assert_eq!(f.server.get("/v1/auth", Some(&bare)).status(), 200);
    assert_problem(f.server.get("/v1/keys", Some(&bare)), 403, "insufficient_scope");
}

#[test]
fn forward_auth_passes_identity_headers_and_checks_query_scopes() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let secret = dir.issue_key("alice", &["billing:read", "keys:read"]);
    let server = dir.start();
    let me: serde_json::Value = server.get("/v1/me", Some(&secret)).json().unwrap();
    let key = &me["key"];
    let f = Fixture { dir, server, root_key: String::new() };
    for method in [reqwest::Method::GET, reqwest::Method::POST, reqwest::Method::HEAD] {
        let response = f.server.send(f.server.client.request(method.clone(), f.server.url("/v1/auth")), Some(&secret));
        assert_eq!(response.status(), 200, "{method}");
        let headers = response.headers();
        assert_eq!(headers["x-iblueprint-key-id"], key["id"].as_str().unwrap());
        assert_eq!(headers["x-iblueprint-user"], "alice");
        assert_eq!(headers["x-iblueprint-scopes"], "billing:read keys:read");
    }
    assert_eq!(f.server.get("/v1/auth?scope=billing:read&scope=keys:read", Some(&secret)).status(), 200);
    assert_problem(
        f.server.get("/v1/auth?scope=billing:read&scope=billing:write", Some(&secret)),
        403,
        "insufficient_scope",
    );
    assert_problem(f.server.get("/v1/auth?scope=Not%20A%20Scope", Some(&secret)), 400, "invalid_request");
    assert_problem(f.server.get("/v1/auth", None), 401, "missing_key");
}
