//! `iblueprint keys …` against a real server (SPEC §1, issue 6): every subcommand, table and
//! `--json` output (the flag before or after the subcommand), `list` across pages, secrets
//! alone on stdout, and the failure contract: a malformed key refused before any connection
//! (exit 2), a missing variable (exit 2), server problems and unreachable servers as one
//! line on stderr (exit 1).

#[path = "api/helpers.rs"]
mod helpers;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use helpers::*;

/// Runs `iblueprint ARGS…` with only the given `IBLUEPRINT_*` variables set.
fn run_keys(url: &str, key: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(binary());
    command.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("IBLUEPRINT_") {
            command.env_remove(name);
        }
    }
    command.env("IBLUEPRINT_URL", url);
    if let Some(key) = key {
        command.env("IBLUEPRINT_API_KEY", key);
    }
    command.stdin(Stdio::null()).output().expect("run iblueprint keys")
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("stderr is UTF-8")
}

#[track_caller]
fn assert_ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "stdout: {:?}; stderr: {:?}", stdout_of(out), stderr_of(out));
    stdout_of(out)
}

/// Asserts the exit code and that stderr is exactly one line, `error: …`, mentioning every
/// one of `mentions`; returns that line.
#[track_caller]
fn assert_fails(out: &Output, code: i32, mentions: &[&str]) -> String {
    let stderr = stderr_of(out);
    assert_eq!(out.status.code(), Some(code), "stdout: {:?}; stderr: {stderr:?}", stdout_of(out));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr must be exactly one line: {stderr:?}");
    assert!(lines[0].starts_with("error: "), "{stderr:?}");
    for mention in mentions {
        assert!(lines[0].contains(mention), "stderr must mention {mention:?}: {stderr:?}");
    }
    assert!(out.stdout.is_empty(), "nothing on stdout on failure: {:?}", stdout_of(out));
    lines[0].to_owned()
}

#[track_caller]
fn json_of(out: &Output) -> Value {
    serde_json::from_str(&assert_ok(out)).expect("stdout is JSON")
}

/// A secret as `create`/`rotate` print it: the whole of stdout, one line.
#[track_caller]
fn secret_of(out: &Output) -> String {
    let stdout = assert_ok(out);
    assert!(stdout.ends_with('\n') && stdout.lines().count() == 1, "stdout must be the secret alone: {stdout:?}");
    let secret = stdout.trim().to_owned();
    assert!(secret.starts_with("ibp_") && secret.len() == 50, "not a secret: {secret:?}");
    secret
}

/// A well-formed key with one character changed, so that only the checksum is wrong.
fn with_bad_checksum(secret: &str) -> String {
    let mut bytes = secret.as_bytes().to_vec();
    bytes[20] = if bytes[20] == b'a' { b'b' } else { b'a' };
    String::from_utf8(bytes).expect("ascii")
}

/// A loopback port nobody listens on (bound, then closed).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn whoami_shows_the_user_and_the_key_as_a_table_or_json() {
    let f = alice();
    let out = run_keys(&f.server.base, Some(&f.root_key), &["keys", "whoami"]);
    let table = assert_ok(&out);
    let me: Value = f.server.get("/v1/me", Some(&f.root_key)).json().expect("json");
    let key_id = me["key"]["id"].as_str().expect("id");
    assert!(table.lines().any(|l| l.starts_with("user") && l.contains("alice")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("id") && l.contains(key_id)), "{table}");
    assert!(table.contains("keys:read keys:write"), "{table}");
    assert!(!table.contains(&f.root_key), "the secret is never printed");

    for args in [["keys", "--json", "whoami"], ["keys", "whoami", "--json"]] {
        let me = json_of(&run_keys(&f.server.base, Some(&f.root_key), &args));
        assert_eq!(me["user"]["username"], "alice", "{args:?}");
        assert_eq!(me["key"]["id"], key_id, "{args:?}");
    }
}

#[test]
fn list_prints_a_table_and_the_servers_json_in_its_field_order() {
    let f = alice();
    let (first, _) = f.server.create_key(&f.root_key, json!({"name": "first", "rate_limit": {"per_hour": 10}}));
    let (second, _) = f.server.create_key(&f.root_key, json!({"name": "second", "expires_in": 3600}));

    let table = assert_ok(&run_keys(&f.server.base, Some(&f.root_key), &["keys", "list"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "header and three keys: {table}");
    let header: Vec<&str> = lines[0].split("  ").map(str::trim).filter(|s| !s.is_empty()).collect();
    assert_eq!(header, ["ID", "NAME", "KEY", "STATUS", "LIMITS", "EXPIRES", "LAST USED"]);
    // Newest first, as the server sends them.
    assert!(lines[1].starts_with(second["id"].as_str().expect("id")), "{table}");
    assert!(lines[2].starts_with(first["id"].as_str().expect("id")), "{table}");
    let shown_key = format!("{}…{}", first["start"].as_str().expect("start"), first["end"].as_str().expect("end"));
    assert!(lines[2].contains(&shown_key) && lines[2].contains("10/hour") && lines[2].contains("active"), "{table}");
    assert!(lines[1].contains(second["expires_at"].as_str().expect("expiry")), "{table}");

    for args in [["keys", "--json", "list"], ["keys", "list", "--json"]] {
        let out = run_keys(&f.server.base, Some(&f.root_key), &args);
        let raw = stdout_of(&out);
        let list = json_of(&out);
        assert_eq!(list["keys"].as_array().expect("keys").len(), 3, "{args:?}");
        assert_eq!(list["keys"][0], second, "the server's key object, unchanged");
        assert_eq!(list["next_cursor"], Value::Null);
        // Pretty, and in the server's order (`id` first), not re-sorted.
        assert!(raw.starts_with("{\n  \"keys\": [\n    {\n      \"id\": "), "{raw}");
    }
}

#[test]
fn list_follows_next_cursor_across_pages() {
    let f = alice();
    // The client asks for 200 per page (the server's maximum): 201 keys + the root key
    // take two pages.
    let mut ids = vec![f.server.get("/v1/me", Some(&f.root_key)).json::<Value>().expect("json")["key"]["id"].clone()];
    for n in 0..201 {
        let (key, _) = f.server.create_key(&f.root_key, json!({"name": format!("bulk {n}")}));
        ids.push(key["id"].clone());
    }
    let list = json_of(&run_keys(&f.server.base, Some(&f.root_key), &["keys", "list", "--json"]));
    let listed: Vec<Value> = list["keys"].as_array().expect("keys").iter().map(|k| k["id"].clone()).collect();
    assert_eq!(listed.len(), 202);
    ids.reverse(); // newest first
    assert_eq!(listed, ids, "every key once, newest first, across the page boundary");

    let table = assert_ok(&run_keys(&f.server.base, Some(&f.root_key), &["keys", "list"]));
    assert_eq!(table.lines().count(), 203, "header + 202 rows");
}

#[test]
fn create_prints_the_secret_alone_and_it_works_as_a_bearer_token() {
    let f = alice();
    let out = run_keys(
        &f.server.base,
        Some(&f.root_key),
        &[
            "keys",
            "create",
            "ci deploy",
            "--scope",
            "keys:read",
            "--per-hour",
            "100",
            "--per-day",
            "1000",
            "--expires-in",
            "7d",
        ],
    );
    let secret = secret_of(&out);
    let stderr = stderr_of(&out);
    assert!(stderr.contains("created key key_") && stderr.contains("shown only this once"), "{stderr}");
    assert!(!stderr.contains(&secret), "details on stderr, the secret only on stdout");

    let me: Value = f.server.get("/v1/me", Some(&secret)).json().expect("the new key works");
    assert_eq!(me["key"]["name"], "ci deploy");
    assert_eq!(me["key"]["scopes"], json!(["keys:read"]));
    assert_eq!(me["key"]["rate_limit"], json!({"per_hour": 100, "per_day": 1000}));
    assert!(me["key"]["expires_at"].is_string());
    assert!(stderr.contains(me["key"]["id"].as_str().expect("id")), "{stderr}");

    // --json: the whole response, secret included.
    let created = json_of(&run_keys(&f.server.base, Some(&f.root_key), &["keys", "create", "scripted", "--json"]));
    assert_eq!(created["key"]["name"], "scripted");
    let secret = created["secret"].as_str().expect("secret");
    assert_eq!(f.server.get("/v1/me", Some(secret)).status(), 200);
}

#[test]
fn show_prints_one_key() {
    let f = alice();
    let (key, _) = f.server.create_key(&f.root_key, json!({"name": "shown", "scopes": ["keys:read"]}));
    let id = key["id"].as_str().expect("id");
    let table = assert_ok(&run_keys(&f.server.base, Some(&f.root_key), &["keys", "show", id]));
    for (label, value) in [("id", id), ("name", "shown"), ("status", "active"), ("scopes", "keys:read")] {
        assert!(table.lines().any(|l| l.starts_with(label) && l.trim_end().ends_with(value)), "{label}: {table}");
    }
    let shown = json_of(&run_keys(&f.server.base, Some(&f.root_key), &["keys", "show", id, "--json"]));
    assert_eq!(shown, key);
}

#[test]
fn revoke_then_the_revoked_key_is_refused_with_key_revoked() {
    let f = alice();
    let (key, secret) = f.server.create_key(&f.root_key, json!({"name": "doomed", "scopes": ["keys:read"]}));
    let id = key["id"].as_str().expect("id");
    let out = assert_ok(&run_keys(&f.server.base, Some(&f.root_key), &["keys", "revoke", id]));
    assert!(out.starts_with(&format!("revoked {id} (doomed) at ")), "{out}");

    let line = assert_fails(&run_keys(&f.server.base, Some(&secret), &["keys", "whoami"]), 1, &["key_revoked"]);
    assert!(line.starts_with("error: 403 key_revoked: the API key has been revoked"), "{line}");
    assert!(!line.contains(&secret));

    // Idempotent, and --json gives the key object.
    let revoked = json_of(&run_keys(&f.server.base, Some(&f.root_key), &["keys", "--json", "revoke", id]));
    assert_eq!(revoked["status"], "revoked");
}

#[test]
fn rotate_with_grace_keeps_both_keys_working() {
    let f = alice();
    let (key, old_secret) = f.server.create_key(&f.root_key, json!({"name": "rotating", "scopes": ["keys:read"]}));
    let id = key["id"].as_str().expect("id");
    let out = run_keys(&f.server.base, Some(&f.root_key), &["keys", "rotate", id, "--grace", "1h"]);
    let new_secret = secret_of(&out);
    let stderr = stderr_of(&out);
    assert!(stderr.contains(&format!("rotated {id} into key_")) && stderr.contains("keeps working until"), "{stderr}");

    let old: Value = f.server.get("/v1/me", Some(&old_secret)).json().expect("old key still works");
    assert_eq!(old["key"]["status"], "rotating");
    let new: Value = f.server.get("/v1/me", Some(&new_secret)).json().expect("new key works");
    assert_eq!(new["key"]["name"], "rotating");
    assert_eq!(new["key"]["scopes"], json!(["keys:read"]));

    // Without grace the old key stops at once; --json shows key, secret and previous.
    let new_id = new["key"]["id"].as_str().expect("id");
    let rotated = json_of(&run_keys(&f.server.base, Some(&f.root_key), &["keys", "rotate", "--json", new_id]));
    assert_eq!(rotated["previous"]["status"], "revoked");
    assert!(rotated["secret"].is_string() && rotated["key"]["id"].is_string());
}

#[test]
fn a_key_with_a_bad_checksum_is_refused_before_any_connection() {
    let f = alice();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}", listener.local_addr().expect("addr"));

    let bad = with_bad_checksum(&f.root_key);
    let line = assert_fails(&run_keys(&url, Some(&bad), &["keys", "whoami"]), 2, &[]);
    assert_eq!(
        line,
        "error: IBLUEPRINT_API_KEY is not a valid iblueprint key: checksum mismatch — was it truncated when pasted?"
    );
    for (key, mention) in [
        (&f.root_key[..40], "it has 40 characters where an iblueprint key has 50"),
        ("sk_test_abcdef", "does not start with `ibp_`"),
    ] {
        let line = assert_fails(&run_keys(&url, Some(key), &["keys", "list"]), 2, &[mention]);
        assert!(!line.contains(&f.root_key[4..30]), "the key is never printed: {line}");
    }
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the client connected, or the listener failed: {other:?}"),
    }
}

#[test]
fn a_missing_key_variable_exits_2_and_says_what_to_do() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    for key in [None, Some("")] {
        assert_fails(
            &run_keys(&url, key, &["keys", "whoami"]),
            2,
            &[
                "IBLUEPRINT_API_KEY is not set; create a key in the settings page or with `iblueprint users issue-key`, then export it",
            ],
        );
    }
}

#[test]
fn bad_arguments_exit_2_before_any_request() {
    let f = alice();
    let base = &f.server.base;
    let key = Some(f.root_key.as_str());
    assert_fails(&run_keys(base, key, &["keys", "create", "x", "--expires-in", "3 weeks"]), 2, &["--expires-in"]);
    assert_fails(&run_keys(base, key, &["keys", "rotate", "key_0123456789abcdef", "--grace", "soon"]), 2, &["--grace"]);
    // Values the server would refuse are the flag's mistake too, named as the flag.
    assert_fails(&run_keys(base, key, &["keys", "create", "x", "--per-hour", "0"]), 2, &["--per-hour"]);
    assert_fails(&run_keys(base, key, &["keys", "create", "x", "--per-day", "1000000001"]), 2, &["--per-day"]);
    assert_fails(&run_keys(base, key, &["keys", "create", "x", "--expires-in", "0s"]), 2, &["--expires-in"]);
    assert_fails(&run_keys(base, key, &["keys", "rotate", "key_0123456789abcdef", "--grace", "8d"]), 2, &["--grace"]);
    assert_fails(&run_keys(base, key, &["keys", "show", "nope"]), 2, &["nope", "is not a key id"]);
    let line = assert_fails(&run_keys(base, key, &["keys", "show", &f.root_key]), 2, &["not its id"]);
    assert!(!line.contains(&f.root_key), "a secret given as an id is not echoed");
    assert_fails(&run_keys("ftp://example.com", key, &["keys", "whoami"]), 2, &["IBLUEPRINT_URL"]);
    assert_fails(
        &run_keys(base, key, &["keys", "--ca-cert", "/nonexistent/ca.pem", "whoami"]),
        2,
        &["--ca-cert", "/nonexistent/ca.pem"],
    );
    // Nothing was created by any of these.
    let list: Value = f.server.get("/v1/keys", Some(&f.root_key)).json().expect("json");
    assert_eq!(list["keys"].as_array().expect("keys").len(), 1);
}

#[test]
fn server_problems_become_one_line_with_exit_1() {
    let f = alice();
    assert_fails(
        &run_keys(&f.server.base, Some(&f.root_key), &["keys", "show", "key_0123456789abcdef"]),
        1,
        &["error: 404 not_found: ", "`iblueprint keys list`"],
    );
    // A key without keys:read may call whoami but not list.
    let (_, plain) = f.server.create_key(&f.root_key, json!({"name": "plain"}));
    assert_ok(&run_keys(&f.server.base, Some(&plain), &["keys", "whoami"]));
    assert_fails(
        &run_keys(&f.server.base, Some(&plain), &["keys", "list"]),
        1,
        &["403 insufficient_scope", "keys:read"],
    );
    // A well-formed key the server does not know.
    let mut rng = getrandom::SysRng;
    let unknown = iblueprint::domain::Token::generate(&mut rng).expect("rng");
    assert_fails(
        &run_keys(&f.server.base, Some(unknown.expose_secret()), &["keys", "whoami"]),
        1,
        &["401 invalid_key", &f.server.base],
    );
    // The server's own validation, passed on.
    assert_fails(
        &run_keys(&f.server.base, Some(&f.root_key), &["keys", "create", "x", "--scope", "Not A Scope"]),
        1,
        &["400 invalid_request", "scopes"],
    );
}

#[test]
fn an_unreachable_server_is_named_with_exit_1() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    let mut rng = getrandom::SysRng;
    let key = iblueprint::domain::Token::generate(&mut rng).expect("rng");
    assert_fails(&run_keys(&url, Some(key.expose_secret()), &["keys", "whoami"]), 1, &["cannot connect to", &url]);
}
