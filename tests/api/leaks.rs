//! The secret-leak test (issue 7): no issued secret appears in a log line, an audit event,
//! a backup, a jsonl export or an error body.
//!
//! Most of the work is done by the harness ([`crate::helpers`]): every server of every
//! black-box test runs with `RUST_LOG=debug` and has its log and data file scanned when it
//! is dropped. This file proves the scanner can fail (a planted secret is caught, in bytes,
//! in a file and at a server's drop), and walks one user through everything that issues or
//! presents a secret, then scans each place a secret must never reach.

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::{Value, json};

use crate::helpers::*;

/// The message of a panic caught by `catch_unwind`.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload.downcast_ref::<&str>().map(|s| s.to_string()).unwrap_or_default(),
    }
}

#[test]
fn the_scanner_catches_an_issued_token_and_shows_it_redacted() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let secret = dir.issue_key("alice", &[]);
    let line = format!("2026-01-01T00:00:00Z DEBUG actix_http: header authorization=\"Bearer {secret}\"\n");
    let found = find_secrets(format!("a clean line\n{line}another line\n").as_bytes());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("a token-shaped string"), "{found:?}");
    assert!(found[0].contains("Bearer [ibp_"), "the excerpt shows where: {found:?}");
    assert!(!found[0].contains(&secret), "the report itself must not leak the secret: {found:?}");
    // The random part alone, without prefix or checksum, is caught too.
    let found = find_secrets(format!("key material: {}\n", &secret[4..44]).as_bytes());
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("a secret issued during the tests"), "{found:?}");
    let caught = catch_unwind(|| assert_no_secrets("a planted log", line.as_bytes()));
    let message = panic_message(caught.expect_err("a planted token fails the check"));
    assert!(message.contains("secret leak: a planted log holds a secret"), "{message}");
}

#[test]
fn the_scanner_catches_any_token_shape_and_remembered_secrets_but_not_public_parts() {
    // Never issued, but shaped like a token: still caught, glued junk or not.
    let shaped = format!("ibp_{}", "a1B2".repeat(12));
    assert_eq!(find_secrets(format!("{{\"detail\":\"{shaped}\"}}").as_bytes()).len(), 1);
    // A remembered non-token secret (a session cookie's shape: 43 base62), inside JSON.
    let session = "S3ssionS3cretS3ssionS3cretS3ssionS3cretXyZ9";
    remember_secret(session);
    assert_eq!(find_secrets(format!("{{\"cookie\":\"{session}\"}}").as_bytes()).len(), 1);
    // The test password, in binary surroundings (a data file).
    let mut bytes = vec![0u8, 255, 7];
    bytes.extend_from_slice(PASSWORD.as_bytes());
    bytes.push(0);
    assert_eq!(find_secrets(&bytes).len(), 1);
    // What may appear: a key's public start and end, its id, a short `ibp_` run.
    let public = "key_0zdfZug48MERXd4B start=ibp_4M4E end=4yyG ibp_ ibp_tooShort0123456789";
    assert_eq!(find_secrets(public.as_bytes()), Vec::<String>::new());
}

#[test]
fn a_server_whose_log_or_data_file_holds_a_secret_fails_when_dropped() {
    let f = alice();
    let (_, secret) = f.server.create_key(&f.root_key, json!({"name": "planted"}));
    let session = f.server.sign_in("alice", PASSWORD);
    let session_secret = session.cookie.trim_start_matches("ibp_session=").to_owned();
    let plant = |path: &std::path::Path, text: String| {
        let mut file = std::fs::OpenOptions::new().append(true).open(path).expect("file to plant in");
        std::io::Write::write_all(&mut file, text.as_bytes()).expect("plant");
    };
    let log_path = f.server.log_path.clone();
    plant(&log_path, format!("planted: {secret}\n"));
    // Past the end of the redb file, as a stray copy of a session cookie would sit in it.
    plant(&f.dir.data(), format!("\0\0{session_secret}\0"));
    let Fixture { server, dir, .. } = f;
    let caught = catch_unwind(AssertUnwindSafe(move || drop(server)));
    let message = panic_message(caught.expect_err("the drop-time scan catches the planted secrets"));
    assert!(message.contains(&format!("{}: offset", log_path.display())), "names the log: {message}");
    assert!(message.contains("planted: [ibp_"), "{message}");
    assert!(message.contains(&format!("{}: offset", dir.data().display())), "names the data file: {message}");
    assert!(message.contains("a secret issued during the tests"), "{message}");
    assert!(!message.contains(&secret) && !message.contains(&session_secret), "redacted: {message}");
    // The folder is thrown away; nothing else reads these files again.
    drop(dir);
}

#[test]
fn no_secret_reaches_the_log_the_audit_trail_the_data_file_or_a_backup() {
    everything_that_handles_a_secret("pretty");
}

#[test]
fn no_secret_reaches_a_json_log_either() {
    everything_that_handles_a_secret("json");
}

/// One admin through every path that issues, presents or could echo a secret, with the
/// server logging at debug in `log_format`; then each place a secret must never be.
fn everything_that_handles_a_secret(log_format: &str) {
    let dir = TestDir::new();
    let out = dir.cli(&["users", "add", "alice", "--admin", "--password-stdin"], &format!("{PASSWORD}\n"));
    assert!(out.status.success());
    let root_key = dir.issue_key("alice", &["keys:read", "keys:write"]);
    let mut server = dir.start_with(&["--log-format", log_format], &[("IBLUEPRINT_METRICS_LISTEN", "127.0.0.1:0")]);
    let metrics = server.next_stdout_line();
    let metrics = metrics.trim().strip_prefix("iblueprint metrics on ").expect("the metrics address").to_owned();

    // A failed sign-in with a password that must not be logged, then a real one.
    let wrong = "a wrong password for alice";
    remember_secret(wrong);
    let login = server.client.get(server.url("/login")).send().unwrap();
    remember_cookies(&login);
    let form_cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let csrf = csrf_of(&login.text().unwrap()).unwrap();
    let failed = server
        .client
        .post(server.url("/login"))
        .header("cookie", form_cookie)
        .header("origin", &server.base)
        .form(&[("csrf", csrf.as_str()), ("username", "alice"), ("password", wrong)])
        .send()
        .unwrap();
    assert_eq!(failed.status(), 422);
    let session = server.sign_in("alice", PASSWORD);

    // Keys through the API: create, rotate (with grace), revoke; and through the form.
    let (key, _) = server.create_key(&root_key, json!({"name": "api", "rate_limit": {"per_hour": 100}}));
    let id = key["id"].as_str().unwrap();
    let rotated = server.post(&format!("/v1/keys/{id}/rotate"), Some(&root_key), &json!({"grace_seconds": 60}));
    assert_eq!(rotated.status(), 201);
    let rotated: Value = rotated.json().unwrap();
    let new_secret = rotated["secret"].as_str().unwrap();
    remember_secret(new_secret);
    let new_id = rotated["key"]["id"].as_str().unwrap();
    assert_eq!(server.get("/v1/me", Some(new_secret)).status(), 200);
    assert_eq!(server.post(&format!("/v1/keys/{new_id}/revoke"), Some(&root_key), &json!({})).status(), 200);
    let created = server
        .form_post(&session, "/settings/keys/new")
        .form(&[("csrf", session.csrf.as_str()), ("name", "from the form"), ("expires", "never")])
        .send()
        .unwrap();
    assert_eq!(created.status(), 303);
    let secret_page = server.page(&session, created.headers()["location"].to_str().unwrap()).send().unwrap();
    assert_eq!(secret_page.status(), 200);
    // The one legitimate place besides the 201 bodies: remember what it shows.
    let page = secret_page.text().unwrap();
    let shown = page.split("id=\"new-secret\"").nth(1).and_then(|t| t.split("value=\"").nth(1)).unwrap();
    remember_secret(&shown[..shown.find('"').unwrap()]);

    // Secrets where they do not belong: in the path, the query, a wrong field, a bad
    // Authorization header. Each answer is checked by assert_problem; the log at the drop.
    let misplaced = [
        server.get(&format!("/v1/keys/{root_key}"), Some(&root_key)),
        server.get(&format!("/v1/keys?cursor={root_key}"), Some(&root_key)),
        server.post("/v1/keys", Some(&root_key), &json!({"name": "x", "scopes": root_key})),
        server.get("/v1/me", Some(&format!("{root_key}x"))),
    ];
    for (response, (status, code)) in misplaced.into_iter().zip([
        (404, "not_found"),
        (400, "invalid_request"),
        (400, "invalid_request"),
        (401, "invalid_key"),
    ]) {
        assert_problem(response, status, code);
    }

    // A user change, for the audit trail to hold every kind of event.
    let add = server
        .form_post(&session, "/settings/users")
        .form(&[("csrf", session.csrf.as_str()), ("username", "bob"), ("password", "bob's temporary password")])
        .send()
        .unwrap();
    assert_eq!(add.status(), 303);
    remember_secret("bob's temporary password");

    // The audit page lists those events and no secret.
    let audit = server.page(&session, "/settings/audit").send().unwrap();
    assert_eq!(audit.status(), 200);
    let audit = audit.text().unwrap();
    for action in ["key.created", "key.rotated", "key.revoked", "login", "login.failed", "user.created"] {
        assert!(audit.contains(&format!("data-action=\"{action}\"")), "the audit page lacks {action}:\n{audit}");
    }
    assert_no_secrets("the audit page", audit.as_bytes());

    // The metrics (by route, status and outcome, never by key or path).
    let exposition = server.client.get(&metrics).send().unwrap();
    assert_eq!(exposition.status(), 200);
    let exposition = exposition.text().unwrap();
    assert!(exposition.contains("key_rotate"), "the walk shows in the metrics:\n{exposition}");
    assert_no_secrets("the metrics", exposition.as_bytes());

    // Backups of the running server, in both formats.
    for format in ["redb", "jsonl"] {
        let path = dir.dir.path().join(format!("backup.{format}"));
        let out = dir.cli(&["backup", "--out", path.to_str().unwrap(), "--format", format], "");
        assert!(out.status.success(), "backup: {}", String::from_utf8_lossy(&out.stderr));
        assert_no_secrets_in_file(&path);
    }

    // A clean stop; the drop then scans the whole debug log and the data file.
    assert!(server.stop().success());
}
