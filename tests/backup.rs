//! `backup` and `import` as an operator meets them (SPEC §8, issue 5): a consistent copy
//! taken beside a busy server, a lossless round trip through both formats, an export that
//! never holds a secret, refusals that leave every file byte-identical, merges, schema
//! versions, and the schema-1 fixture that must keep opening and importing forever.
//!
//! Every case runs the real binary on files in its own temp folder. Files are compared as
//! bytes; databases are compared through their jsonl exports (every record, every field).

#[path = "api/helpers.rs"]
mod helpers;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use serde_json::{Value, json};

use helpers::*;

/// The schema version this binary writes.
const SCHEMA_VERSION: u64 = iblueprint::store::SCHEMA_VERSION;

// ---------------------------------------------------------------------------------------
// Small helpers of this file
// ---------------------------------------------------------------------------------------

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn s(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// `iblueprint backup --out OUT --data DATA [extra…]`.
fn backup(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["backup", "--out", s(out), "--data", s(data)];
    args.extend_from_slice(extra);
    let output = run_cli(&args, None, "");
    // Every backup and export any test here writes is part of the secret-leak test.
    if output.status.success() {
        assert_no_secrets_in_file(out);
    }
    output
}

/// `iblueprint import FILE --data DATA [extra…]`.
fn import(file: &Path, data: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["import", s(file), "--data", s(data)];
    args.extend_from_slice(extra);
    run_cli(&args, None, "")
}

#[track_caller]
fn assert_ok(out: &Output, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what} should succeed; stdout: {:?}; stderr: {:?}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Asserts a failure with exit code `code` whose stderr mentions every one of `mentions`;
/// returns stderr.
#[track_caller]
fn assert_refused(out: &Output, code: i32, mentions: &[&str], what: &str) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit {code}; stdout: {:?}; stderr: {stderr:?}",
        text(&out.stdout)
    );
    assert!(stderr.starts_with("error: "), "{what}: stderr must start with `error: `: {stderr:?}");
    for mention in mentions {
        assert!(stderr.contains(mention), "{what}: stderr must mention {mention:?}, got: {stderr:?}");
    }
    stderr
}

/// A jsonl export parsed: its header and its records, in file order.
#[derive(Debug)]
struct Export {
    header: Value,
    records: Vec<Value>,
}

impl Export {
    fn of_type(&self, kind: &str) -> Vec<&Value> {
        self.records.iter().filter(|r| r["type"] == kind).collect()
    }

    fn key(&self, id: &str) -> Option<&Value> {
        self.records.iter().find(|r| r["type"] == "key" && r["id"] == id)
    }

    fn user_named(&self, name: &str) -> Option<&Value> {
        self.records.iter().find(|r| r["type"] == "user" && r["username"] == name)
    }
}

fn parse_export(raw: &str) -> Export {
    let mut lines = raw.lines();
    let header: Value =
        serde_json::from_str(lines.next().expect("an export has a header line")).expect("header is JSON");
    let records =
        lines.map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad export line {l:?}: {e}"))).collect();
    Export { header, records }
}

/// Exports `data` (server stopped, or a backup file) as jsonl with the real binary.
#[track_caller]
fn export(data: &Path) -> Export {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("export.jsonl");
    let output = backup(data, &out, &["--format", "jsonl"]);
    assert_ok(&output, &format!("jsonl export of {}", data.display()));
    parse_export(&std::fs::read_to_string(&out).expect("read export"))
}

/// Asserts two exports hold the same database: same header counts and schema version,
/// and the same records (every field) in the same order, type by type.
#[track_caller]
fn assert_same_database(expected: &Export, actual: &Export, what: &str) {
    assert_eq!(actual.header["schema_version"], expected.header["schema_version"], "{what}: schema version");
    assert_eq!(actual.header["counts"], expected.header["counts"], "{what}: header counts");
    for kind in ["user", "key", "buckets", "audit"] {
        let (want, got) = (expected.of_type(kind), actual.of_type(kind));
        assert_eq!(got.len(), want.len(), "{what}: number of {kind} records");
        for (w, g) in want.iter().zip(&got) {
            assert_eq!(g, w, "{what}: a {kind} record differs");
        }
    }
    assert_eq!(actual.records, expected.records, "{what}: records");
}

fn sha(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[track_caller]
fn assert_byte_identical(path: &Path, before: &[u8], what: &str) {
    let after = sha(path);
    assert!(
        after == before,
        "{what}: {} must be left byte-identical ({} bytes before, {} after{})",
        path.display(),
        before.len(),
        after.len(),
        if after.len() == before.len() { ", contents differ" } else { "" }
    );
}

/// Sets `meta.schema_version` of a (closed, cleanly shut) data file with redb directly.
fn set_schema_version(path: &Path, version: u64) {
    let db = redb::Database::create(path).expect("open with redb");
    let txn = db.begin_write().expect("write txn");
    txn.open_table(redb::TableDefinition::<&str, u64>::new("meta"))
        .expect("meta table")
        .insert("schema_version", version)
        .expect("insert");
    txn.commit().expect("commit");
}

fn read_schema_version(path: &Path) -> Option<u64> {
    use redb::ReadableDatabase;
    let db = redb::Database::builder().open_read_only(path).expect("open read-only with redb");
    let read = db.begin_read().expect("read txn");
    let meta = read.open_table(redb::TableDefinition::<&str, u64>::new("meta")).expect("meta table");
    meta.get("schema_version").expect("get").map(|v| v.value())
}

/// Creates a key through the API with the given body; returns (id, secret).
fn create(server: &TestServer, key: &str, body: Value) -> (String, String) {
    let (key_json, secret) = server.create_key(key, body);
    (key_json["id"].as_str().expect("id").to_owned(), secret)
}

#[track_caller]
fn revoke(server: &TestServer, key: &str, id: &str) {
    let response = server.send(server.client.post(server.url(&format!("/v1/keys/{id}/revoke"))), Some(key));
    assert_eq!(response.status(), 200, "revoke {id}: {}", response.text().unwrap_or_default());
}

/// Rotates `id`; returns the new key's (id, secret).
#[track_caller]
fn rotate(server: &TestServer, key: &str, id: &str, body: Value) -> (String, String) {
    let response = server.post(&format!("/v1/keys/{id}/rotate"), Some(key), &body);
    assert_eq!(response.status(), 201, "rotate {id}: {}", response.text().unwrap_or_default());
    let json: Value = response.json().expect("json");
    (json["key"]["id"].as_str().expect("id").to_owned(), json["secret"].as_str().expect("secret").to_owned())
}

/// The whole tokens left in the hour bucket, from the `RateLimit` header.
#[track_caller]
fn hour_remaining(response: &reqwest::blocking::Response) -> u64 {
    let header = response.headers().get("ratelimit").expect("a RateLimit header").to_str().unwrap().to_owned();
    let rest = header.strip_prefix("\"hour\";r=").unwrap_or_else(|| panic!("hour window first: {header}"));
    rest.split(';').next().unwrap().parse().unwrap_or_else(|_| panic!("r= is a number: {header}"))
}

#[track_caller]
fn assert_verifies(server: &TestServer, secret: &str, what: &str) -> reqwest::blocking::Response {
    let response = server.get("/v1/me", Some(secret));
    assert_eq!(response.status(), 200, "{what} must verify (200)");
    response
}

#[track_caller]
fn assert_revoked(server: &TestServer, secret: &str, what: &str) {
    let response = server.get("/v1/me", Some(secret));
    assert_eq!(response.status(), 403, "{what} must be refused as revoked (403)");
    assert_problem(response, 403, "key_revoked");
}

/// A TestDir whose data file is a copy of `file`.
fn dir_with_copy_of(file: &Path) -> TestDir {
    let dir = TestDir::new();
    std::fs::copy(file, dir.data()).expect("copy into place");
    dir
}

/// Deterministic bytes that are neither redb nor JSON.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

/// A small stopped data file: alice with two live keys; returns (dir, alice's root key).
fn small_data_file() -> (TestDir, String) {
    let dir = TestDir::new();
    dir.add_user("alice");
    let root = dir.issue_key("alice", &["keys:read", "keys:write"]);
    dir.issue_key("alice", &[]);
    (dir, root)
}

// ---------------------------------------------------------------------------------------
// 1. A backup beside a busy server
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Create,
    Revoke,
}

/// One acknowledged change. `begun` is the sequence counter read just before the request
/// was sent; `acked` the number it got once its 2xx had arrived. So a change with
/// `acked < x` was acknowledged before the counter read `x`, and if A.acked < B.begun, A
/// was committed before B was even sent.
#[derive(Debug, Clone)]
struct Event {
    change: Change,
    key: usize,
    begun: u64,
    acked: u64,
}

/// A key made by a load client.
#[derive(Debug, Clone)]
struct Made {
    id: String,
    secret: String,
}

#[test]
fn a_backup_taken_under_load_holds_every_change_acknowledged_before_it_started() {
    const CLIENTS: usize = 4;
    const BEFORE_BACKUP: usize = 200;
    const AFTER_BACKUP: u64 = 20;
    const MAX_OPS_PER_CLIENT: usize = 300;

    let dir = TestDir::new();
    dir.add_user("alice");
    let root = dir.issue_key("alice", &["keys:read", "keys:write"]);
    let server = dir.start();

    let counter = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let keys: Mutex<Vec<Made>> = Mutex::new(Vec::new());
    let events: Mutex<Vec<Event>> = Mutex::new(Vec::new());
    let (progress, acks) = mpsc::channel::<()>();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("under-load.redb");

    let (backup_output, started, ended) = std::thread::scope(|scope| {
        for client in 0..CLIENTS {
            let progress = progress.clone();
            let (server, root, counter, stop, keys, events) = (&server, &root, &counter, &stop, &keys, &events);
            scope.spawn(move || {
                let http = reqwest::blocking::Client::new();
                let mut live: Vec<usize> = Vec::new();
                for op in 0..MAX_OPS_PER_CLIENT {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let begun = counter.load(Ordering::SeqCst);
                    let event = if op % 3 == 2 && !live.is_empty() {
                        let index = live.remove(0);
                        let id = keys.lock().unwrap()[index].id.clone();
                        let response = http
                            .post(server.url(&format!("/v1/keys/{id}/revoke")))
                            .bearer_auth(root)
                            .send()
                            .expect("revoke request");
                        assert_eq!(response.status(), 200, "client {client}: revoke {id}");
                        let acked = counter.fetch_add(1, Ordering::SeqCst);
                        Event { change: Change::Revoke, key: index, begun, acked }
                    } else {
                        let response = http
                            .post(server.url("/v1/keys"))
                            .bearer_auth(root)
                            .json(&json!({"name": format!("load-{client}-{op}")}))
                            .send()
                            .expect("create request");
                        assert_eq!(response.status(), 201, "client {client}: create");
                        let acked = counter.fetch_add(1, Ordering::SeqCst);
                        let body: Value = response.json().expect("create body");
                        let made = Made {
                            id: body["key"]["id"].as_str().unwrap().to_owned(),
                            secret: body["secret"].as_str().unwrap().to_owned(),
                        };
                        let index = {
                            let mut keys = keys.lock().unwrap();
                            keys.push(made);
                            keys.len() - 1
                        };
                        live.push(index);
                        Event { change: Change::Create, key: index, begun, acked }
                    };
                    events.lock().unwrap().push(event);
                    let _ = progress.send(());
                }
            });
        }
        drop(progress);

        // Let the clients get going, then back up in the middle of their work.
        for n in 0..BEFORE_BACKUP {
            acks.recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("the clients stalled after {n} acknowledged changes"));
        }
        let started = counter.load(Ordering::SeqCst);
        let child = Command::new(binary())
            .args(["backup", "--out", s(&out), "--data", s(&dir.data())])
            .env_remove("IBLUEPRINT_DATA")
            .env_remove("IBLUEPRINT_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn backup");
        let output = child.wait_with_output().expect("wait for backup");
        let ended = counter.load(Ordering::SeqCst);
        // And let them go on a little, so some changes surely come after it.
        while counter.load(Ordering::SeqCst) <= ended + AFTER_BACKUP {
            acks.recv_timeout(Duration::from_secs(20)).expect("the clients stalled after the backup");
        }
        stop.store(true, Ordering::SeqCst);
        (output, started, ended)
    });
    let keys = keys.into_inner().unwrap();
    let events = events.into_inner().unwrap();
    eprintln!(
        "{} changes acknowledged: {started} before the backup started, {} while it ran",
        events.len(),
        ended - started
    );

    // The command itself.
    assert_ok(&backup_output, "backup beside a busy server");
    assert_no_secrets_in_file(&out);
    let stdout = text(&backup_output.stdout);
    let saved =
        stdout.lines().find(|l| l.starts_with("saved ")).unwrap_or_else(|| panic!("no `saved …` line: {stdout:?}"));
    assert!(saved.contains(s(&out)), "the saved line names the file: {saved}");

    // redb's own integrity check on (a copy of) the backup.
    let scratch = tempfile::tempdir().unwrap();
    let checked = scratch.path().join("check.redb");
    std::fs::copy(&out, &checked).unwrap();
    let mut db = redb::Database::open(&checked).expect("the backup opens as a redb database");
    assert!(db.check_integrity().expect("integrity check runs"), "the backup must pass redb's integrity check");
    drop(db);

    // What the backup holds.
    let snapshot = export(&out);
    let backed_up: HashMap<&str, &Value> =
        snapshot.of_type("key").into_iter().map(|k| (k["id"].as_str().unwrap(), k)).collect();
    let revoked_in_backup =
        |index: usize| backed_up.get(keys[index].id.as_str()).is_some_and(|k| !k["revoked_at"].is_null());
    let revoked_count = backed_up.values().filter(|k| !k["revoked_at"].is_null()).count();
    assert!(
        saved.starts_with(&format!("saved 1 users, {} keys ({revoked_count} revoked)", backed_up.len())),
        "the saved line reports what the backup holds: {saved}"
    );
    let present = |e: &Event| match e.change {
        Change::Create => backed_up.contains_key(keys[e.key].id.as_str()),
        Change::Revoke => revoked_in_backup(e.key),
    };

    // Every change acknowledged before the backup started is in it.
    let before: Vec<&Event> = events.iter().filter(|e| e.acked < started).collect();
    assert_eq!(before.len() as u64, started, "every sequence number below {started} belongs to one change");
    assert!(before.iter().any(|e| e.change == Change::Revoke), "some revocations happened before the backup");
    for event in &before {
        assert!(
            present(event),
            "{:?} of key {} was acknowledged (#{}) before the backup started (#{started}) but is not in the backup",
            event.change,
            keys[event.key].id,
            event.acked
        );
    }
    // The backup is one commit's state: whatever it holds, it holds everything committed
    // before that was even requested.
    for later in events.iter().filter(|e| present(e)) {
        for earlier in events.iter().filter(|e| e.acked < later.begun) {
            assert!(
                present(earlier),
                "the backup holds {:?} of {} but not {:?} of {}, which was acknowledged before that was sent: not a snapshot",
                later.change,
                keys[later.key].id,
                earlier.change,
                keys[earlier.key].id
            );
        }
    }
    // Nor anything requested after the backup had finished (`begun > ended`: that counter
    // read came after a change acknowledged after the backup exited).
    let after: Vec<&Event> = events.iter().filter(|e| e.begun > ended).collect();
    assert!(!after.is_empty(), "the clients went on after the backup");
    for event in after {
        assert!(
            !present(event),
            "{:?} of {} was requested after the backup had finished, yet the backup holds it",
            event.change,
            keys[event.key].id
        );
    }
    // Nothing in it that was never acknowledged, apart from alice's root key.
    let known: HashSet<&str> = keys.iter().map(|k| k.id.as_str()).collect();
    let revoked_by_clients: HashSet<usize> =
        events.iter().filter(|e| e.change == Change::Revoke).map(|e| e.key).collect();
    for (id, key) in &backed_up {
        if key["name"] != "test" {
            assert!(known.contains(id), "the backup holds key {id}, which no client created");
        }
    }
    for (index, made) in keys.iter().enumerate() {
        if revoked_in_backup(index) {
            assert!(
                revoked_by_clients.contains(&index),
                "key {} is revoked in the backup but was never revoked",
                made.id
            );
        }
    }

    // A server started on a copy of the backup agrees, key by key.
    let restored = dir_with_copy_of(&out);
    drop(server);
    let server = restored.start();
    assert_verifies(&server, &root, "alice's root key");
    let created_at: HashMap<usize, u64> =
        events.iter().filter(|e| e.change == Change::Create).map(|e| (e.key, e.acked)).collect();
    let revoked_at: HashMap<usize, u64> =
        events.iter().filter(|e| e.change == Change::Revoke).map(|e| (e.key, e.acked)).collect();
    for (index, made) in keys.iter().enumerate() {
        let created_before = created_at[&index] < started;
        let revoked_before = revoked_at.get(&index).is_some_and(|&at| at < started);
        let what = format!(
            "key {} (created #{}, revoked {:?}, backup at #{started})",
            made.id,
            created_at[&index],
            revoked_at.get(&index)
        );
        if revoked_before {
            assert_revoked(&server, &made.secret, &what);
        } else if created_before && !revoked_at.contains_key(&index) {
            assert_verifies(&server, &made.secret, &what);
        } else {
            // Changed after the backup started: either state, but exactly what the backup says.
            let response = server.get("/v1/me", Some(&made.secret));
            match (backed_up.contains_key(made.id.as_str()), revoked_in_backup(index)) {
                (false, _) => {
                    assert_problem(response, 401, "invalid_key");
                }
                (true, true) => {
                    assert_problem(response, 403, "key_revoked");
                }
                (true, false) => assert_eq!(response.status(), 200, "{what}"),
            }
        }
    }
    assert!(server.stop().success());
}

// ---------------------------------------------------------------------------------------
// 2. Round trip
// ---------------------------------------------------------------------------------------

/// Secrets of the round-trip data file, by role.
struct Rich {
    dir: TestDir,
    root: String,
    /// per_hour = 5, three requests spent.
    limited: String,
    /// per_hour = 10, one request spent, then rotated with an hour's grace.
    grace_old: String,
    grace_new: String,
    /// Rotated with no grace: revoked at once.
    rotated_old: String,
    rotated_new: String,
    revoked: String,
    bob_live: String,
    bob_revoked: String,
    /// carol is disabled.
    carol: String,
    all_secrets: Vec<String>,
}

fn rich_data_file() -> Rich {
    let dir = TestDir::new();
    dir.add_user("alice");
    dir.add_user("bob");
    dir.add_user("carol");
    let root = dir.issue_key("alice", &["keys:read", "keys:write"]);
    let bob_root = dir.issue_key("bob", &["keys:read", "keys:write"]);
    let carol = dir.issue_key("carol", &[]);

    let server = dir.start();
    let (_, limited) = create(&server, &root, json!({"name": "limited", "rate_limit": {"per_hour": 5}}));
    for expected_left in [4, 3, 2] {
        let response = assert_verifies(&server, &limited, "the per_hour=5 key");
        assert_eq!(hour_remaining(&response), expected_left);
    }
    let (grace_id, grace_old) = create(&server, &root, json!({"name": "graceful", "rate_limit": {"per_hour": 10}}));
    assert_eq!(hour_remaining(&assert_verifies(&server, &grace_old, "the per_hour=10 key")), 9);
    let (_, grace_new) = rotate(&server, &root, &grace_id, json!({"grace_seconds": 3600}));
    let (rotated_id, rotated_old) = create(&server, &root, json!({"name": "rotated", "scopes": ["keys:read"]}));
    let (_, rotated_new) = rotate(&server, &root, &rotated_id, json!({}));
    let (revoked_id, revoked) = create(&server, &root, json!({"name": "gone", "expires_in": 86_400}));
    revoke(&server, &root, &revoked_id);
    let (_, bob_live) = create(&server, &bob_root, json!({"name": "bob-ci", "scopes": ["keys:read"]}));
    let (bob_revoked_id, bob_revoked) = create(&server, &bob_root, json!({"name": "bob-old"}));
    revoke(&server, &bob_root, &bob_revoked_id);
    assert!(server.stop().success(), "the server stops cleanly, flushing its rate-limit state");

    let out = dir.cli(&["users", "disable", "carol"], "");
    assert_ok(&out, "users disable carol");

    let all_secrets = vec![
        root.clone(),
        bob_root,
        carol.clone(),
        limited.clone(),
        grace_old.clone(),
        grace_new.clone(),
        rotated_old.clone(),
        rotated_new.clone(),
        revoked.clone(),
        bob_live.clone(),
        bob_revoked.clone(),
    ];
    Rich {
        dir,
        root,
        limited,
        grace_old,
        grace_new,
        rotated_old,
        rotated_new,
        revoked,
        bob_live,
        bob_revoked,
        carol,
        all_secrets,
    }
}

/// A server on a restored copy behaves like the original would have: keys, revocations,
/// the disabled user, and the rate-limit budgets left.
fn assert_restored_server_behaves(rich: &Rich, data: &Path, what: &str) {
    let dir = dir_with_copy_of(data);
    let server = dir.start();
    assert_verifies(&server, &rich.root, &format!("{what}: alice's root key"));
    assert_verifies(&server, &rich.bob_live, &format!("{what}: bob's live key"));
    assert_verifies(&server, &rich.rotated_new, &format!("{what}: the rotated key's successor"));
    assert_revoked(&server, &rich.rotated_old, &format!("{what}: a key rotated without grace"));
    assert_revoked(&server, &rich.revoked, &format!("{what}: a revoked key"));
    assert_revoked(&server, &rich.bob_revoked, &format!("{what}: bob's revoked key"));
    assert_problem(server.get("/v1/me", Some(&rich.carol)), 403, "user_disabled");

    // per_hour = 5 with 3 spent: exactly 2 left, then 429.
    let first = assert_verifies(&server, &rich.limited, &format!("{what}: the limited key, 4th request"));
    assert_eq!(hour_remaining(&first), 1, "{what}: the per_hour=5 key had 2 requests left");
    let second = assert_verifies(&server, &rich.limited, &format!("{what}: the limited key, 5th request"));
    assert_eq!(hour_remaining(&second), 0, "{what}");
    assert_problem(server.get("/v1/me", Some(&rich.limited)), 429, "rate_limited");

    // The rotated pair share the old key's budget: 10 - 1 spent, then one request each.
    let old = assert_verifies(&server, &rich.grace_old, &format!("{what}: the old key within its grace period"));
    assert_eq!(hour_remaining(&old), 8, "{what}: the rotated key's budget survived");
    let new = assert_verifies(&server, &rich.grace_new, &format!("{what}: the new key of a graceful rotation"));
    assert_eq!(hour_remaining(&new), 7, "{what}: old and new key draw from one budget");

    // New keys made after a restore sort first and do not collide.
    let (id, _) = create(&server, &rich.root, json!({"name": "after restore"}));
    let list: Value = server.get("/v1/keys", Some(&rich.root)).json().unwrap();
    assert_eq!(list["keys"][0]["id"], id.as_str(), "{what}: a key made after the restore lists as newest");
    assert!(server.stop().success());
}

#[test]
fn a_round_trip_through_jsonl_and_redb_keeps_users_keys_revocations_buckets_and_audit() {
    let rich = rich_data_file();
    let work = tempfile::tempdir().unwrap();
    let original = export(&rich.dir.data());

    // The original holds what the round trip must carry: otherwise this test proves nothing.
    assert_eq!(original.of_type("user").len(), 3);
    assert_eq!(original.of_type("key").len(), 11);
    let revoked = original.of_type("key").iter().filter(|k| !k["revoked_at"].is_null()).count();
    assert_eq!(revoked, 4, "three revoked keys plus one in its grace period");
    assert!(!original.user_named("carol").unwrap()["disabled_at"].is_null());
    assert!(
        original.of_type("buckets").len() >= 2,
        "rate-limit states were flushed: {:?}",
        original.of_type("buckets")
    );
    assert!(original.of_type("audit").len() >= 14, "audit events: {}", original.of_type("audit").len());

    let redb_backup = work.path().join("backup.redb");
    let jsonl_backup = work.path().join("backup.jsonl");
    let out = backup(&rich.dir.data(), &redb_backup, &["--format", "redb"]);
    assert_ok(&out, "backup --format redb");
    assert!(text(&out.stdout).starts_with("saved 3 users, 11 keys ("), "{}", text(&out.stdout));
    assert_ok(&backup(&rich.dir.data(), &jsonl_backup, &["--format", "jsonl"]), "backup --format jsonl");

    // The redb backup itself, and each import, hold exactly the original.
    assert_same_database(&original, &export(&redb_backup), "the redb backup");
    assert_same_database(
        &original,
        &parse_export(&std::fs::read_to_string(&jsonl_backup).unwrap()),
        "the jsonl backup",
    );

    let from_jsonl = work.path().join("from-jsonl.redb");
    let out = import(&jsonl_backup, &from_jsonl, &[]);
    assert_ok(&out, "import of the jsonl export");
    assert!(text(&out.stdout).starts_with("imported 3 users, 11 keys ("), "{}", text(&out.stdout));
    assert_same_database(&original, &export(&from_jsonl), "jsonl → import → backup");

    let from_redb = work.path().join("from-redb.redb");
    assert_ok(&import(&redb_backup, &from_redb, &[]), "import of the redb backup");
    assert_same_database(&original, &export(&from_redb), "redb → import → backup");

    assert_restored_server_behaves(&rich, &from_jsonl, "imported from jsonl");
    assert_restored_server_behaves(&rich, &from_redb, "imported from redb");
    assert_restored_server_behaves(&rich, &redb_backup, "the redb backup copied into place");
}

// ---------------------------------------------------------------------------------------
// 3. The export holds no secret
// ---------------------------------------------------------------------------------------

#[test]
fn the_jsonl_export_has_a_header_one_record_per_line_and_never_a_secret() {
    let rich = rich_data_file();
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("export.jsonl");
    assert_ok(&backup(&rich.dir.data(), &path, &["--format", "jsonl"]), "jsonl export");
    let raw = std::fs::read_to_string(&path).unwrap();

    for secret in &rich.all_secrets {
        assert!(!raw.contains(secret.as_str()), "the export contains a secret ({}…)", &secret[..8]);
        // Nor its random middle, in case a prefix or suffix was trimmed.
        assert!(!raw.contains(&secret[8..46]), "the export contains the body of a secret ({}…)", &secret[..8]);
    }
    assert!(!raw.contains(PASSWORD), "the export contains a password");
    // `ibp_` only ever appears as a key's 8-character `start`.
    for (at, _) in raw.match_indices("ibp_") {
        let run = raw[at + 4..].chars().take_while(char::is_ascii_alphanumeric).count();
        assert!(run <= 4, "something token-like at byte {at}: {}", &raw[at..(at + 20).min(raw.len())]);
    }

    // One JSON object per line, a header first, nothing else.
    assert!(raw.ends_with('\n'), "the export ends with a newline");
    let lines: Vec<&str> = raw.lines().collect();
    assert!(lines.iter().all(|l| !l.trim().is_empty()), "no blank lines");
    let export = parse_export(&raw);
    assert!(export.header.is_object() && export.records.iter().all(Value::is_object));
    assert_eq!(export.header["format"], "iblueprint-export");
    assert_eq!(export.header["format_version"], 1);
    assert_eq!(export.header["schema_version"], SCHEMA_VERSION);
    assert!(export.header["exported_at"].is_string());
    let counts = &export.header["counts"];
    let revoked = export.of_type("key").iter().filter(|k| !k["revoked_at"].is_null()).count();
    assert_eq!(counts["users"], 3);
    assert_eq!(counts["keys"], export.of_type("key").len());
    assert_eq!(counts["buckets"], export.of_type("buckets").len());
    assert_eq!(counts["audit"], export.of_type("audit").len());
    // The key in its grace period is not revoked yet.
    assert_eq!(counts["revoked"], revoked - 1);
    assert_eq!(
        lines.len(),
        1 + 3 + export.of_type("key").len() + export.of_type("buckets").len() + export.of_type("audit").len()
    );
    for record in &export.records {
        assert!(["user", "key", "buckets", "audit"].contains(&record["type"].as_str().unwrap_or("")), "{record}");
    }

    // Keys carry the blake3 hash of their secret, users an argon2id hash.
    let hashes: HashSet<String> =
        export.of_type("key").iter().map(|k| k["hash"].as_str().unwrap().to_owned()).collect();
    for secret in &rich.all_secrets {
        let hash = blake3::hash(secret.as_bytes()).to_hex().to_string();
        assert!(hashes.contains(&hash), "the key of {}… is in the export by its hash", &secret[..8]);
    }
    for user in export.of_type("user") {
        assert!(user["password_hash"].as_str().unwrap().starts_with("$argon2id$"), "{user}");
    }
}

// ---------------------------------------------------------------------------------------
// 4. --force
// ---------------------------------------------------------------------------------------

#[test]
fn backup_refuses_to_overwrite_an_existing_file_without_force_and_replaces_it_with_force() {
    let (dir, _) = small_data_file();
    let work = tempfile::tempdir().unwrap();
    for format in ["redb", "jsonl"] {
        let out = work.path().join(format!("existing.{format}"));
        let precious = b"an operator's earlier backup, not to be lost\n".to_vec();
        std::fs::write(&out, &precious).unwrap();

        let refused = backup(&dir.data(), &out, &["--format", format]);
        assert_refused(&refused, 2, &["already exists", "--force"], &format!("backup --format {format} onto a file"));
        assert_byte_identical(&out, &precious, "a refused backup");

        let forced = backup(&dir.data(), &out, &["--format", format, "--force"]);
        assert_ok(&forced, &format!("backup --format {format} --force"));
        assert!(text(&forced.stdout).starts_with("saved 1 users, 2 keys (0 revoked)"), "{}", text(&forced.stdout));
        let replaced = std::fs::read(&out).unwrap();
        assert_ne!(replaced, precious, "--force replaces the file");
        match format {
            "redb" => assert!(replaced.starts_with(b"redb"), "the replacement is a redb file"),
            _ => assert!(replaced.starts_with(b"{\"format\":\"iblueprint-export\""), "the replacement is an export"),
        }
        // And it is a complete backup.
        let restored = work.path().join(format!("restored-from-{format}.redb"));
        assert_ok(&import(&out, &restored, &[]), "importing the forced backup");
        assert_same_database(&export(&dir.data()), &export(&restored), "the forced backup");
    }
    // No temporary files left behind.
    let leftovers: Vec<String> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind: {leftovers:?}");
}

// ---------------------------------------------------------------------------------------
// 5. Bad input to import
// ---------------------------------------------------------------------------------------

/// Imports `bad` into a new path and, with --merge, into an existing data file; both must
/// fail with exit 1 and mention `mentions`, the new path must not appear, and the existing
/// file must be byte-identical.
#[track_caller]
fn assert_import_refused(bad: &Path, existing: &Path, mentions: &[&str], what: &str) {
    let fresh = bad.with_file_name(format!("{}-target.redb", bad.file_stem().unwrap().to_string_lossy()));
    let out = import(bad, &fresh, &[]);
    assert_refused(&out, 1, mentions, &format!("{what} (into a new file)"));
    assert!(!fresh.exists(), "{what}: a refused import must not create {}", fresh.display());

    let before = sha(existing);
    let out = import(bad, existing, &["--merge"]);
    assert_refused(&out, 1, mentions, &format!("{what} (--merge into an existing file)"));
    assert_byte_identical(existing, &before, &format!("{what}, refused --merge"));
}

/// The lines of a jsonl export, and its header counts, for editing.
fn export_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(str::to_owned).collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn bump_count(header: &str, field: &str, by: i64) -> String {
    let mut header: Value = serde_json::from_str(header).unwrap();
    let count = header["counts"][field].as_i64().unwrap();
    header["counts"][field] = json!(count + by);
    header.to_string()
}

#[test]
fn bad_input_to_import_is_refused_with_a_precise_message_and_the_target_left_untouched() {
    let (source, _) = small_data_file();
    let work = tempfile::tempdir().unwrap();
    let at = |name: &str| work.path().join(name);
    let good_redb = at("good.redb");
    let good_jsonl = at("good.jsonl");
    assert_ok(&backup(&source.data(), &good_redb, &[]), "redb backup");
    assert_ok(&backup(&source.data(), &good_jsonl, &["--format", "jsonl"]), "jsonl backup");
    // The target of the merges: another installation, stopped.
    let existing = TestDir::new();
    existing.add_user("zed");
    existing.issue_key("zed", &[]);
    // Sanity: the good files do merge into a copy of it.
    let scratch = at("scratch.redb");
    std::fs::copy(existing.data(), &scratch).unwrap();
    assert_ok(&import(&good_jsonl, &scratch, &["--merge"]), "merging the good export into a copy");

    // A redb backup cut short, at several places.
    let bytes = std::fs::read(&good_redb).unwrap();
    for len in [1000, 4096, bytes.len() / 2] {
        let cut = at(&format!("cut-{len}.redb"));
        std::fs::write(&cut, &bytes[..len]).unwrap();
        assert_import_refused(
            &cut,
            &existing.data(),
            &["damaged or truncated"],
            &format!("a redb backup cut to {len} bytes"),
        );
    }

    // Random bytes.
    let random = at("random.bin");
    std::fs::write(&random, noise(64 * 1024)).unwrap();
    assert_import_refused(
        &random,
        &existing.data(),
        &["neither an iblueprint redb backup nor a jsonl export"],
        "random bytes",
    );

    // A redb backup from a newer schema.
    let newer = at("newer.redb");
    std::fs::copy(&good_redb, &newer).unwrap();
    set_schema_version(&newer, 99);
    assert_import_refused(
        &newer,
        &existing.data(),
        &["schema version 99", &format!("newer than this binary knows ({SCHEMA_VERSION})")],
        "a redb backup of schema 99",
    );

    // A redb backup with one undecodable key record: the message names table and record.
    let corrupt = at("corrupt-record.redb");
    std::fs::copy(&good_redb, &corrupt).unwrap();
    let victim = export(&good_redb).of_type("key")[0]["id"].as_str().unwrap().to_owned();
    {
        let db = redb::Database::create(&corrupt).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<&str, &[u8]>::new("keys"))
            .unwrap()
            .insert(victim.as_str(), [1u8, 0xFF, 0xFF, 0xFF].as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    assert_import_refused(&corrupt, &existing.data(), &["keys", &victim], "a redb backup with a corrupt key record");

    let lines = export_lines(&good_jsonl);
    assert!(
        lines.len() >= 5 && lines[1].contains("\"type\":\"user\"") && lines[2].contains("\"type\":\"key\""),
        "{lines:?}"
    );

    // One garbled line: line 3.
    let garbled = at("garbled.jsonl");
    let mut edited = lines.clone();
    edited[2] = edited[2][..edited[2].len() / 2].to_owned();
    write_lines(&garbled, &edited);
    assert_import_refused(&garbled, &existing.data(), &["line 3"], "a jsonl with line 3 cut in half");
    let wrong_field = at("wrong-field.jsonl");
    let mut edited = lines.clone();
    edited[2] = edited[2].replace("\"seq\":", "\"sequence\":");
    write_lines(&wrong_field, &edited);
    assert_import_refused(&wrong_field, &existing.data(), &["line 3"], "a jsonl whose line 3 misses a field");

    // Header counts that do not match the lines.
    let miscounted = at("miscounted.jsonl");
    let mut edited = lines.clone();
    edited[0] = bump_count(&edited[0], "keys", 1);
    write_lines(&miscounted, &edited);
    // Said in words, not as a Rust struct.
    assert_import_refused(
        &miscounted,
        &existing.data(),
        &["header promises", " keys (", "but the file holds"],
        "a jsonl with wrong header counts",
    );
    let short = at("short.jsonl");
    write_lines(&short, &lines[..lines.len() - 1]);
    assert_import_refused(&short, &existing.data(), &["header promises"], "a jsonl missing its last line");

    // The same key twice (header adjusted so only the duplicate is wrong).
    let key_line = lines.iter().find(|l| l.contains("\"type\":\"key\"")).unwrap();
    let key: Value = serde_json::from_str(key_line).unwrap();
    let key_id = key["id"].as_str().unwrap();
    let duplicate = at("duplicate.jsonl");
    let mut edited = lines.clone();
    edited[0] = bump_count(&edited[0], "keys", 1);
    let position = edited.iter().position(|l| l == key_line).unwrap();
    edited.insert(position + 1, key_line.clone());
    write_lines(&duplicate, &edited);
    assert_import_refused(
        &duplicate,
        &existing.data(),
        &[&format!("key id {key_id} appears twice")],
        "a jsonl with a duplicate key id",
    );

    // A key whose user is missing.
    let user: Value = serde_json::from_str(&lines[1]).unwrap();
    let orphaned = at("orphaned.jsonl");
    let mut edited = lines.clone();
    edited[0] = bump_count(&edited[0], "users", -1);
    edited.remove(1);
    write_lines(&orphaned, &edited);
    assert_import_refused(
        &orphaned,
        &existing.data(),
        &[&format!("belongs to user {}, who is not in the backup", user["id"].as_str().unwrap())],
        "a jsonl whose keys belong to a missing user",
    );

    // A record that decodes as JSON but not as a valid key: a scope outside the grammar.
    let bad_scope = at("bad-scope.jsonl");
    let mut edited = lines.clone();
    let mut key: Value = serde_json::from_str(&edited[2]).unwrap();
    key["scopes"] = json!(["NOT A SCOPE"]);
    edited[2] = key.to_string();
    write_lines(&bad_scope, &edited);
    assert_import_refused(&bad_scope, &existing.data(), &["line 3"], "a jsonl whose line 3 holds an invalid scope");

    // A jsonl export from a newer schema.
    let newer_jsonl = at("newer.jsonl");
    let mut edited = lines.clone();
    let mut header: Value = serde_json::from_str(&edited[0]).unwrap();
    header["schema_version"] = json!(99);
    edited[0] = header.to_string();
    write_lines(&newer_jsonl, &edited);
    assert_import_refused(
        &newer_jsonl,
        &existing.data(),
        &["line 1", "schema version 99", &format!("newer than this binary knows ({SCHEMA_VERSION})")],
        "a jsonl export of schema 99",
    );

    // An empty file.
    let empty = at("empty.jsonl");
    std::fs::write(&empty, b"").unwrap();
    assert_import_refused(&empty, &existing.data(), &["empty"], "an empty file");
}

#[test]
fn a_redb_backup_cut_inside_its_header_is_refused_as_damaged_or_truncated() {
    let (source, _) = small_data_file();
    let work = tempfile::tempdir().unwrap();
    let good = work.path().join("good.redb");
    assert_ok(&backup(&source.data(), &good, &[]), "redb backup");
    let cut = work.path().join("cut-100.redb");
    std::fs::write(&cut, &std::fs::read(&good).unwrap()[..100]).unwrap();
    let existing = TestDir::new();
    existing.add_user("zed");
    // Today this says "cannot open the data file cut-100.redb: failed to fill whole buffer":
    // it calls the backup "the data file" and does not say that it is cut short.
    assert_import_refused(&cut, &existing.data(), &["damaged or truncated"], "a redb backup cut to 100 bytes");
}

#[test]
fn a_redb_header_followed_by_noise_is_refused_with_a_message_not_a_panic() {
    let (source, _) = small_data_file();
    let work = tempfile::tempdir().unwrap();
    let good = work.path().join("good.redb");
    assert_ok(&backup(&source.data(), &good, &[]), "redb backup");
    let bytes = std::fs::read(&good).unwrap();
    let mangled = work.path().join("mangled.redb");
    let mut header_then_noise = bytes[..512].to_vec();
    header_then_noise.extend(noise(bytes.len() - 512));
    std::fs::write(&mangled, header_then_noise).unwrap();
    let existing = TestDir::new();
    existing.add_user("zed");
    // Today redb panics ("internal error: entered unreachable code" in btree_cursor.rs)
    // while `ReadOnlyStore::open` lists the tables, and the process dies with a backtrace.
    let out = import(&mangled, &work.path().join("target.redb"), &[]);
    let stderr = text(&out.stderr);
    assert!(
        !stderr.contains("panicked at"),
        "import panicked (exit {:?}) instead of refusing the file with a message: {}",
        out.status.code(),
        stderr.lines().take(3).collect::<Vec<_>>().join(" | ")
    );
    assert_import_refused(&mangled, &existing.data(), &["damaged or truncated"], "a redb header followed by noise");
}

#[test]
fn a_redb_backup_with_one_flipped_bit_in_a_key_record_is_refused_not_imported() {
    let (source, root) = small_data_file();
    let work = tempfile::tempdir().unwrap();
    let good = work.path().join("good.redb");
    assert_ok(&backup(&source.data(), &good, &[]), "redb backup");
    let hash = blake3::hash(root.as_bytes());
    let mut bytes = std::fs::read(&good).unwrap();
    let places: Vec<usize> =
        bytes.windows(32).enumerate().filter(|(_, w)| *w == hash.as_bytes()).map(|(i, _)| i).collect();
    assert!(!places.is_empty(), "the root key's hash is stored in the backup");
    // Flip one bit of the stored hash wherever it is (the key record and its index entry).
    for at in &places {
        bytes[at + 5] ^= 0x01;
    }
    let damaged = work.path().join("damaged.redb");
    std::fs::write(&damaged, &bytes).unwrap();
    // The damage is detectable: redb's own integrity check (on a copy) finds it.
    let copy = work.path().join("copy.redb");
    std::fs::copy(&damaged, &copy).unwrap();
    let verdict = redb::Database::open(&copy).and_then(|mut db| db.check_integrity());
    assert!(!matches!(verdict, Ok(true)), "redb's integrity check should catch a flipped bit: {verdict:?}");

    let target = work.path().join("restored.redb");
    let out = import(&damaged, &target, &[]);
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success() && !target.exists(),
        "a damaged redb backup must not be imported (issue 5: import validates integrity first), yet it was: \
         exit {:?}, stdout {:?}; the restored key {}… would no longer verify",
        out.status.code(),
        text(&out.stdout),
        &root[..8]
    );
    assert!(
        stderr.contains("damaged") || stderr.contains("integrity"),
        "the message says the backup is damaged: {stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// 6. Import into an existing file, dry runs, and a running server
// ---------------------------------------------------------------------------------------

#[test]
fn import_refuses_an_existing_file_without_merge_writes_nothing_on_a_dry_run_and_refuses_a_held_file() {
    let (source, _) = small_data_file();
    let work = tempfile::tempdir().unwrap();
    let jsonl = work.path().join("backup.jsonl");
    assert_ok(&backup(&source.data(), &jsonl, &["--format", "jsonl"]), "jsonl backup");

    // An existing data file without --merge: usage error, untouched.
    let (existing, existing_root) = small_data_file();
    let before = sha(&existing.data());
    let out = import(&jsonl, &existing.data(), &[]);
    assert_refused(&out, 2, &["already exists", "--merge"], "import onto an existing data file");
    assert_byte_identical(&existing.data(), &before, "import without --merge");

    // A dry run reports and writes nothing, not even the folder.
    let target = work.path().join("new-folder").join("restored.redb");
    let out = import(&jsonl, &target, &["--dry-run"]);
    assert_ok(&out, "import --dry-run");
    assert!(
        text(&out.stdout).starts_with("dry run: would have imported 1 users, 2 keys (0 revoked)"),
        "{}",
        text(&out.stdout)
    );
    assert!(!target.exists(), "a dry run must not create the data file");
    assert!(!target.parent().unwrap().exists(), "a dry run must not create the data file's folder");

    // While a server holds the target, every merge is refused, saying so, and the server
    // carries on (SPEC §1: import needs the server stopped): one that would write, its dry
    // run (which would otherwise promise what the real run refuses), and one that would add
    // nothing, dry or not.
    let other = TestDir::new();
    other.add_user("carol");
    other.issue_key("carol", &[]);
    let carol = work.path().join("carol.jsonl");
    assert_ok(&backup(&other.data(), &carol, &["--format", "jsonl"]), "carol's jsonl backup");
    let own = work.path().join("own.jsonl");
    assert_ok(&backup(&existing.data(), &own, &["--format", "jsonl"]), "the target's own jsonl backup");
    let server = existing.start();
    let path = existing.data().display().to_string();
    for (file, extra, what) in [
        (&carol, &["--merge"][..], "import --merge while the server runs"),
        (&carol, &["--merge", "--dry-run"], "import --merge --dry-run while the server runs"),
        (&own, &["--merge"], "import --merge that adds nothing while the server runs"),
        (&own, &["--merge", "--dry-run"], "import --merge --dry-run that adds nothing while the server runs"),
    ] {
        let out = import(file, &existing.data(), extra);
        assert_refused(&out, 1, &["held by a running iblueprint server", "stop the server", &path], what);
        assert!(text(&out.stdout).is_empty(), "{what} reports nothing done: {}", text(&out.stdout));
    }
    assert_verifies(&server, &existing_root, "the running server's key after a refused import");
    assert!(server.stop().success());

    // Stopped, the same dry run goes through.
    let out = import(&carol, &existing.data(), &["--merge", "--dry-run"]);
    assert_ok(&out, "import --merge --dry-run with the server stopped");
    assert!(text(&out.stdout).starts_with("dry run: would have merged 1 users, 1 keys"), "{}", text(&out.stdout));
}

#[test]
fn a_dry_run_merge_leaves_the_existing_data_file_byte_identical() {
    let (source, _) = small_data_file();
    let work = tempfile::tempdir().unwrap();
    let jsonl = work.path().join("backup.jsonl");
    assert_ok(&backup(&source.data(), &jsonl, &["--format", "jsonl"]), "jsonl backup");
    let existing = TestDir::new();
    existing.add_user("zed");

    let before = sha(&existing.data());
    let out = import(&jsonl, &existing.data(), &["--merge", "--dry-run"]);
    assert_ok(&out, "import --merge --dry-run");
    assert!(text(&out.stdout).starts_with("dry run: would have merged 1 users, 2 keys"), "{}", text(&out.stdout));
    assert_byte_identical(&existing.data(), &before, "import --merge --dry-run (it must write nothing)");
}

// ---------------------------------------------------------------------------------------
// 7. Merge
// ---------------------------------------------------------------------------------------

#[test]
fn a_merge_adds_missing_users_and_keys_and_a_username_conflict_refuses_all_of_it() {
    let work = tempfile::tempdir().unwrap();
    // The target: alice and her key.
    let (target, alice_key) = small_data_file();
    // The source: a copy of the target plus carol and her key.
    let source = dir_with_copy_of(&target.data());
    source.add_user("carol");
    let carol_key = source.issue_key("carol", &["keys:read"]);
    let source_backup = work.path().join("source.jsonl");
    assert_ok(&backup(&source.data(), &source_backup, &["--format", "jsonl"]), "source backup");
    let incoming = parse_export(&std::fs::read_to_string(&source_backup).unwrap());
    let before = export(&target.data());

    let out = import(&source_backup, &target.data(), &["--merge"]);
    assert_ok(&out, "import --merge");
    assert!(text(&out.stdout).starts_with("merged 1 users, 1 keys (0 revoked)"), "{}", text(&out.stdout));
    let after = export(&target.data());
    // What the target had is unchanged.
    for record in before.records.iter().filter(|r| r["type"] != "audit") {
        assert!(after.records.contains(record), "a merge must keep what the data file had: {record}");
    }
    // carol and her key arrived whole; her key got a sequence number after the file's own.
    let carol = incoming.user_named("carol").unwrap();
    assert_eq!(after.user_named("carol"), Some(carol), "carol arrived as she was");
    let carol_key_record = incoming.of_type("key").into_iter().find(|k| k["user_id"] == carol["id"]).unwrap();
    let mut merged_key = after.key(carol_key_record["id"].as_str().unwrap()).expect("carol's key arrived").clone();
    let max_before = before.of_type("key").iter().map(|k| k["seq"].as_u64().unwrap()).max().unwrap();
    assert!(merged_key["seq"].as_u64().unwrap() > max_before, "a merged key lists as newest");
    merged_key["seq"] = carol_key_record["seq"].clone();
    assert_eq!(&merged_key, carol_key_record, "carol's key arrived with every other field as it was");
    assert_eq!(after.of_type("user").len(), 2);
    assert_eq!(after.of_type("key").len(), 3);

    // Merging the same backup again adds nothing.
    let out = import(&source_backup, &target.data(), &["--merge"]);
    assert_ok(&out, "the same merge again");
    assert!(text(&out.stdout).starts_with("merged 0 users, 0 keys"), "{}", text(&out.stdout));

    let server = target.start();
    assert_verifies(&server, &carol_key, "carol's merged key");
    assert_verifies(&server, &alice_key, "alice's own key");
    assert!(server.stop().success());

    // Another installation with its own carol (another user id) and dave.
    let other = TestDir::new();
    other.add_user("dave");
    other.add_user("carol");
    other.issue_key("dave", &[]);
    let other_backup = work.path().join("other.redb");
    assert_ok(&backup(&other.data(), &other_backup, &[]), "other backup");
    let other_carol = export(&other.data()).user_named("carol").unwrap()["id"].as_str().unwrap().to_owned();
    let target_carol = carol["id"].as_str().unwrap();

    let before = sha(&target.data());
    let before_records = export(&target.data());
    let out = import(&other_backup, &target.data(), &["--merge"]);
    let stderr = assert_refused(&out, 1, &["conflict", "nothing was imported"], "a merge with a username conflict");
    assert!(
        stderr.contains(&format!(
            "username carol is user {other_carol} in the backup but user {target_carol} in the data file"
        )),
        "the conflict is listed with both ids: {stderr}"
    );
    assert!(!stderr.contains("dave"), "only conflicts are listed: {stderr}");
    assert_same_database(&before_records, &export(&target.data()), "the data file after a refused merge");
    assert_byte_identical(&target.data(), &before, "a merge refused for a conflict");
}

/// Writes `lines` with the record at `at` replaced by `record` changed by `edit`, as `name`
/// in `dir`.
fn with_record_edited(dir: &Path, name: &str, lines: &[String], at: usize, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let mut record: Value = serde_json::from_str(&lines[at]).unwrap();
    edit(&mut record);
    let mut lines = lines.to_vec();
    lines[at] = record.to_string();
    let path = dir.join(name);
    write_lines(&path, &lines);
    path
}

#[test]
fn a_merge_refuses_a_key_whose_fixed_content_differs_but_not_one_whose_name_limit_or_usage_does() {
    let (target, _) = small_data_file();
    let work = tempfile::tempdir().unwrap();
    let original = work.path().join("original.jsonl");
    assert_ok(&backup(&target.data(), &original, &["--format", "jsonl"]), "jsonl backup");
    let lines = export_lines(&original);
    let key_lines: Vec<usize> =
        (0..lines.len()).filter(|&i| serde_json::from_str::<Value>(&lines[i]).unwrap()["type"] == "key").collect();
    let (at, other_at) = (key_lines[0], key_lines[1]);
    let id = serde_json::from_str::<Value>(&lines[at]).unwrap()["id"].as_str().unwrap().to_owned();
    let other_id = serde_json::from_str::<Value>(&lines[other_at]).unwrap()["id"].as_str().unwrap().to_owned();
    let before = sha(&target.data());

    // Each field a key is created with and that nothing changes afterwards, changed alone
    // with the id and hash kept: the whole merge is refused, naming the key and the field.
    for (field, value) in [
        ("scopes", json!(["billing:read"])),
        ("created_at", json!("2020-01-01T00:00:00Z")),
        ("expires_at", json!("2099-01-01T00:00:00Z")),
        ("start", json!("ibp_zzzz")),
        ("end", json!("zzzz")),
        ("limit_id", json!(other_id)),
    ] {
        let edited = with_record_edited(work.path(), &format!("{field}.jsonl"), &lines, at, |r| r[field] = value);
        for extra in [&["--merge"][..], &["--merge", "--dry-run"]] {
            let what = format!("import {} with another {field}", extra.join(" "));
            let stderr = assert_refused(
                &import(&edited, &target.data(), extra),
                1,
                &["1 conflict(s)", "nothing was imported", &id, field],
                &what,
            );
            assert_eq!(stderr.lines().count(), 2, "{what}: one line, then the one conflict: {stderr:?}");
        }
        assert_byte_identical(&target.data(), &before, &format!("a merge refused for another {field}"));
    }

    // Two keys with changed scopes: both are listed, in one refusal.
    let one = with_record_edited(work.path(), "one.jsonl", &lines, at, |r| r["scopes"] = json!(["billing:read"]));
    let both = with_record_edited(work.path(), "both.jsonl", &export_lines(&one), other_at, |r| {
        r["created_at"] = json!("2020-01-01T00:00:00Z");
    });
    let stderr = assert_refused(&import(&both, &target.data(), &["--merge"]), 1, &["2 conflict(s)"], "two conflicts");
    assert!(stderr.contains(&format!("key {id} ")) && stderr.contains(&format!("key {other_id} ")), "{stderr}");
    assert_byte_identical(&target.data(), &before, "a merge refused for two conflicts");

    // What changes in a key's life (its name, rate limit, usage counters, its place in the
    // file's order) is no conflict: the merge adds nothing and the file keeps its own.
    let lived = with_record_edited(work.path(), "lived.jsonl", &lines, at, |r| {
        r["name"] = json!("renamed");
        r["rate_limit"] = json!({"per_hour": 5, "per_day": null});
        r["request_count"] = json!(99);
        r["last_used_at"] = json!("2030-01-01T00:00:00Z");
        r["seq"] = json!(1000);
    });
    let out = import(&lived, &target.data(), &["--merge"]);
    assert_ok(&out, "a merge of a key whose name, limit and usage changed");
    assert!(text(&out.stdout).starts_with("merged 0 users, 0 keys"), "{}", text(&out.stdout));
    assert_byte_identical(&target.data(), &before, "a merge that adds nothing");
}

// ---------------------------------------------------------------------------------------
// 8. A data file from a newer binary
// ---------------------------------------------------------------------------------------

#[test]
fn backup_of_a_data_file_with_a_newer_schema_fails_clearly_and_writes_nothing() {
    let (dir, _) = small_data_file();
    set_schema_version(&dir.data(), 99);
    let before = sha(&dir.data());
    let work = tempfile::tempdir().unwrap();
    for format in ["redb", "jsonl"] {
        let out = work.path().join(format!("backup.{format}"));
        let output = backup(&dir.data(), &out, &["--format", format]);
        assert_refused(
            &output,
            1,
            &["schema version 99", &format!("newer than this binary knows ({SCHEMA_VERSION})"), "upgrade iblueprint"],
            &format!("backup --format {format} of a schema-99 data file"),
        );
        assert!(!out.exists(), "no backup file is written");
    }
    assert_byte_identical(&dir.data(), &before, "a refused backup");
    assert!(std::fs::read_dir(work.path()).unwrap().next().is_none(), "no temporary files are left behind");

    // Nor does import merge into it.
    let (source, _) = small_data_file();
    let jsonl = work.path().join("source.jsonl");
    assert_ok(&backup(&source.data(), &jsonl, &["--format", "jsonl"]), "source backup");
    let output = import(&jsonl, &dir.data(), &["--merge"]);
    assert_refused(&output, 1, &["schema version 99"], "merging into a schema-99 data file");
    assert_byte_identical(&dir.data(), &before, "a refused merge into a newer data file");
}

// ---------------------------------------------------------------------------------------
// 9. The schema-1 fixture
// ---------------------------------------------------------------------------------------

#[test]
fn the_schema_1_fixture_imports_and_a_server_on_it_verifies_its_live_key_and_refuses_its_revoked_one() {
    let fixture = fixtures().join("schema-v1.redb");
    let secrets: BTreeMap<String, String> = std::fs::read_to_string(fixtures().join("schema-v1.keys"))
        .expect("tests/fixtures/schema-v1.keys")
        .lines()
        .map(|l| {
            let (role, secret) = l.split_once(' ').expect("`role secret` lines");
            (role.to_owned(), secret.to_owned())
        })
        .collect();
    let (live, revoked) = (&secrets["live"], &secrets["revoked"]);
    let pristine = sha(&fixture);
    let work = tempfile::tempdir().unwrap();

    // It is what it says it is.
    let probe = work.path().join("probe.redb");
    std::fs::copy(&fixture, &probe).unwrap();
    assert_eq!(read_schema_version(&probe), Some(1), "schema-v1.redb must stay a schema-1 file; never regenerate it");

    // It imports.
    let imported = work.path().join("imported.redb");
    let out = import(&fixture, &imported, &[]);
    assert_ok(&out, "importing the schema-1 fixture");
    assert!(
        text(&out.stdout).starts_with("imported 2 users, 5 keys (1 revoked), 1 rate-limit states and 8 audit events"),
        "{}",
        text(&out.stdout)
    );
    assert_byte_identical(&fixture, &pristine, "the fixture, after being imported");
    let contents = export(&imported);
    assert_eq!(
        contents.of_type("user").iter().map(|u| u["username"].as_str().unwrap()).collect::<Vec<_>>(),
        ["bob", "alice"],
        "users, by id"
    );

    // A server on a copy of the fixture itself, and one on the import.
    for (what, data) in [("a copy of the fixture", &fixture), ("the imported fixture", &imported)] {
        let dir = dir_with_copy_of(data);
        let server = dir.start();
        let me: Value = assert_verifies(&server, live, &format!("{what}: the live key")).json().unwrap();
        assert_eq!(me["user"]["username"], "bob", "{what}");
        assert_eq!(me["key"]["name"], "deploy", "{what}");
        assert_revoked(&server, revoked, &format!("{what}: the revoked key"));
        assert!(server.stop().success());
    }
    assert_byte_identical(&fixture, &pristine, "the fixture, at the end");
}
