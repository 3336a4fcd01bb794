//! Bad input never panics the server, never changes data, and never comes back with a
//! secret in it. Every test ends by checking that the server is healthy, alive, did not
//! panic, and holds exactly the keys it held before.

use reqwest::blocking::Response;
use reqwest::header::HeaderValue;
use serde_json::{Value, json};

use crate::helpers::*;

/// A server with alice's root key and two more keys, and a record of what they look like.
struct Scene {
    f: Fixture,
    key_id: String,
    other_secret: String,
    before: Vec<Value>,
}

fn scene() -> Scene {
    let f = alice();
    let (key, _) = f.server.create_key(&f.root_key, json!({"name": "target", "rate_limit": {"per_hour": 5}}));
    let (_, other_secret) = f.server.create_key(&f.root_key, json!({"name": "other"}));
    let before = fingerprint(&f);
    Scene { key_id: key["id"].as_str().unwrap().to_owned(), other_secret, before, f }
}

/// Every key's stored settings, newest first (usage counters left out).
fn fingerprint(f: &Fixture) -> Vec<Value> {
    let response = f.server.get("/v1/keys?limit=200", Some(&f.root_key));
    assert_eq!(response.status(), 200);
    let list: Value = response.json().unwrap();
    list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            json!({
                "id": k["id"], "name": k["name"], "start": k["start"], "end": k["end"],
                "created_at": k["created_at"], "expires_at": k["expires_at"], "revoked_at": k["revoked_at"],
                "rate_limit": k["rate_limit"], "scopes": k["scopes"], "status": k["status"],
            })
        })
        .collect()
}

impl Scene {
    fn url(&self, path: &str) -> String {
        self.f.server.url(path)
    }

    /// Sends raw bytes as a JSON body with alice's root key.
    fn raw(&self, method: reqwest::Method, path: &str, body: Vec<u8>) -> Response {
        let request =
            self.f.server.client.request(method, self.url(path)).header("content-type", "application/json").body(body);
        self.f.server.send(request, Some(&self.f.root_key))
    }

    /// The server answers health, never panicked, holds the same keys, and still stops
    /// cleanly on SIGTERM (which fails if the process had died).
    #[track_caller]
    fn assert_unharmed(self) {
        let health = self.f.server.get("/v1/health", None);
        assert_eq!(health.status(), 200);
        assert_eq!(health.json::<Value>().unwrap(), json!({"status": "ok"}));
        assert_eq!(fingerprint(&self.f), self.before, "hostile input changed the stored keys");
        assert_eq!(
            self.f.server.get("/v1/me", Some(&self.other_secret)).status(),
            200,
            "an untouched key stopped working"
        );
        let log = self.f.server.log();
        assert!(!log.contains("panicked"), "the server panicked:\n{log}");
        let status = self.f.server.stop();
        assert!(status.success(), "the server did not shut down cleanly: {status:?}");
    }
}

/// Every route that takes a JSON body, as (method, path).
fn body_routes(key_id: &str) -> Vec<(reqwest::Method, String)> {
    vec![
        (reqwest::Method::POST, "/v1/keys".to_owned()),
        (reqwest::Method::PATCH, format!("/v1/keys/{key_id}")),
        (reqwest::Method::POST, format!("/v1/keys/{key_id}/revoke")),
        (reqwest::Method::POST, format!("/v1/keys/{key_id}/rotate")),
    ]
}

#[test]
fn malformed_json_is_a_400_on_every_route_and_changes_nothing() {
    let s = scene();
    let bodies: [&[u8]; 11] = [
        b"{",
        b"{\"name\":",
        b"{\"name\": \"x\",}",
        b"nul",
        b"{\"name\": \"x\"} trailing",
        b"{\"name\": \"x\"}{\"name\": \"y\"}",
        b"\xff\xfe{\"name\": \"x\"}",
        b"{\"name\": \"\xff\"}",
        b"{\"name\": \"\\ud800\"}",
        b"{'name': 'x'}",
        b"\0",
    ];
    for (method, path) in body_routes(&s.key_id) {
        for body in bodies {
            let response = s.raw(method.clone(), &path, body.to_vec());
            let problem = assert_problem(response, 400, "invalid_request");
            let detail = problem["detail"].as_str().unwrap();
            assert!(
                detail.contains("at line 1 column"),
                "{method} {path} {:?}: the detail gives the position: {detail}",
                String::from_utf8_lossy(body)
            );
        }
    }
    s.assert_unharmed();
}

#[test]
fn a_syntax_error_outside_any_field_is_described_as_in_the_request_body() {
    // body.rs: "`.` is the path of the whole body; anything else names the field at fault".
    // A syntax error before any field is read must not come back as a field named `?`.
    let s = scene();
    for body in ["{", "{\"name\": \"x\",}", "{'name': 'x'}", "{\"name\" \"x\"}"] {
        let problem =
            assert_problem(s.raw(reqwest::Method::POST, "/v1/keys", body.as_bytes().to_vec()), 400, "invalid_request");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.starts_with("request body: "),
            "{body}: expected the detail to start with `request body: `, got {detail:?}"
        );
    }
    s.assert_unharmed();
}

#[test]
fn json_that_is_not_an_object_is_a_400_on_every_route() {
    let s = scene();
    // Arrays that line up with a struct's fields are covered by the test below.
    let bodies = ["[\"name\", \"x\"]", "[{\"name\": \"x\"}]", "\"name\"", "\"\"", "42", "null", "true", "{}{}"];
    for (method, path) in body_routes(&s.key_id) {
        for body in bodies {
            let response = s.raw(method.clone(), &path, body.as_bytes().to_vec());
            assert_refused_as_not_an_object(response, &format!("{method} {path} {body}"));
        }
    }
    s.assert_unharmed();
}

#[test]
fn a_json_array_is_not_read_as_a_struct_in_field_order() {
    // serde reads a struct from a sequence of its fields in declaration order, so unless a
    // body is required to be an object, `[]` revokes, `[3600]` rotates with a grace period
    // and `["x", null, null, null, []]` creates a key. Bodies are JSON objects (SPEC §6).
    let s = scene();
    let cases = [
        (reqwest::Method::POST, "/v1/keys".to_owned(), r#"["from-an-array", null, null, null, []]"#),
        (
            reqwest::Method::POST,
            "/v1/keys".to_owned(),
            r#"["from-an-array", {"per_hour": 1}, null, 60, ["keys:read"]]"#,
        ),
        (reqwest::Method::PATCH, format!("/v1/keys/{}", s.key_id), r#"["renamed-by-array", null]"#),
        (reqwest::Method::POST, format!("/v1/keys/{}/rotate", s.key_id), "[3600]"),
        (reqwest::Method::POST, format!("/v1/keys/{}/rotate", s.key_id), "[]"),
        (reqwest::Method::POST, format!("/v1/keys/{}/revoke", s.key_id), "[]"),
    ];
    for (method, path, body) in cases {
        let response = s.raw(method.clone(), &path, body.as_bytes().to_vec());
        assert_refused_as_not_an_object(response, &format!("{method} {path} {body}"));
    }
    s.assert_unharmed();
}

#[track_caller]
fn assert_refused_as_not_an_object(response: Response, context: &str) {
    let status = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    assert_eq!(
        status, 400,
        "{context}: a body that is not a JSON object must be refused with 400, got {status}: {text}"
    );
    let problem: Value = serde_json::from_str(&text).expect("problem json");
    assert_eq!(problem["code"], "invalid_request", "{context}: {problem}");
    let detail = problem["detail"].as_str().unwrap_or_default();
    // `{}{}` is an object with trailing JSON, refused as such; every other body here is
    // not an object at all, which the detail says in our words, not serde's type names.
    if !context.ends_with("{}{}") {
        assert_eq!(detail, "the request body must be a JSON object", "{context}");
    }
}

#[test]
fn a_missing_required_field_is_named_first_in_the_detail() {
    let s = scene();
    let problem = assert_problem(s.raw(reqwest::Method::POST, "/v1/keys", b"{}".to_vec()), 400, "invalid_request");
    assert_eq!(problem["detail"], "name: is required");
    s.assert_unharmed();
}

#[test]
fn an_empty_body_on_create_or_patch_is_a_400() {
    let s = scene();
    for body in ["", "   \n\t "] {
        let problem =
            assert_problem(s.raw(reqwest::Method::POST, "/v1/keys", body.as_bytes().to_vec()), 400, "invalid_request");
        assert!(problem["detail"].as_str().unwrap().contains("JSON object"), "{problem}");
        let path = format!("/v1/keys/{}", s.key_id);
        assert_problem(s.raw(reqwest::Method::PATCH, &path, body.as_bytes().to_vec()), 400, "invalid_request");
    }
    s.assert_unharmed();
}

#[test]
fn a_body_over_64_kib_is_413_payload_too_large() {
    let s = scene();
    let big = format!("{{\"name\": \"{}\"}}", "a".repeat(65 * 1024));
    for (method, path) in body_routes(&s.key_id) {
        let response = s.raw(method.clone(), &path, big.clone().into_bytes());
        assert_problem(response, 413, "payload_too_large");
    }
    s.assert_unharmed();
}

#[test]
fn a_chunked_body_over_64_kib_is_413_payload_too_large() {
    let s = scene();
    // A reader body has no Content-Length: reqwest sends it chunked, so the server can only
    // find out while reading.
    let big = format!("{{\"name\": \"{}\"}}", "a".repeat(65 * 1024)).into_bytes();
    let body = reqwest::blocking::Body::new(std::io::Cursor::new(big));
    let request = s.f.server.client.post(s.url("/v1/keys")).header("content-type", "application/json").body(body);
    let response = s.f.server.send(request, Some(&s.f.root_key));
    assert_problem(response, 413, "payload_too_large");
    s.assert_unharmed();
}

#[test]
fn a_body_of_exactly_64_kib_is_accepted() {
    let s = scene();
    let mut body = b"{\"name\": \"padded\"}".to_vec();
    body.resize(64 * 1024, b' ');
    let response = s.raw(reqwest::Method::PATCH, &format!("/v1/keys/{}", s.key_id), body);
    assert_eq!(response.status(), 200, "64 KiB is the limit, not over it");
    assert_eq!(response.json::<Value>().unwrap()["name"], "padded");
    // Put the name back so the final check sees the original keys.
    let back = s.f.server.patch(&format!("/v1/keys/{}", s.key_id), Some(&s.f.root_key), &json!({"name": "target"}));
    assert_eq!(back.status(), 200);
    s.assert_unharmed();
}

#[test]
fn deeply_nested_json_is_a_400_not_a_stack_overflow() {
    let s = scene();
    let depth = 10_000;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let bodies = [
        nested.clone(),
        format!("{{\"name\": \"x\", \"rate_limit\": {nested}}}"),
        format!("{{\"name\": \"x\", \"scopes\": {nested}}}"),
        format!("{{\"name\": {}", "{\"a\":".repeat(depth / 2)),
    ];
    for (method, path) in body_routes(&s.key_id) {
        for body in &bodies {
            assert_problem(s.raw(method.clone(), &path, body.clone().into_bytes()), 400, "invalid_request");
        }
    }
    s.assert_unharmed();
}

#[test]
fn out_of_range_numbers_and_times_are_400s_naming_the_field() {
    let s = scene();
    let cases = [
        (r#"{"name": "x", "expires_in": 18446744073709551616}"#, "expires_in"),
        (r#"{"name": "x", "expires_in": 1e400}"#, "expires_in"),
        (r#"{"name": "x", "expires_in": 1.5}"#, "expires_in"),
        (r#"{"name": "x", "expires_at": "10000-01-01T00:00:00Z"}"#, "expires_at"),
        (r#"{"name": "x", "expires_at": "+275760-09-13T00:00:00Z"}"#, "expires_at"),
        (r#"{"name": "x", "expires_at": "2099-02-30T00:00:00Z"}"#, "expires_at"),
        (r#"{"name": "x", "rate_limit": {"per_hour": 18446744073709551615}}"#, "rate_limit.per_hour"),
        (r#"{"name": "x", "rate_limit": {"per_day": 4294967296}}"#, "rate_limit.per_day"),
        (r#"{"name": "x", "rate_limit": {"per_day": -9223372036854775808}}"#, "per_day"),
    ];
    for (body, field) in cases {
        let problem =
            assert_problem(s.raw(reqwest::Method::POST, "/v1/keys", body.as_bytes().to_vec()), 400, "invalid_request");
        assert!(
            problem["detail"].as_str().unwrap().contains(field),
            "{body}: the detail should name {field}: {problem}"
        );
    }
    let path = format!("/v1/keys/{}/rotate", s.key_id);
    let problem = assert_problem(
        s.raw(reqwest::Method::POST, &path, br#"{"grace_seconds": 18446744073709551615}"#.to_vec()),
        400,
        "invalid_request",
    );
    assert!(problem["detail"].as_str().unwrap().contains("grace_seconds"), "{problem}");
    s.assert_unharmed();
}

#[test]
fn the_largest_expiry_is_the_end_of_year_9999_and_never_overflows() {
    let f = alice();
    let (key, _) = f.server.create_key(&f.root_key, json!({"name": "forever", "expires_at": "9999-12-31T23:59:59Z"}));
    assert_eq!(key["expires_at"], "9999-12-31T23:59:59Z");
    // expires_in = u64::MAX cannot be represented; it must not wrap into the past or panic.
    let response = f.server.post("/v1/keys", Some(&f.root_key), &json!({"name": "huge", "expires_in": u64::MAX}));
    match response.status().as_u16() {
        201 => {
            let body: Value = response.json().unwrap();
            assert_eq!(
                body["key"]["expires_at"], "9999-12-31T23:59:59Z",
                "a huge expires_in saturates at the last instant"
            );
            assert_eq!(body["key"]["status"], "active");
        }
        _ => {
            let problem = assert_problem(response, 400, "invalid_request");
            assert!(problem["detail"].as_str().unwrap().contains("expires_in"), "{problem}");
        }
    }
    assert!(!f.server.log().contains("panicked"));
}

#[test]
fn control_characters_and_odd_unicode_in_names_are_handled() {
    let s = scene();
    // Text-direction marks too: they would make a name display as something it is not.
    for name in ["a\u{0}b", "line\nbreak", "tab\there", "\u{7f}", "\u{202e}\u{0}", "\u{202e}rtl", "a\u{2066}b"] {
        let problem = assert_problem(
            s.f.server.post("/v1/keys", Some(&s.f.root_key), &json!({"name": name})),
            400,
            "invalid_request",
        );
        assert!(problem["detail"].as_str().unwrap().contains("name"), "{problem}");
    }
    let (key, _) = s.f.server.create_key(&s.f.root_key, json!({"name": "ключ 🔑 مفتاح"}));
    assert_eq!(key["name"], "ключ 🔑 مفتاح");
    let id = key["id"].as_str().unwrap().to_owned();
    assert_eq!(s.f.server.post(&format!("/v1/keys/{id}/revoke"), Some(&s.f.root_key), &json!({})).status(), 200);
    // The new key is revoked but listed; compare against the original keys only.
    let Scene { f, key_id, other_secret, mut before } = s;
    let after = fingerprint(&f);
    before.insert(0, after[0].clone());
    Scene { f, key_id, other_secret, before }.assert_unharmed();
}

#[test]
fn a_huge_authorization_header_is_refused_without_harm() {
    let s = scene();
    for size in [8 * 1024, 64 * 1024] {
        let value = format!("Bearer ibp_{}", "A".repeat(size));
        let request = s.f.server.client.get(s.url("/v1/keys")).header("authorization", value);
        let response = s.f.server.send(request, None);
        assert_problem(response, 401, "invalid_key");
    }
    // Past the server's header buffer: 431, or the connection is dropped while the client is
    // still sending; never a pass and never a crash.
    for size in [256 * 1024, 1024 * 1024] {
        let value = format!("Bearer {}", "A".repeat(size));
        let result = s.f.server.client.get(s.url("/v1/keys")).header("authorization", value).send();
        if let Ok(response) = result {
            assert_eq!(response.status(), 431, "a {size}-byte Authorization header");
        }
    }
    // Too many headers is the same case.
    let mut request = s.f.server.client.get(s.url("/v1/keys"));
    for i in 0..200 {
        request = request.header(format!("x-junk-{i}"), "x");
    }
    if let Ok(response) = request.bearer_auth(&s.f.root_key).send() {
        assert_eq!(response.status(), 431, "a request with 200 headers");
    }
    s.assert_unharmed();
}

#[test]
fn non_utf8_bytes_in_headers_never_authenticate_and_never_crash() {
    let s = scene();
    let cases: [&[u8]; 4] = [b"Bearer \xff\xfe\xfd", b"\xffBearer x", b"Bearer ibp_\xc3\x28", b"Bearer \x80"];
    for bytes in cases {
        let value = HeaderValue::from_bytes(bytes).expect("obs-text is a legal header value");
        let request = s.f.server.client.get(s.url("/v1/keys")).header("authorization", value);
        assert_problem(s.f.server.send(request, None), 401, "invalid_key");
    }
    // Junk in an unrelated header does not get in the way of a good key.
    let value = HeaderValue::from_bytes(b"\xff\xfe junk").unwrap();
    let request =
        s.f.server
            .client
            .get(s.url("/v1/keys"))
            .header("x-junk", value)
            .header("user-agent", HeaderValue::from_bytes(b"\xc0\xaf").unwrap());
    assert_eq!(s.f.server.send(request, Some(&s.f.root_key)).status(), 200);
    // A token with junk after it, or two tokens, is not a valid key.
    for value in [
        format!("Bearer {} extra", s.f.root_key),
        format!("Bearer {},{}", s.f.root_key, s.f.root_key),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
    ] {
        let request = s.f.server.client.get(s.url("/v1/keys")).header("authorization", value.clone());
        assert_problem(s.f.server.send(request, None), 401, "invalid_key");
    }
    s.assert_unharmed();
}

#[test]
fn weird_paths_answer_404_not_found_on_every_key_route() {
    let s = scene();
    let long_id = format!("key_{}", "A".repeat(10_000));
    let long_junk = "a".repeat(5_000);
    let ids = [
        "..%2F..%2Fetc",
        "..%2F..%2Fetc%2Fpasswd",
        "%00",
        "key_0000000000000000%00",
        "%ff%fe",
        "key_%F0%9F%92%A3%F0%9F%92%A3%F0%9F%92%A3%F0%9F%92%A3",
        long_junk.as_str(),
        long_id.as_str(),
        "%25",
        "%",
        "key_000000000000000%",
        "%20key_0000000000000000",
    ];
    for id in ids {
        let show = s.f.server.get(&format!("/v1/keys/{id}"), Some(&s.f.root_key));
        assert_problem(show, 404, "not_found");
        let patch = s.f.server.patch(&format!("/v1/keys/{id}"), Some(&s.f.root_key), &json!({"name": "pwned"}));
        assert_problem(patch, 404, "not_found");
        let revoke = s.f.server.post(&format!("/v1/keys/{id}/revoke"), Some(&s.f.root_key), &json!({}));
        assert_problem(revoke, 404, "not_found");
        let rotate = s.f.server.post(&format!("/v1/keys/{id}/rotate"), Some(&s.f.root_key), &json!({}));
        assert_problem(rotate, 404, "not_found");
    }
    s.assert_unharmed();
}

#[test]
fn junk_query_strings_are_400s_and_never_crash() {
    let s = scene();
    let cursor_junk = format!("?cursor={}", "x".repeat(20_000));
    let queries = [
        "?limit=%ff",
        "?limit=%00",
        "?cursor=%00",
        "?cursor=%ff%fe",
        "?=",
        "?limit",
        "?%zz=1",
        "?limit=1&cursor",
        "?limit[]=1",
        "?cursor=key_0000000000000000&cursor=key_0000000000000001",
        "?limit=1;drop",
        "?limit=%2B1%2B1",
        cursor_junk.as_str(),
    ];
    for query in queries {
        let response = s.f.server.get(&format!("/v1/keys{query}"), Some(&s.f.root_key));
        assert_problem(response, 400, "invalid_request");
    }
    // Empty pairs are no parameters at all.
    assert_eq!(s.f.server.get("/v1/keys?&&&", Some(&s.f.root_key)).status(), 200);
    s.assert_unharmed();
}

#[test]
fn a_secret_in_a_wrongly_typed_field_is_not_echoed_back() {
    let s = scene();
    let secret = s.other_secret.clone();
    let bodies = [
        json!({"name": "x", "expires_in": secret}),
        json!({"name": "x", "expires_at": secret}),
        json!({"name": "x", "rate_limit": secret}),
        json!({"name": "x", "rate_limit": {"per_hour": secret}}),
        json!({"name": "x", "scopes": secret}),
        json!({"name": "x", "scopes": [secret]}),
        json!({"name": [secret]}),
        json!({"name": secret.repeat(3)}),
        json!(secret),
        json!([secret, secret, secret]),
    ];
    for (method, path) in body_routes(&s.key_id) {
        for body in &bodies {
            let response =
                s.f.server
                    .send(s.f.server.client.request(method.clone(), s.url(&path)).json(body), Some(&s.f.root_key));
            assert_eq!(response.status(), 400, "{method} {path} {body}");
            let problem = assert_problem(response, 400, "invalid_request");
            assert!(!problem.to_string().contains(&secret), "{method} {path} echoed the secret: {problem}");
            assert!(!problem.to_string().contains(&secret[4..]), "{method} {path} echoed the secret's body: {problem}");
        }
    }
    // The wrongly typed field is still named, so the caller knows what to fix.
    let problem = assert_problem(
        s.f.server.post("/v1/keys", Some(&s.f.root_key), &json!({"name": "x", "expires_in": secret})),
        400,
        "invalid_request",
    );
    assert!(problem["detail"].as_str().unwrap().contains("expires_in"), "{problem}");
    // Malformed JSON around a secret does not quote it either.
    let raw = format!("{{\"name\": \"x\", \"expires_in\": {secret}}}");
    let problem = assert_problem(s.raw(reqwest::Method::POST, "/v1/keys", raw.into_bytes()), 400, "invalid_request");
    assert!(!problem.to_string().contains(&secret[4..]), "malformed JSON echoed the secret: {problem}");
    s.assert_unharmed();
}

#[test]
fn a_secret_pasted_as_a_field_name_is_not_echoed_back() {
    // The unknown-field error names the field, and here the field is a secret: the detail
    // must redact it (SPEC §3: a secret never appears in error messages). The message part
    // is redacted already; the field path in front of it must be too.
    let s = scene();
    let secret = s.other_secret.clone();
    let mut body = serde_json::Map::new();
    body.insert("name".to_owned(), json!("x"));
    body.insert(secret.clone(), json!(1));
    let body = Value::Object(body);
    let mut nested = serde_json::Map::new();
    nested.insert(secret.clone(), json!(1));
    let nested = json!({"name": "x", "rate_limit": Value::Object(nested)});
    for (method, path) in body_routes(&s.key_id) {
        for body in [&body, &nested] {
            let response =
                s.f.server
                    .send(s.f.server.client.request(method.clone(), s.url(&path)).json(body), Some(&s.f.root_key));
            let problem = assert_problem(response, 400, "invalid_request");
            assert!(
                !problem.to_string().contains(&secret[4..]),
                "{method} {path} echoed a secret used as a field name: {problem}"
            );
        }
    }
    s.assert_unharmed();
}

#[test]
fn a_secret_in_the_query_string_is_not_echoed_back() {
    // A secret pasted into a URL by mistake (as a parameter name or value) must not come
    // back in the 400 that refuses it: SPEC §3, "never appears in … error messages".
    let s = scene();
    let secret = s.other_secret.clone();
    for query in [
        format!("?{secret}"),
        format!("?{secret}=1"),
        format!("?key={secret}"),
        format!("?cursor={secret}"),
        format!("?limit={secret}"),
    ] {
        let response = s.f.server.get(&format!("/v1/keys{query}"), Some(&s.f.root_key));
        let problem = assert_problem(response, 400, "invalid_request");
        assert!(
            !problem.to_string().contains(&secret[4..]),
            "GET /v1/keys{query} echoed the secret in its error: {problem}"
        );
    }
    let response = s.f.server.get(&format!("/v1/auth?scope={secret}"), Some(&s.f.root_key));
    let problem = assert_problem(response, 400, "invalid_request");
    assert!(!problem.to_string().contains(&secret[4..]), "forward-auth echoed the secret: {problem}");
    s.assert_unharmed();
}

#[test]
fn a_secret_in_the_path_is_not_echoed_back() {
    let s = scene();
    let secret = s.other_secret.clone();
    for (path, status) in [
        (format!("/v1/keys/{secret}"), 404),
        (format!("/v1/{secret}"), 404),
        (format!("/v1/keys/{secret}/rotate"), 405),
    ] {
        let response = s.f.server.get(&path, Some(&s.f.root_key));
        assert_eq!(response.status().as_u16(), status, "{path}");
        let text = response.text().unwrap();
        assert!(!text.contains(&secret[4..]), "{path} echoed the secret: {text}");
    }
    s.assert_unharmed();
}
