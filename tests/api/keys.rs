//! Every route of SPEC §6 under `/v1/keys`: create, list, show, patch, revoke, rotate, the
//! scope ceiling, the per-user key limit, and the 404/405 answers around them.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

// ----- private helpers -----

const KEY_FIELDS: [&str; 12] = [
    "created_at",
    "end",
    "expires_at",
    "id",
    "last_used_at",
    "name",
    "rate_limit",
    "request_count",
    "revoked_at",
    "scopes",
    "start",
    "status",
];

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Parses an RFC 3339 UTC time as the API writes it (`2026-01-31T12:00:00Z`).
#[track_caller]
fn unix(value: &Value) -> i64 {
    let text = value.as_str().unwrap_or_else(|| panic!("expected an RFC 3339 string, got {value}"));
    assert!(text.ends_with('Z') && text.len() == 20, "times are RFC 3339 UTC with whole seconds: {text}");
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{text} is not RFC 3339: {e}"))
        .unix_timestamp()
}

#[track_caller]
fn id_of(key: &Value) -> String {
    key["id"].as_str().unwrap_or_else(|| panic!("key without id: {key}")).to_owned()
}

/// A key object has exactly the fields of SPEC §3 and never a secret or a hash.
#[track_caller]
fn assert_key_shape(key: &Value) {
    let object = key.as_object().unwrap_or_else(|| panic!("a key is a JSON object: {key}"));
    let mut fields: Vec<&str> = object.keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, KEY_FIELDS, "key fields: {key}");
    let limit = key["rate_limit"].as_object().unwrap_or_else(|| panic!("rate_limit is an object: {key}"));
    let mut limit_fields: Vec<&str> = limit.keys().map(String::as_str).collect();
    limit_fields.sort_unstable();
    assert_eq!(limit_fields, ["per_day", "per_hour"], "rate_limit fields: {key}");
    let id = id_of(key);
    assert!(id.starts_with("key_") && id.len() == 20, "id is key_ + 16 characters: {id}");
}

#[track_caller]
fn assert_secret_shape(secret: &str) {
    assert_eq!(secret.len(), 50, "a secret is ibp_ + 46 characters: {secret}");
    assert!(secret.starts_with("ibp_"), "a secret starts with ibp_: {secret}");
    assert!(secret[4..].bytes().all(|b| b.is_ascii_alphanumeric()), "a secret is base62 after the prefix: {secret}");
}

#[track_caller]
fn assert_detail_names(body: &Value, field: &str) {
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(field), "the detail should name `{field}`: {detail}");
}

fn cache_control(response: &reqwest::blocking::Response) -> Option<String> {
    response.headers().get("cache-control").map(|v| v.to_str().unwrap_or_default().to_owned())
}

fn list(server: &TestServer, key: &str, query: &str) -> Value {
    let response = server.get(&format!("/v1/keys{query}"), Some(key));
    assert_eq!(response.status(), 200, "list{query} failed");
    response.json().expect("list json")
}

/// Walks every page with `?limit=` and returns the ids in the order the pages gave them.
fn walk_pages(server: &TestServer, key: &str, limit: usize) -> (Vec<String>, Vec<usize>) {
    let mut ids = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            None => format!("?limit={limit}"),
            Some(cursor) => format!("?limit={limit}&cursor={cursor}"),
        };
        let page = list(server, key, &query);
        let keys = page["keys"].as_array().expect("keys array");
        sizes.push(keys.len());
        ids.extend(keys.iter().map(id_of));
        match &page["next_cursor"] {
            Value::Null => return (ids, sizes),
            Value::String(next) => {
                assert_eq!(Some(next), ids.last(), "the cursor is the id of the page's last key");
                cursor = Some(next.clone());
            }
            other => panic!("next_cursor must be a string or null: {other}"),
        }
        assert!(sizes.len() <= 50, "pagination never ends");
    }
}

fn show(server: &TestServer, key: &str, id: &str) -> Value {
    let response = server.get(&format!("/v1/keys/{id}"), Some(key));
    assert_eq!(response.status(), 200, "show {id} failed");
    response.json().expect("key json")
}

fn revoke(server: &TestServer, key: &str, id: &str) -> reqwest::blocking::Response {
    server.send(server.client.post(server.url(&format!("/v1/keys/{id}/revoke"))), Some(key))
}

fn rotate(server: &TestServer, key: &str, id: &str, body: Option<Value>) -> reqwest::blocking::Response {
    let request = server.client.post(server.url(&format!("/v1/keys/{id}/rotate")));
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    server.send(request, Some(key))
}

/// A server where alice's root key holds keys:* and two custom scopes.
fn alice_with_billing() -> Fixture {
    let dir = TestDir::new();
    dir.add_user("alice");
    let root_key = dir.issue_key("alice", &["keys:read", "keys:write", "billing:read", "billing:write"]);
    let server = dir.start();
    Fixture { server, dir, root_key }
}

// ----- POST /v1/keys -----

#[test]
fn creating_a_key_answers_201_with_the_key_and_its_secret_and_no_store() {
    let f = alice();
    let before = unix_now();
    let response = f.server.post("/v1/keys", Some(&f.root_key), &json!({"name": "ci"}));
    let after = unix_now();
    assert_eq!(response.status(), 201);
    assert_eq!(cache_control(&response).as_deref(), Some("no-store"), "a response with a secret is never cached");
    let body: Value = response.json().unwrap();
    let mut top: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    top.sort_unstable();
    assert_eq!(top, ["key", "secret"], "{body}");
    let secret = body["secret"].as_str().unwrap();
    assert_secret_shape(secret);
    let key = &body["key"];
    assert_key_shape(key);
    assert_eq!(key["name"], "ci");
    assert_eq!(key["start"], &secret[..8]);
    assert_eq!(key["end"], &secret[secret.len() - 4..]);
    assert_eq!(key["last_used_at"], Value::Null);
    assert_eq!(key["request_count"], 0);
    assert_eq!(key["expires_at"], Value::Null);
    assert_eq!(key["revoked_at"], Value::Null);
    assert_eq!(key["rate_limit"], json!({"per_hour": null, "per_day": null}));
    assert_eq!(key["scopes"], json!([]));
    assert_eq!(key["status"], "active");
    let created = unix(&key["created_at"]);
    assert!((before..=after).contains(&created), "created_at {created} not in [{before}, {after}]");
    assert!(!key.to_string().contains(secret), "the key object must never carry the secret: {key}");
}

#[test]
fn the_secret_works_as_a_bearer_key_and_is_never_shown_again() {
    let f = alice();
    let (key, secret) = f.server.create_key(&f.root_key, json!({"name": "ci"}));
    let me = f.server.get("/v1/me", Some(&secret));
    assert_eq!(me.status(), 200);
    let me: Value = me.json().unwrap();
    assert_eq!(me["key"]["id"], key["id"]);
    assert_eq!(me["user"]["username"], "alice");
    let shown = f.server.get(&format!("/v1/keys/{}", id_of(&key)), Some(&f.root_key));
    assert_eq!(cache_control(&shown).as_deref(), Some("no-store"));
    let shown = shown.text().unwrap();
    let listed = f.server.get("/v1/keys", Some(&f.root_key)).text().unwrap();
    for text in [&shown, &listed, &me.to_string()] {
        assert!(!text.contains(&secret), "the secret was shown again: {text}");
        assert!(!text.contains("hash"), "a hash must never be shown: {text}");
    }
}

#[test]
fn expires_in_sets_expires_at_that_many_seconds_after_creation() {
    let f = alice();
    let (key, _) = f.server.create_key(&f.root_key, json!({"name": "day", "expires_in": 86_400}));
    // Times are whole seconds: the lifetime counts from the next one, so it is never short.
    let lifetime = unix(&key["expires_at"]) - unix(&key["created_at"]);
    assert!((86_400..=86_401).contains(&lifetime), "{lifetime} s");
    assert_eq!(key["status"], "active");
}

#[test]
fn expires_in_gives_at_least_that_many_seconds_from_the_request() {
    let f = alice();
    // Counted from the second the key was made in, one second could have been 1 ms.
    let sent_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let (key, _) = f.server.create_key(&f.root_key, json!({"name": "brief", "expires_in": 1}));
    let expires_ms = i128::from(unix(&key["expires_at"])) * 1000;
    assert!(expires_ms >= sent_ms + 1000, "asked for 1 s at {sent_ms} ms, got a key that expires at {expires_ms} ms");
}

#[test]
fn expires_at_accepts_rfc3339_with_any_offset_and_answers_in_utc() {
    let f = alice();
    let (key, _) =
        f.server.create_key(&f.root_key, json!({"name": "y2099", "expires_at": "2099-01-31T12:00:00+02:00"}));
    assert_eq!(key["expires_at"], "2099-01-31T10:00:00Z");
    let (key, _) = f.server.create_key(&f.root_key, json!({"name": "utc", "expires_at": "2099-06-01T00:00:00Z"}));
    assert_eq!(key["expires_at"], "2099-06-01T00:00:00Z");
}

#[test]
fn giving_both_expires_at_and_expires_in_is_a_400_naming_both() {
    let f = alice();
    let body = json!({"name": "x", "expires_in": 60, "expires_at": "2099-01-01T00:00:00Z"});
    let problem = assert_problem(f.server.post("/v1/keys", Some(&f.root_key), &body), 400, "invalid_request");
    assert_detail_names(&problem, "expires_at");
    assert_detail_names(&problem, "expires_in");
}

#[test]
fn an_expiry_in_the_past_or_unparseable_or_zero_is_a_400_naming_the_field() {
    let f = alice();
    let cases = [
        (json!({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}), "expires_at"),
        (json!({"name": "x", "expires_at": "tomorrow"}), "expires_at"),
        (json!({"name": "x", "expires_at": "2099-01-01"}), "expires_at"),
        (json!({"name": "x", "expires_in": 0}), "expires_in"),
        (json!({"name": "x", "expires_in": -5}), "expires_in"),
        (json!({"name": "x", "expires_in": "60"}), "expires_in"),
    ];
    for (body, field) in cases {
        let problem = assert_problem(f.server.post("/v1/keys", Some(&f.root_key), &body), 400, "invalid_request");
        assert_detail_names(&problem, field);
    }
    assert_eq!(
        list(&f.server, &f.root_key, "")["keys"].as_array().unwrap().len(),
        1,
        "a refused create stores nothing"
    );
}

#[test]
fn rate_limit_is_stored_as_given_and_scopes_are_sorted_and_deduplicated() {
    let f = alice_with_billing();
    let body = json!({
        "name": "billing",
        "rate_limit": {"per_hour": 100, "per_day": 1000},
        "scopes": ["keys:read", "billing:write", "billing:read", "keys:read"],
    });
    let (key, _) = f.server.create_key(&f.root_key, body);
    assert_eq!(key["rate_limit"], json!({"per_hour": 100, "per_day": 1000}));
    assert_eq!(key["scopes"], json!(["billing:read", "billing:write", "keys:read"]));
    let shown = show(&f.server, &f.root_key, &id_of(&key));
    assert_eq!(shown["rate_limit"], key["rate_limit"], "the stored limit is the one given");
    assert_eq!(shown["scopes"], key["scopes"]);
    let (day_only, _) = f.server.create_key(&f.root_key, json!({"name": "d", "rate_limit": {"per_day": 5}}));
    assert_eq!(day_only["rate_limit"], json!({"per_hour": null, "per_day": 5}));
    let (unlimited, _) = f.server.create_key(&f.root_key, json!({"name": "u", "rate_limit": null}));
    assert_eq!(unlimited["rate_limit"], json!({"per_hour": null, "per_day": null}));
}

#[test]
fn the_name_is_trimmed_and_may_be_100_characters_but_not_101() {
    let f = alice();
    let (key, _) = f.server.create_key(&f.root_key, json!({"name": "  prod  "}));
    assert_eq!(key["name"], "prod");
    let hundred = "é".repeat(100);
    let (key, _) = f.server.create_key(&f.root_key, json!({"name": hundred}));
    assert_eq!(key["name"], hundred.as_str(), "100 characters (200 bytes) is within the limit");
    let problem = assert_problem(
        f.server.post("/v1/keys", Some(&f.root_key), &json!({"name": "a".repeat(101)})),
        400,
        "invalid_request",
    );
    assert_detail_names(&problem, "name");
}

#[test]
fn a_missing_empty_or_control_character_name_is_a_400_naming_name() {
    let f = alice();
    for body in [json!({}), json!({"name": ""}), json!({"name": "   "}), json!({"name": "a\nb"}), json!({"name": null})]
    {
        let problem = assert_problem(f.server.post("/v1/keys", Some(&f.root_key), &body), 400, "invalid_request");
        assert_detail_names(&problem, "name");
    }
}

#[test]
fn an_unknown_field_is_a_400_naming_the_field() {
    let f = alice();
    let problem = assert_problem(
        f.server.post("/v1/keys", Some(&f.root_key), &json!({"name": "x", "nmae": "y"})),
        400,
        "invalid_request",
    );
    assert_detail_names(&problem, "nmae");
    let body = json!({"name": "x", "rate_limit": {"per_hour": 1, "per_minute": 5}});
    let problem = assert_problem(f.server.post("/v1/keys", Some(&f.root_key), &body), 400, "invalid_request");
    assert_detail_names(&problem, "per_minute");
}

#[test]
fn invalid_limits_and_scopes_are_400s_naming_the_field() {
    let f = alice();
    let too_many: Vec<String> = (0..33).map(|i| format!("s{i}")).collect();
    let cases = [
        (json!({"name": "x", "rate_limit": {"per_hour": 0}}), "rate_limit.per_hour"),
        (json!({"name": "x", "rate_limit": {"per_day": 1_000_000_001u64}}), "rate_limit.per_day"),
        (json!({"name": "x", "rate_limit": {"per_hour": -1}}), "per_hour"),
        (json!({"name": "x", "rate_limit": 10}), "rate_limit"),
        (json!({"name": "x", "scopes": ["Not A Scope"]}), "scopes"),
        (json!({"name": "x", "scopes": ["a".repeat(65)]}), "scopes"),
        (json!({"name": "x", "scopes": too_many}), "scopes"),
        (json!({"name": "x", "scopes": "keys:read"}), "scopes"),
    ];
    for (body, field) in cases {
        let problem = assert_problem(f.server.post("/v1/keys", Some(&f.root_key), &body), 400, "invalid_request");
        assert_detail_names(&problem, field);
    }
}

// ----- GET /v1/keys -----

#[test]
fn listing_gives_the_callers_keys_newest_first_with_no_next_cursor() {
    let f = alice();
    let root_id = id_of(&list(&f.server, &f.root_key, "")["keys"][0]);
    let names = ["first", "second", "third"];
    let created: Vec<String> =
        names.iter().map(|name| id_of(&f.server.create_key(&f.root_key, json!({"name": name})).0)).collect();
    let page = list(&f.server, &f.root_key, "");
    let mut top: Vec<&str> = page.as_object().unwrap().keys().map(String::as_str).collect();
    top.sort_unstable();
    assert_eq!(top, ["keys", "next_cursor"]);
    let ids: Vec<String> = page["keys"].as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(ids, [created[2].clone(), created[1].clone(), created[0].clone(), root_id]);
    assert_eq!(page["next_cursor"], Value::Null);
    for key in page["keys"].as_array().unwrap() {
        assert_key_shape(key);
    }
}

#[test]
fn paging_with_limit_2_visits_every_key_exactly_once_newest_first() {
    let f = alice();
    let root_id = id_of(&list(&f.server, &f.root_key, "")["keys"][0]);
    let mut newest_first: Vec<String> =
        (0..4).map(|i| id_of(&f.server.create_key(&f.root_key, json!({"name": format!("k{i}")})).0)).collect();
    newest_first.reverse();
    newest_first.push(root_id);
    // Five keys: pages of 2, 2, 1; the last has no next cursor.
    let (ids, sizes) = walk_pages(&f.server, &f.root_key, 2);
    assert_eq!(ids, newest_first);
    assert_eq!(sizes, [2, 2, 1]);
    // Six keys: the last page is full and still says there is nothing after it.
    let (sixth, _) = f.server.create_key(&f.root_key, json!({"name": "k4"}));
    newest_first.insert(0, id_of(&sixth));
    let (ids, sizes) = walk_pages(&f.server, &f.root_key, 2);
    assert_eq!(ids, newest_first);
    assert_eq!(sizes, [2, 2, 2]);
    let (ids, sizes) = walk_pages(&f.server, &f.root_key, 200);
    assert_eq!(ids, newest_first);
    assert_eq!(sizes, [6]);
}

#[test]
fn revoked_keys_stay_in_the_list_in_their_place() {
    let f = alice();
    let (a, _) = f.server.create_key(&f.root_key, json!({"name": "a"}));
    let (b, _) = f.server.create_key(&f.root_key, json!({"name": "b"}));
    assert_eq!(revoke(&f.server, &f.root_key, &id_of(&a)).status(), 200);
    let page = list(&f.server, &f.root_key, "");
    let keys = page["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[0]["id"], b["id"]);
    assert_eq!(keys[1]["id"], a["id"]);
    assert_eq!(keys[1]["status"], "revoked");
}

#[test]
fn a_limit_outside_1_to_200_or_not_a_whole_number_is_a_400_naming_limit() {
    let f = alice();
    for query in
        ["?limit=0", "?limit=201", "?limit=abc", "?limit=-1", "?limit=1.5", "?limit=", "?limit=99999999999999999999999"]
    {
        let problem =
            assert_problem(f.server.get(&format!("/v1/keys{query}"), Some(&f.root_key)), 400, "invalid_request");
        assert_detail_names(&problem, "limit");
    }
}

#[test]
fn limit_1_and_limit_200_are_accepted() {
    let f = alice();
    f.server.create_key(&f.root_key, json!({"name": "a"}));
    let page = list(&f.server, &f.root_key, "?limit=200");
    assert_eq!(page["keys"].as_array().unwrap().len(), 2);
    assert_eq!(page["next_cursor"], Value::Null);
    let page = list(&f.server, &f.root_key, "?limit=1");
    assert_eq!(page["keys"].as_array().unwrap().len(), 1);
    assert_eq!(page["next_cursor"], page["keys"][0]["id"]);
}

#[test]
fn a_cursor_that_did_not_come_from_a_page_is_a_400_naming_cursor() {
    let f = alice();
    for cursor in ["garbage", "key_0000000000000000", "key_", "", "%00"] {
        let response = f.server.get(&format!("/v1/keys?cursor={cursor}"), Some(&f.root_key));
        let problem = assert_problem(response, 400, "invalid_request");
        assert_detail_names(&problem, "cursor");
    }
}

#[test]
fn an_unknown_or_repeated_query_parameter_is_a_400() {
    let f = alice();
    let problem = assert_problem(f.server.get("/v1/keys?limt=2", Some(&f.root_key)), 400, "invalid_request");
    assert_detail_names(&problem, "limt");
    let problem = assert_problem(f.server.get("/v1/keys?limit=1&limit=2", Some(&f.root_key)), 400, "invalid_request");
    assert_detail_names(&problem, "limit");
}

// ----- GET /v1/keys/{id} -----

#[test]
fn showing_a_key_gives_the_same_object_as_create_and_list() {
    let f = alice();
    let (key, _) = f.server.create_key(&f.root_key, json!({"name": "shown", "expires_in": 3600}));
    let shown = show(&f.server, &f.root_key, &id_of(&key));
    assert_key_shape(&shown);
    assert_eq!(shown, key);
    assert_eq!(list(&f.server, &f.root_key, "")["keys"][0], key);
}

#[test]
fn an_unknown_or_malformed_key_id_answers_404_not_found() {
    let f = alice();
    for id in
        ["key_0000000000000000", "key_zzzzzzzzzzzzzzzz", "nope", "key_", "usr_0000000000000000", "KEY_0000000000000000"]
    {
        assert_problem(f.server.get(&format!("/v1/keys/{id}"), Some(&f.root_key)), 404, "not_found");
    }
}

// ----- PATCH /v1/keys/{id} -----

#[test]
fn patching_the_name_renames_the_key_and_keeps_everything_else() {
    let f = alice();
    let (key, secret) =
        f.server.create_key(&f.root_key, json!({"name": "old", "rate_limit": {"per_hour": 5}, "expires_in": 600}));
    let id = id_of(&key);
    let response = f.server.patch(&format!("/v1/keys/{id}"), Some(&f.root_key), &json!({"name": "  new  "}));
    assert_eq!(response.status(), 200);
    let patched: Value = response.json().unwrap();
    assert_key_shape(&patched);
    let mut expected = key.clone();
    expected["name"] = json!("new");
    assert_eq!(patched, expected);
    assert_eq!(show(&f.server, &f.root_key, &id), expected, "the rename is stored");
    assert_eq!(f.server.get("/v1/me", Some(&secret)).status(), 200, "renaming does not touch the secret");
}

#[test]
fn patching_rate_limit_replaces_the_whole_limit() {
    let f = alice();
    let (key, _) = f.server.create_key(&f.root_key, json!({"name": "k", "rate_limit": {"per_hour": 5, "per_day": 50}}));
    let id = id_of(&key);
    let response =
        f.server.patch(&format!("/v1/keys/{id}"), Some(&f.root_key), &json!({"rate_limit": {"per_hour": 10}}));
    assert_eq!(response.status(), 200);
    let patched: Value = response.json().unwrap();
    assert_eq!(patched["rate_limit"], json!({"per_hour": 10, "per_day": null}), "per_day left out means unlimited");
    assert_eq!(patched["name"], "k");
    assert_eq!(show(&f.server, &f.root_key, &id)["rate_limit"], json!({"per_hour": 10, "per_day": null}));
}

#[test]
fn patching_rate_limit_to_null_or_an_empty_object_makes_the_key_unlimited() {
    let f = alice();
    for body in [json!({"rate_limit": null}), json!({"rate_limit": {}})] {
        let (key, _) =
            f.server.create_key(&f.root_key, json!({"name": "k", "rate_limit": {"per_hour": 5, "per_day": 50}}));
        let id = id_of(&key);
        let response = f.server.patch(&format!("/v1/keys/{id}"), Some(&f.root_key), &body);
        assert_eq!(response.status(), 200, "{body}");
        assert_eq!(
            response.json::<Value>().unwrap()["rate_limit"],
            json!({"per_hour": null, "per_day": null}),
            "{body}"
        );
        assert_eq!(show(&f.server, &f.root_key, &id)["rate_limit"], json!({"per_hour": null, "per_day": null}));
    }
}

#[test]
fn an_invalid_patch_is_a_400_naming_the_field_and_changes_nothing() {
    let f = alice();
    let (key, _) = f.server.create_key(&f.root_key, json!({"name": "k", "rate_limit": {"per_hour": 5}}));
    let id = id_of(&key);
    let cases = [
        (json!({"rate_limit": {"per_hour": 0}}), "rate_limit.per_hour"),
        (json!({"rate_limit": {"per_day": 0}}), "rate_limit.per_day"),
        (json!({"name": "a".repeat(101)}), "name"),
        (json!({"name": ""}), "name"),
        (json!({"name": "renamed", "rate_limit": {"per_hour": 0}}), "rate_limit.per_hour"),
        // Scopes and expiry are fixed at creation; PATCH does not know them.
        (json!({"scopes": ["keys:read"]}), "scopes"),
        (json!({"expires_in": 60}), "expires_in"),
        (json!({"nmae": "x"}), "nmae"),
    ];
    for (body, field) in cases {
        let response = f.server.patch(&format!("/v1/keys/{id}"), Some(&f.root_key), &body);
        let problem = assert_problem(response, 400, "invalid_request");
        assert_detail_names(&problem, field);
    }
    assert_eq!(show(&f.server, &f.root_key, &id), key, "a refused patch changes nothing");
}

#[test]
fn an_empty_patch_changes_nothing_and_answers_the_key() {
    let f = alice();
    let (key, _) = f.server.create_key(&f.root_key, json!({"name": "k", "rate_limit": {"per_day": 7}}));
    let id = id_of(&key);
    let response = f.server.patch(&format!("/v1/keys/{id}"), Some(&f.root_key), &json!({}));
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().unwrap(), key);
    assert_eq!(show(&f.server, &f.root_key, &id), key);
}

#[test]
fn patching_an_unknown_key_id_answers_404_not_found() {
    let f = alice();
    let response = f.server.patch("/v1/keys/key_0000000000000000", Some(&f.root_key), &json!({"name": "x"}));
    assert_problem(response, 404, "not_found");
}

// ----- POST /v1/keys/{id}/revoke -----

#[test]
fn revoking_answers_the_key_with_revoked_at_now_and_status_revoked() {
    let f = alice();
    let (key, _) = f.server.create_key(&f.root_key, json!({"name": "doomed"}));
    let id = id_of(&key);
    let before = unix_now();
    let response = revoke(&f.server, &f.root_key, &id);
    let after = unix_now();
    assert_eq!(response.status(), 200);
    let revoked: Value = response.json().unwrap();
    assert_key_shape(&revoked);
    assert_eq!(revoked["id"], key["id"]);
    assert_eq!(revoked["status"], "revoked");
    let at = unix(&revoked["revoked_at"]);
    assert!((before..=after).contains(&at), "revoked_at {at} not in [{before}, {after}]");
    assert_eq!(show(&f.server, &f.root_key, &id), revoked, "the revocation is stored");
}

#[test]
fn revoking_twice_answers_200_and_keeps_the_first_revoked_at() {
    let f = alice();
    let (key, _) = f.server.create_key(&f.root_key, json!({"name": "doomed"}));
    let id = id_of(&key);
    let first: Value = revoke(&f.server, &f.root_key, &id).json().unwrap();
    let first_at = unix(&first["revoked_at"]);
    // Let the clock pass the first revocation's second, so a second stamp would differ.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while unix_now() <= first_at {
        assert!(std::time::Instant::now() < deadline, "clock did not advance");
        std::thread::yield_now();
    }
    let response = revoke(&f.server, &f.root_key, &id);
    assert_eq!(response.status(), 200, "revoke is idempotent");
    let second: Value = response.json().unwrap();
    assert_eq!(second["revoked_at"], first["revoked_at"], "a second revoke keeps the original time");
    assert_eq!(second["status"], "revoked");
}

#[test]
fn a_revoked_key_gets_403_key_revoked_on_its_next_request() {
    let f = alice();
    let (key, secret) = f.server.create_key(&f.root_key, json!({"name": "doomed", "scopes": ["keys:read"]}));
    assert_eq!(f.server.get("/v1/keys", Some(&secret)).status(), 200);
    assert_eq!(revoke(&f.server, &f.root_key, &id_of(&key)).status(), 200);
    assert_problem(f.server.get("/v1/keys", Some(&secret)), 403, "key_revoked");
    assert_problem(f.server.get("/v1/me", Some(&secret)), 403, "key_revoked");
}

#[test]
fn revoke_accepts_an_empty_object_but_not_unknown_fields() {
    let f = alice();
    let (key, _) = f.server.create_key(&f.root_key, json!({"name": "a"}));
    let id = id_of(&key);
    let problem = assert_problem(
        f.server.post(&format!("/v1/keys/{id}/revoke"), Some(&f.root_key), &json!({"reason": "x"})),
        400,
        "invalid_request",
    );
    assert_detail_names(&problem, "reason");
    assert_eq!(show(&f.server, &f.root_key, &id)["status"], "active", "a refused revoke revokes nothing");
    let response = f.server.post(&format!("/v1/keys/{id}/revoke"), Some(&f.root_key), &json!({}));
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().unwrap()["status"], "revoked");
}

#[test]
fn revoking_an_unknown_key_id_answers_404_not_found() {
    let f = alice();
    assert_problem(revoke(&f.server, &f.root_key, "key_0000000000000000"), 404, "not_found");
    assert_problem(revoke(&f.server, &f.root_key, "nope"), 404, "not_found");
}

// ----- POST /v1/keys/{id}/rotate -----

#[test]
fn rotating_answers_201_with_a_new_key_of_the_same_settings_and_the_previous_key() {
    let f = alice_with_billing();
    let (old, old_secret) = f.server.create_key(
        &f.root_key,
        json!({"name": "svc", "scopes": ["billing:read", "keys:read"], "rate_limit": {"per_hour": 7, "per_day": 70}, "expires_in": 86_400}),
    );
    let before = unix_now();
    let response = rotate(&f.server, &f.root_key, &id_of(&old), None);
    let after = unix_now();
    assert_eq!(response.status(), 201);
    assert_eq!(cache_control(&response).as_deref(), Some("no-store"), "a response with a secret is never cached");
    let body: Value = response.json().unwrap();
    let mut top: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    top.sort_unstable();
    assert_eq!(top, ["key", "previous", "secret"], "{body}");
    let secret = body["secret"].as_str().unwrap();
    assert_secret_shape(secret);
    assert_ne!(secret, old_secret);
    let new = &body["key"];
    let previous = &body["previous"];
    assert_key_shape(new);
    assert_key_shape(previous);
    assert_ne!(new["id"], old["id"]);
    for field in ["name", "scopes", "rate_limit", "expires_at"] {
        assert_eq!(new[field], old[field], "the new key keeps the old key's {field}");
    }
    assert_eq!(new["start"], &secret[..8]);
    assert_eq!(new["end"], &secret[secret.len() - 4..]);
    assert_eq!(new["status"], "active");
    assert_eq!(new["revoked_at"], Value::Null);
    assert_eq!(new["request_count"], 0);
    assert!(!body["key"].to_string().contains(secret) && !previous.to_string().contains(secret));
    assert_eq!(previous["id"], old["id"]);
    assert_eq!(previous["status"], "revoked", "with no grace the old key is revoked at once");
    let at = unix(&previous["revoked_at"]);
    assert!((before..=after).contains(&at), "revoked_at {at} not in [{before}, {after}]");
    assert_problem(f.server.get("/v1/me", Some(&old_secret)), 403, "key_revoked");
    let me: Value = f.server.get("/v1/me", Some(secret)).json().unwrap();
    assert_eq!(me["key"]["id"], new["id"], "the new secret works");
    let ids: Vec<String> = list(&f.server, &f.root_key, "")["keys"].as_array().unwrap().iter().map(id_of).collect();
    assert_eq!(ids[..2], [id_of(new), id_of(&old)], "the new key is the newest");
}

#[test]
fn rotating_with_a_grace_period_keeps_the_old_key_working_until_then() {
    let f = alice();
    let (old, old_secret) = f.server.create_key(&f.root_key, json!({"name": "svc"}));
    let before = unix_now();
    let response = rotate(&f.server, &f.root_key, &id_of(&old), Some(json!({"grace_seconds": 3600})));
    let after = unix_now();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().unwrap();
    let previous = &body["previous"];
    assert_eq!(previous["status"], "rotating");
    let at = unix(&previous["revoked_at"]);
    // Whole seconds, counted from the next one: never shorter than asked.
    assert!((before + 3600..=after + 3601).contains(&at), "revoked_at {at} should be now + 3600 ({before}..{after})");
    assert_eq!(f.server.get("/v1/me", Some(&old_secret)).status(), 200, "the old key works during the grace period");
    assert_eq!(
        f.server.get("/v1/me", Some(body["secret"].as_str().unwrap())).status(),
        200,
        "the new key works at once"
    );
    assert_eq!(show(&f.server, &f.root_key, &id_of(&old))["status"], "rotating");
}

#[test]
fn a_grace_period_never_outlives_the_old_keys_expiry() {
    let f = alice();
    let (old, _) = f.server.create_key(&f.root_key, json!({"name": "svc", "expires_in": 600}));
    let response = rotate(&f.server, &f.root_key, &id_of(&old), Some(json!({"grace_seconds": 3600})));
    assert_eq!(response.status(), 201);
    let body: Value = response.json().unwrap();
    assert_eq!(body["previous"]["revoked_at"], old["expires_at"], "the grace is cut at the old key's expiry");
    assert_eq!(body["key"]["expires_at"], old["expires_at"]);
}

#[test]
fn a_grace_period_of_7_days_is_allowed_and_one_second_more_is_a_400_naming_grace_seconds() {
    let f = alice();
    let (old, old_secret) = f.server.create_key(&f.root_key, json!({"name": "svc"}));
    let id = id_of(&old);
    for body in [json!({"grace_seconds": 604_801}), json!({"grace_seconds": -1}), json!({"grace_seconds": "60"})] {
        let problem = assert_problem(rotate(&f.server, &f.root_key, &id, Some(body)), 400, "invalid_request");
        assert_detail_names(&problem, "grace_seconds");
    }
    assert_eq!(show(&f.server, &f.root_key, &id), old, "a refused rotation changes nothing");
    assert_eq!(list(&f.server, &f.root_key, "")["keys"].as_array().unwrap().len(), 2, "and creates nothing");
    let before = unix_now();
    let response = rotate(&f.server, &f.root_key, &id, Some(json!({"grace_seconds": 604_800})));
    let after = unix_now();
    assert_eq!(response.status(), 201);
    let previous = &response.json::<Value>().unwrap()["previous"];
    let at = unix(&previous["revoked_at"]);
    assert!((before + 604_800..=after + 604_801).contains(&at), "revoked_at {at} should be now + 7 days");
    assert_eq!(f.server.get("/v1/me", Some(&old_secret)).status(), 200);
}

#[test]
fn rotating_a_revoked_key_is_409_conflict() {
    let f = alice();
    let (key, _) = f.server.create_key(&f.root_key, json!({"name": "gone"}));
    let id = id_of(&key);
    assert_eq!(revoke(&f.server, &f.root_key, &id).status(), 200);
    assert_problem(rotate(&f.server, &f.root_key, &id, None), 409, "conflict");
    assert_eq!(list(&f.server, &f.root_key, "")["keys"].as_array().unwrap().len(), 2, "no successor was made");
}

#[test]
fn rotating_a_key_that_is_already_rotating_is_409_conflict() {
    let f = alice();
    let (key, _) = f.server.create_key(&f.root_key, json!({"name": "svc"}));
    let id = id_of(&key);
    assert_eq!(rotate(&f.server, &f.root_key, &id, Some(json!({"grace_seconds": 60}))).status(), 201);
    assert_problem(rotate(&f.server, &f.root_key, &id, None), 409, "conflict");
    assert_eq!(list(&f.server, &f.root_key, "")["keys"].as_array().unwrap().len(), 3, "one successor only");
}

#[test]
fn revoking_a_rotating_key_cuts_it_off_at_once() {
    let f = alice();
    let (old, old_secret) = f.server.create_key(&f.root_key, json!({"name": "svc"}));
    let id = id_of(&old);
    let rotated: Value = rotate(&f.server, &f.root_key, &id, Some(json!({"grace_seconds": 3600}))).json().unwrap();
    assert_eq!(f.server.get("/v1/me", Some(&old_secret)).status(), 200);
    let before = unix_now();
    let response = revoke(&f.server, &f.root_key, &id);
    let after = unix_now();
    assert_eq!(response.status(), 200);
    let revoked: Value = response.json().unwrap();
    assert_eq!(revoked["status"], "revoked");
    let at = unix(&revoked["revoked_at"]);
    assert!((before..=after).contains(&at), "revoking a rotating key moves revoked_at to now, got {at}");
    assert_problem(f.server.get("/v1/me", Some(&old_secret)), 403, "key_revoked");
    assert_eq!(
        f.server.get("/v1/me", Some(rotated["secret"].as_str().unwrap())).status(),
        200,
        "the successor is untouched"
    );
}

#[test]
fn rotating_an_unknown_key_id_answers_404_not_found() {
    let f = alice();
    assert_problem(rotate(&f.server, &f.root_key, "key_0000000000000000", None), 404, "not_found");
    assert_problem(rotate(&f.server, &f.root_key, "nope", Some(json!({"grace_seconds": 5}))), 404, "not_found");
}

// ----- the scope ceiling -----

#[test]
fn a_key_cannot_create_a_key_with_a_scope_it_lacks() {
    let f = alice();
    let (_, writer) = f.server.create_key(&f.root_key, json!({"name": "writer", "scopes": ["keys:write"]}));
    for scopes in [json!(["billing:x"]), json!(["keys:read"]), json!(["keys:write", "billing:x"])] {
        let response = f.server.post("/v1/keys", Some(&writer), &json!({"name": "escalated", "scopes": scopes}));
        let problem = assert_problem(response, 400, "invalid_request");
        assert_detail_names(&problem, "scopes");
    }
    let body = assert_problem(
        f.server.post("/v1/keys", Some(&writer), &json!({"name": "escalated", "scopes": ["billing:x"]})),
        400,
        "invalid_request",
    );
    assert_detail_names(&body, "billing:x");
    assert_eq!(list(&f.server, &f.root_key, "")["keys"].as_array().unwrap().len(), 2, "no escalated key was stored");
}

#[test]
fn a_key_can_create_a_key_with_a_subset_of_its_scopes() {
    let f = alice_with_billing();
    let (_, writer) =
        f.server.create_key(&f.root_key, json!({"name": "writer", "scopes": ["keys:write", "billing:read"]}));
    let (key, _) = f.server.create_key(&writer, json!({"name": "child", "scopes": ["billing:read"]}));
    assert_eq!(key["scopes"], json!(["billing:read"]));
    let (key, _) = f.server.create_key(&writer, json!({"name": "same", "scopes": ["billing:read", "keys:write"]}));
    assert_eq!(key["scopes"], json!(["billing:read", "keys:write"]));
    let (key, _) = f.server.create_key(&writer, json!({"name": "none"}));
    assert_eq!(key["scopes"], json!([]));
}

#[test]
fn rotating_cannot_hand_out_a_key_with_scopes_the_rotating_key_lacks() {
    // SPEC §3: "A key made through the API can never hold a scope that the creating key
    // lacks." Rotation makes a new key and hands its secret to the caller, so a keys:write
    // key rotating a broader key must be refused like the equivalent create (400 naming
    // scopes), and the broader key must be left as it was.
    let f = alice_with_billing();
    let (_, writer) = f.server.create_key(&f.root_key, json!({"name": "writer", "scopes": ["keys:write"]}));
    let (broad, broad_secret) =
        f.server.create_key(&f.root_key, json!({"name": "broad", "scopes": ["billing:write", "keys:read"]}));
    let response = rotate(&f.server, &writer, &id_of(&broad), None);
    let status = response.status().as_u16();
    let text = response.text().unwrap_or_default();
    assert_eq!(
        status, 400,
        "a keys:write-only key rotated a key holding billing:write and keys:read and got its new secret \
         (scope escalation through rotate); expected 400 invalid_request naming scopes. Body: {text}"
    );
    let problem: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(problem["code"], "invalid_request");
    assert_detail_names(&problem, "scopes");
    assert_eq!(f.server.get("/v1/me", Some(&broad_secret)).status(), 200, "the broader key still works");
    assert_eq!(show(&f.server, &f.root_key, &id_of(&broad))["status"], "active");
}

// ----- the per-user key limit -----

fn alice_with_limit_3() -> Fixture {
    let dir = TestDir::new();
    dir.add_user("alice");
    let root_key = dir.issue_key("alice", &["keys:read", "keys:write"]);
    let server = dir.start_with(&[], &[("IBLUEPRINT_MAX_KEYS_PER_USER", "3")]);
    Fixture { server, dir, root_key }
}

#[test]
fn the_key_limit_counts_the_root_key_and_then_answers_409_key_limit_reached() {
    let f = alice_with_limit_3();
    f.server.create_key(&f.root_key, json!({"name": "two"}));
    f.server.create_key(&f.root_key, json!({"name": "three"}));
    let problem = assert_problem(
        f.server.post("/v1/keys", Some(&f.root_key), &json!({"name": "four"})),
        409,
        "key_limit_reached",
    );
    assert_detail_names(&problem, "3");
    let page = list(&f.server, &f.root_key, "");
    let names: Vec<&str> = page["keys"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["three", "two", "test"], "the refused key was not stored");
}

#[test]
fn revoking_a_key_frees_a_slot_under_the_key_limit() {
    let f = alice_with_limit_3();
    let (two, _) = f.server.create_key(&f.root_key, json!({"name": "two"}));
    f.server.create_key(&f.root_key, json!({"name": "three"}));
    assert_problem(f.server.post("/v1/keys", Some(&f.root_key), &json!({"name": "four"})), 409, "key_limit_reached");
    assert_eq!(revoke(&f.server, &f.root_key, &id_of(&two)).status(), 200);
    let (four, _) = f.server.create_key(&f.root_key, json!({"name": "four"}));
    assert_eq!(four["name"], "four");
    assert_problem(f.server.post("/v1/keys", Some(&f.root_key), &json!({"name": "five"})), 409, "key_limit_reached");
}

#[test]
fn rotating_at_the_key_limit_is_allowed_because_the_successor_replaces_the_old_key() {
    let f = alice_with_limit_3();
    let (two, _) = f.server.create_key(&f.root_key, json!({"name": "two"}));
    f.server.create_key(&f.root_key, json!({"name": "three"}));
    let response = rotate(&f.server, &f.root_key, &id_of(&two), None);
    assert_eq!(response.status(), 201, "a rotation does not add a key");
    assert_problem(f.server.post("/v1/keys", Some(&f.root_key), &json!({"name": "four"})), 409, "key_limit_reached");
}

// ----- routes -----

#[test]
fn an_unknown_route_under_v1_answers_a_404_not_found_problem() {
    let f = alice();
    // (`/` is the settings page's front door now: it redirects to sign-in; see `pages`.)
    for path in ["/v1/nope", "/v1/key", "/v1/keys/key_0000000000000000/delete", "/v1/keys/", "/v2/keys", "/v1"] {
        let response = f.server.get(path, Some(&f.root_key));
        assert_problem(response, 404, "not_found");
    }
    assert_problem(f.server.get("/v1/nope", None), 404, "not_found");
}

#[test]
fn a_wrong_method_on_a_known_route_answers_a_405_problem() {
    let f = alice();
    let (key, _) = f.server.create_key(&f.root_key, json!({"name": "k"}));
    let id = id_of(&key);
    let cases = [
        (Method::DELETE, "/v1/keys".to_owned()),
        (Method::PUT, "/v1/keys".to_owned()),
        (Method::DELETE, format!("/v1/keys/{id}")),
        (Method::POST, format!("/v1/keys/{id}")),
        (Method::GET, format!("/v1/keys/{id}/revoke")),
        (Method::GET, format!("/v1/keys/{id}/rotate")),
        (Method::POST, "/v1/health".to_owned()),
        (Method::DELETE, "/v1/me".to_owned()),
    ];
    for (method, path) in cases {
        let response = f.server.send(f.server.client.request(method.clone(), f.server.url(&path)), Some(&f.root_key));
        assert_problem(response, 405, "method_not_allowed");
    }
    assert_eq!(show(&f.server, &f.root_key, &id), key, "a refused method changes nothing");
}

#[test]
fn a_405_names_the_allowed_methods_in_an_allow_header() {
    // RFC 9110 §15.5.6: "The origin server MUST generate an Allow header field in a 405
    // response containing a list of the target resource's currently supported methods."
    let f = alice();
    let cases = [
        ("/v1/keys", ["GET", "POST"].as_slice()),
        ("/v1/keys/key_0000000000000000", &["GET", "PATCH"]),
        ("/v1/health", &["GET"]),
    ];
    for (path, allowed) in cases {
        let response = f.server.send(f.server.client.delete(f.server.url(path)), Some(&f.root_key));
        assert_eq!(response.status(), 405, "{path}");
        let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
        let mut methods: Vec<String> = allow
            .unwrap_or_else(|| panic!("DELETE {path}: a 405 must carry an Allow header listing {allowed:?}"))
            .split(',')
            .map(|m| m.trim().to_owned())
            .filter(|m| m != "HEAD")
            .collect();
        methods.sort();
        assert_eq!(methods, allowed, "Allow for {path}");
    }
}
