//! The authorization matrix: who may do what to which key. Users see and change only their
//! own keys (another user's key id answers 404 exactly like a missing one), and each route
//! needs its scope.

use reqwest::blocking::Response;
use serde_json::{Value, json};

use crate::helpers::*;

/// A well-formed key id that no one holds.
const MISSING_ID: &str = "key_0000000000000000";

/// Two users, each with a keys:read + keys:write root key, and one extra key of alice's made
/// through the API.
struct TwoUsers {
    _dir: TestDir,
    server: TestServer,
    alice: String,
    bob: String,
    alice_key: Value,
    alice_key_secret: String,
}

fn alice_and_bob() -> TwoUsers {
    let dir = TestDir::new();
    dir.add_user("alice");
    dir.add_user("bob");
    let alice = dir.issue_key("alice", &["keys:read", "keys:write"]);
    let bob = dir.issue_key("bob", &["keys:read", "keys:write"]);
    let server = dir.start();
    let (alice_key, alice_key_secret) = server
        .create_key(&alice, json!({"name": "alice-prod", "rate_limit": {"per_hour": 1000}, "scopes": ["keys:read"]}));
    TwoUsers { _dir: dir, server, alice, bob, alice_key, alice_key_secret }
}

fn id_of(key: &Value) -> String {
    key["id"].as_str().expect("id").to_owned()
}

/// Status, content type and body of a response, to compare two answers whole.
fn snapshot(response: Response) -> (u16, Option<String>, Value) {
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    (status, content_type, response.json().expect("json body"))
}

/// The parts of a key that nobody but its owner may change.
fn settled(key: &Value) -> Value {
    json!({
        "id": key["id"], "name": key["name"], "start": key["start"], "end": key["end"],
        "created_at": key["created_at"], "expires_at": key["expires_at"], "revoked_at": key["revoked_at"],
        "rate_limit": key["rate_limit"], "scopes": key["scopes"], "status": key["status"],
    })
}

impl TwoUsers {
    fn path(&self, suffix: &str) -> String {
        format!("/v1/keys/{}{suffix}", id_of(&self.alice_key))
    }

    /// Alice's key is exactly as it was made, still works, and alice has her two keys and
    /// no more.
    #[track_caller]
    fn assert_alices_key_untouched(&self) {
        self.assert_alices_key_untouched_among(2);
    }

    #[track_caller]
    fn assert_alices_key_untouched_among(&self, alices_keys: usize) {
        let response = self.server.get(&self.path(""), Some(&self.alice));
        assert_eq!(response.status(), 200);
        let now: Value = response.json().unwrap();
        assert_eq!(settled(&now), settled(&self.alice_key), "alice's key was changed by bob");
        assert_eq!(now["status"], "active");
        assert_eq!(
            self.server.get("/v1/me", Some(&self.alice_key_secret)).status(),
            200,
            "alice's key stopped working"
        );
        let list: Value = self.server.get("/v1/keys", Some(&self.alice)).json().unwrap();
        assert_eq!(list["keys"].as_array().unwrap().len(), alices_keys, "alice gained or lost keys: {list}");
    }

    /// The answer bob gets for alice's key must be the answer for a key that does not exist.
    #[track_caller]
    fn assert_same_as_missing(&self, foreign: Response, missing: Response) {
        let foreign = snapshot(foreign);
        assert_eq!(foreign.0, 404, "{foreign:?}");
        assert_eq!(foreign.1.as_deref(), Some("application/problem+json"));
        assert_eq!(foreign.2["code"], "not_found");
        assert_eq!(foreign, snapshot(missing), "a foreign id must be indistinguishable from a missing one");
    }
}

#[test]
fn another_users_key_id_answers_404_on_get_like_a_missing_one() {
    let t = alice_and_bob();
    let foreign = t.server.get(&t.path(""), Some(&t.bob));
    let missing = t.server.get(&format!("/v1/keys/{MISSING_ID}"), Some(&t.bob));
    t.assert_same_as_missing(foreign, missing);
    t.assert_alices_key_untouched();
}

#[test]
fn another_user_cannot_rename_or_relimit_a_key_and_gets_404_like_a_missing_one() {
    let t = alice_and_bob();
    for body in
        [json!({"name": "pwned"}), json!({"rate_limit": null}), json!({}), json!({"rate_limit": {"per_hour": 1}})]
    {
        let foreign = t.server.patch(&t.path(""), Some(&t.bob), &body);
        let missing = t.server.patch(&format!("/v1/keys/{MISSING_ID}"), Some(&t.bob), &body);
        t.assert_same_as_missing(foreign, missing);
    }
    t.assert_alices_key_untouched();
}

#[test]
fn another_user_cannot_revoke_a_key_and_gets_404_like_a_missing_one() {
    let t = alice_and_bob();
    let foreign = t.server.post(&t.path("/revoke"), Some(&t.bob), &json!({}));
    let missing = t.server.post(&format!("/v1/keys/{MISSING_ID}/revoke"), Some(&t.bob), &json!({}));
    t.assert_same_as_missing(foreign, missing);
    t.assert_alices_key_untouched();
}

#[test]
fn another_user_cannot_rotate_a_key_and_gets_404_like_a_missing_one() {
    let t = alice_and_bob();
    for body in [json!({}), json!({"grace_seconds": 3600})] {
        let foreign = t.server.post(&t.path("/rotate"), Some(&t.bob), &body);
        let missing = t.server.post(&format!("/v1/keys/{MISSING_ID}/rotate"), Some(&t.bob), &body);
        t.assert_same_as_missing(foreign, missing);
    }
    t.assert_alices_key_untouched();
    let bobs: Value = t.server.get("/v1/keys", Some(&t.bob)).json().unwrap();
    assert_eq!(bobs["keys"].as_array().unwrap().len(), 1, "a refused rotation gave bob a key: {bobs}");
}

#[test]
fn another_users_list_never_contains_my_keys() {
    let t = alice_and_bob();
    for i in 0..3 {
        t.server.create_key(&t.alice, json!({"name": format!("alice-{i}")}));
    }
    let (bobs_key, _) = t.server.create_key(&t.bob, json!({"name": "bob-1"}));
    let bob_root_id = {
        let me: Value = t.server.get("/v1/me", Some(&t.bob)).json().unwrap();
        me["key"]["id"].as_str().unwrap().to_owned()
    };
    let list: Value = t.server.get("/v1/keys", Some(&t.bob)).json().unwrap();
    let ids: Vec<String> = list["keys"].as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(ids, [id_of(&bobs_key), bob_root_id.clone()], "bob sees exactly his own keys");
    assert_eq!(list["next_cursor"], Value::Null);
    // Paging one at a time never wanders into alice's keys either.
    let first: Value = t.server.get("/v1/keys?limit=1", Some(&t.bob)).json().unwrap();
    assert_eq!(first["keys"][0]["id"], bobs_key["id"]);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let second: Value = t.server.get(&format!("/v1/keys?limit=1&cursor={cursor}"), Some(&t.bob)).json().unwrap();
    assert_eq!(second["keys"].as_array().unwrap().len(), 1);
    assert_eq!(second["keys"][0]["id"], bob_root_id.as_str());
    assert_eq!(second["next_cursor"], Value::Null);
    // And alice's list has none of bob's.
    let alices: Value = t.server.get("/v1/keys", Some(&t.alice)).json().unwrap();
    let alice_ids: Vec<String> = alices["keys"].as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(alice_ids.len(), 5);
    assert!(!alice_ids.contains(&id_of(&bobs_key)) && !alice_ids.contains(&bob_root_id));
}

#[test]
fn another_users_key_id_is_refused_as_a_cursor_like_a_missing_one() {
    let t = alice_and_bob();
    let foreign = t.server.get(&format!("/v1/keys?cursor={}", id_of(&t.alice_key)), Some(&t.bob));
    let foreign = snapshot(foreign);
    assert_eq!(foreign.0, 400, "{foreign:?}");
    assert_eq!(foreign.2["code"], "invalid_request");
    assert!(foreign.2["detail"].as_str().unwrap().contains("cursor"), "{:?}", foreign.2);
    let missing = snapshot(t.server.get(&format!("/v1/keys?cursor={MISSING_ID}"), Some(&t.bob)));
    assert_eq!(foreign, missing, "a foreign cursor must be indistinguishable from an unknown one");
}

#[test]
fn a_read_only_key_can_list_and_show_but_not_create_change_revoke_or_rotate() {
    let t = alice_and_bob();
    let reader = &t.alice_key_secret; // keys:read only
    assert_eq!(t.server.get("/v1/keys", Some(reader)).status(), 200);
    assert_eq!(t.server.get(&t.path(""), Some(reader)).status(), 200);
    assert_problem(t.server.post("/v1/keys", Some(reader), &json!({"name": "x"})), 403, "insufficient_scope");
    assert_problem(t.server.patch(&t.path(""), Some(reader), &json!({"name": "x"})), 403, "insufficient_scope");
    assert_problem(t.server.post(&t.path("/revoke"), Some(reader), &json!({})), 403, "insufficient_scope");
    assert_problem(t.server.post(&t.path("/rotate"), Some(reader), &json!({})), 403, "insufficient_scope");
    t.assert_alices_key_untouched();
}

#[test]
fn a_write_only_key_can_change_keys_but_not_list_or_show_them() {
    let t = alice_and_bob();
    let (_, writer) = t.server.create_key(&t.alice, json!({"name": "writer", "scopes": ["keys:write"]}));
    assert_problem(t.server.get("/v1/keys", Some(&writer)), 403, "insufficient_scope");
    assert_problem(t.server.get(&t.path(""), Some(&writer)), 403, "insufficient_scope");
    let (made, _) = t.server.create_key(&writer, json!({"name": "made-by-writer"}));
    let response = t.server.patch(&format!("/v1/keys/{}", id_of(&made)), Some(&writer), &json!({"name": "renamed"}));
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().unwrap()["name"], "renamed");
    let response = t.server.post(&format!("/v1/keys/{}/revoke", id_of(&made)), Some(&writer), &json!({}));
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().unwrap()["status"], "revoked");
}

#[test]
fn a_key_with_no_scopes_can_only_see_itself() {
    let t = alice_and_bob();
    let (bare_key, bare) = t.server.create_key(&t.alice, json!({"name": "bare"}));
    let me: Value = t.server.get("/v1/me", Some(&bare)).json().unwrap();
    assert_eq!(me["key"]["id"], bare_key["id"]);
    assert_problem(t.server.get("/v1/keys", Some(&bare)), 403, "insufficient_scope");
    assert_problem(t.server.get(&t.path(""), Some(&bare)), 403, "insufficient_scope");
    assert_problem(t.server.post("/v1/keys", Some(&bare), &json!({"name": "x"})), 403, "insufficient_scope");
    assert_problem(t.server.post(&t.path("/revoke"), Some(&bare), &json!({})), 403, "insufficient_scope");
    t.assert_alices_key_untouched_among(3);
}

#[test]
fn a_foreign_id_with_an_invalid_body_reveals_nothing_either() {
    // Validation failures must not differ between a foreign id and a missing one.
    let t = alice_and_bob();
    let body = json!({"rate_limit": {"per_hour": 0}});
    let foreign = snapshot(t.server.patch(&t.path(""), Some(&t.bob), &body));
    let missing = snapshot(t.server.patch(&format!("/v1/keys/{MISSING_ID}"), Some(&t.bob), &body));
    assert_eq!(foreign, missing);
    let body = json!({"grace_seconds": 604_801});
    let foreign = snapshot(t.server.post(&t.path("/rotate"), Some(&t.bob), &body));
    let missing = snapshot(t.server.post(&format!("/v1/keys/{MISSING_ID}/rotate"), Some(&t.bob), &body));
    assert_eq!(foreign, missing);
    t.assert_alices_key_untouched();
}
