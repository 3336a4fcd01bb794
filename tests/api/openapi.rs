//! The OpenAPI document (`GET /v1/openapi.json`): structurally valid OpenAPI 3.1, the routes of
//! SPEC §6 and no others, and in agreement with the running server both ways: every documented
//! operation is served, and every method the document leaves out of a path answers 405 with an
//! `Allow` header naming exactly the documented ones. (In the code, routes and document are
//! built from one table, `src/http/api/mod.rs`; this test holds the binary to it from outside.)

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use reqwest::blocking::Response;
use serde_json::{Value, json};

use crate::helpers::{TestDir, TestServer};

/// The methods an OpenAPI path item can hold.
const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// SPEC §6, as (path, methods). Forward-auth answers any method: a proxy such as nginx's
/// `auth_request` passes on the method of the request it guards.
/// With HEAD wherever there is GET, as HTTP asks of every server (RFC 9110 §9.1), so a
/// load balancer's `HEAD /v1/health` check works.
const SPEC_ROUTES: &[(&str, &[&str])] = &[
    ("/v1/health", &["get", "head"]),
    ("/v1/openapi.json", &["get", "head"]),
    ("/v1/me", &["get", "head"]),
    ("/v1/keys", &["get", "head", "post"]),
    ("/v1/keys/{id}", &["get", "head", "patch"]),
    ("/v1/keys/{id}/revoke", &["post"]),
    ("/v1/keys/{id}/rotate", &["post"]),
    ("/v1/auth", &METHODS),
];

struct Fixture {
    _dir: TestDir,
    server: TestServer,
    key: String,
}

fn alice() -> Fixture {
    let dir = TestDir::new();
    dir.add_user("alice");
    let key = dir.issue_key("alice", &["keys:read", "keys:write"]);
    let server = dir.start();
    Fixture { _dir: dir, server, key }
}

fn document(server: &TestServer) -> Value {
    let response = server.get("/v1/openapi.json", None);
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().expect("the document is JSON")
}

/// (path, method) → operation, for every operation in the document.
fn operations(doc: &Value) -> BTreeMap<(String, String), Value> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for (method, operation) in item.as_object().expect("a path item is an object") {
            assert!(METHODS.contains(&method.as_str()), "{path}: `{method}` is not an OpenAPI method");
            out.insert((path.clone(), method.clone()), operation.clone());
        }
    }
    out
}

/// Every `$ref` in `value`, with where it was found.
fn refs<'a>(value: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("$ref", Value::String(target)) => out.push((at.clone(), target)),
                    _ => refs(child, format!("{at}/{key}"), out),
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                refs(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_document_is_served_without_a_key_and_is_structurally_valid_openapi_3_1() {
    let f = alice();
    let response = f.server.get("/v1/openapi.json", None);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let doc = document(&f.server);
    let version = doc["openapi"].as_str().expect("openapi is a string");
    assert!(version.starts_with("3.1."), "openapi: {version}");
    assert_eq!(doc["info"]["title"], "iblueprint");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    let mut found = Vec::new();
    refs(&doc, String::new(), &mut found);
    assert!(found.len() > 20, "the document shares its parts through references");
    for (at, target) in found {
        let pointer = target.strip_prefix('#').unwrap_or_else(|| panic!("{at}: {target} is not a local reference"));
        assert!(doc.pointer(pointer).is_some(), "{at}: {target} does not resolve");
    }

    let mut ids = BTreeSet::new();
    for ((path, method), operation) in operations(&doc) {
        let name = format!("{} {path}", method.to_uppercase());
        let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{name} has no operationId"));
        assert!(ids.insert(id.to_owned()), "{name}: operationId {id} is not unique");
        // Path parameters: each `{x}` of the template declared once, required; no others.
        let in_template: BTreeSet<&str> =
            path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
        let params = operation["parameters"].as_array().cloned().unwrap_or_default();
        let declared: BTreeSet<&str> =
            params.iter().filter(|p| p["in"] == "path").map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(declared, in_template, "{name}: path parameters");
        assert!(params.iter().filter(|p| p["in"] == "path").all(|p| p["required"] == true), "{name}");
        let responses = operation["responses"].as_object().unwrap_or_else(|| panic!("{name} has no responses"));
        assert!(responses.keys().any(|status| status.starts_with('2')), "{name} documents no success");
        let public = path == "/v1/health" || path == "/v1/openapi.json";
        if public {
            assert!(operation.get("security").is_none(), "{name} needs no key");
        } else {
            assert_eq!(operation["security"][0].as_object().map(|s| s.contains_key("bearer")), Some(true), "{name}");
            for status in ["401", "403", "429", "500", "503"] {
                assert!(responses.contains_key(status), "{name} does not document {status}");
            }
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"],
        json!({
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "ibp_ + 46 base62 characters",
            "description": "An API key. `keys:read` and `keys:write` are the scopes some operations need."
        })
    );
    for (name, response) in doc["components"]["responses"].as_object().unwrap() {
        if let Some(content) = response.get("content") {
            let types: Vec<&String> = content.as_object().unwrap().keys().collect();
            assert_eq!(types, ["application/problem+json"], "{name}");
        }
    }
    let required = |header: &str| doc["components"]["headers"][header]["required"] == true;
    assert!(required("WWW-Authenticate-Required") && required("Retry-After") && required("X-Iblueprint-Key-Id"));
}

#[test]
fn head_answers_as_get_does_without_the_body() {
    let f = alice();
    for (path, key) in [("/v1/health", None), ("/v1/me", Some(f.key.as_str())), ("/v1/keys", Some(f.key.as_str()))] {
        let get = f.server.get(path, key);
        let head = f.server.send(f.server.client.head(f.server.url(path)), key);
        assert_eq!(head.status(), get.status(), "{path}");
        for header in ["content-type", "content-length", "cache-control"] {
            assert_eq!(head.headers().get(header), get.headers().get(header), "{path}: {header}");
        }
        assert_eq!(head.bytes().expect("body").len(), 0, "{path}: HEAD has no body");
    }
}

#[test]
fn the_document_lists_exactly_the_routes_of_the_spec() {
    let f = alice();
    let documented: BTreeSet<(String, String)> = operations(&document(&f.server)).into_keys().collect();
    let promised: BTreeSet<(String, String)> = SPEC_ROUTES
        .iter()
        .flat_map(|(path, methods)| methods.iter().map(|m| (path.to_string(), m.to_string())))
        .collect();
    assert_eq!(documented, promised);
}

#[test]
fn every_documented_operation_is_served_and_every_other_method_is_refused_with_its_allow_header() {
    let f = alice();
    let doc = document(&f.server);
    let ops = operations(&doc);
    let mut by_path: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (path, method) in ops.keys() {
        by_path.entry(path).or_default().insert(method);
    }
    // A fresh key of alice's for each request, so that a revoke or rotate cannot turn a later
    // request's answer into a 404 or a 409.
    let concrete = |path: &str| {
        if !path.contains("{id}") {
            return path.to_owned();
        }
        let (key, _) = f.server.create_key(&f.key, json!({"name": "probe"}));
        path.replace("{id}", key["id"].as_str().unwrap())
    };
    let send = |method: &str, path: &str| -> Response {
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let request = f.server.client.request(method, f.server.url(path));
        f.server.send(request.header("content-type", "application/json").body("{}"), Some(&f.key))
    };
    for (path, documented) in &by_path {
        for method in METHODS {
            let response = send(method, &concrete(path));
            let status = response.status().as_u16();
            let name = format!("{} {path}", method.to_uppercase());
            if documented.contains(method) {
                assert!(status != 404 && status != 405, "{name} is documented but answers {status}");
                let listed = ops[&(path.to_string(), method.to_string())]["responses"].get(status.to_string());
                assert!(listed.is_some(), "{name} answered {status}, which its documentation does not list");
            } else {
                assert_eq!(status, 405, "{name} is not documented but answers {status}");
                let allow = response.headers()["allow"].to_str().unwrap().to_owned();
                let allowed: BTreeSet<String> = allow.split(',').map(|m| m.trim().to_lowercase()).collect();
                let expected: BTreeSet<String> = documented.iter().map(|m| m.to_string()).collect();
                assert_eq!(allowed, expected, "Allow of {path}");
            }
        }
    }
}

#[test]
fn forward_auth_documents_its_identity_headers_and_sends_them() {
    let f = alice();
    let doc = document(&f.server);
    let passed = &doc["components"]["responses"]["ForwardAuthPassed"]["headers"];
    for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"] {
        let request = f.server.client.request(Method::from_bytes(method.as_bytes()).unwrap(), f.server.url("/v1/auth"));
        let response = f.server.send(request, Some(&f.key));
        assert_eq!(response.status(), 200, "{method}");
        for header in ["X-Iblueprint-Key-Id", "X-Iblueprint-User", "X-Iblueprint-Scopes"] {
            assert!(passed.get(header).is_some(), "{header} is not documented");
            assert!(response.headers().contains_key(header), "{method} /v1/auth lacks {header}");
        }
    }
}

// Found by schemathesis (tests/schemathesis/run.sh).

#[test]
fn a_rate_limit_given_as_an_array_is_refused_rather_than_read_in_field_order() {
    let f = alice();
    let response = f.server.post("/v1/keys", Some(&f.key), &json!({"name": "k", "rate_limit": [null, 5]}));
    assert_eq!(response.status(), 400);
    let problem: Value = response.json().unwrap();
    assert_eq!(problem["code"], "invalid_request");
    assert!(problem["detail"].as_str().unwrap().starts_with("rate_limit: "), "{problem}");
    let (key, _) = f.server.create_key(&f.key, json!({"name": "k"}));
    let path = format!("/v1/keys/{}", key["id"].as_str().unwrap());
    let response = f.server.patch(&path, Some(&f.key), &json!({"rate_limit": [100, null]}));
    assert_eq!(response.status(), 400);
    let unchanged: Value = f.server.get(&path, Some(&f.key)).json().unwrap();
    assert_eq!(unchanged["rate_limit"], key["rate_limit"], "a refused change changes nothing");
}

#[test]
fn forward_auth_checks_the_key_before_the_scopes_it_is_asked_for() {
    let f = alice();
    let response = f.server.get("/v1/auth?scope=", None);
    assert_eq!(response.status(), 401);
    assert_eq!(response.json::<Value>().unwrap()["code"], "missing_key");
    let response = f.server.get("/v1/auth?scope=", Some("ibp_not_a_key"));
    assert_eq!(response.json::<Value>().unwrap()["code"], "invalid_key");
    let response = f.server.get("/v1/auth?scope=", Some(&f.key));
    assert_eq!(response.status(), 400);
    assert_eq!(response.json::<Value>().unwrap()["code"], "invalid_request");
}

#[test]
fn an_optional_body_may_be_absent_but_whitespace_is_not_json() {
    let f = alice();
    for (path, created) in [("revoke", 200), ("rotate", 201)] {
        let (key, _) = f.server.create_key(&f.key, json!({"name": "k"}));
        let url = f.server.url(&format!("/v1/keys/{}/{path}", key["id"].as_str().unwrap()));
        let blank = f.server.client.post(&url).header("content-type", "application/json").body("\n");
        let response = f.server.send(blank, Some(&f.key));
        assert_eq!(response.status(), 400, "{path} with a blank body");
        assert_eq!(response.json::<Value>().unwrap()["code"], "invalid_request");
        assert_eq!(f.server.send(f.server.client.post(&url), Some(&f.key)).status(), created, "{path} without a body");
    }
}

#[test]
fn an_expires_in_past_the_year_9999_is_refused_rather_than_clamped() {
    let f = alice();
    for seconds in [json!(9_223_372_036_854_775_807_i64), json!(9_223_372_036_854_775_808_u64), json!(u64::MAX)] {
        let response = f.server.post("/v1/keys", Some(&f.key), &json!({"name": "k", "expires_in": seconds}));
        assert_eq!(response.status(), 400, "expires_in {seconds}");
        let problem: Value = response.json().unwrap();
        assert!(problem["detail"].as_str().unwrap().starts_with("expires_in: "), "{problem}");
    }
    let (key, _) = f.server.create_key(&f.key, json!({"name": "k", "expires_in": 86_400}));
    assert!(key["expires_at"].is_string());
}
