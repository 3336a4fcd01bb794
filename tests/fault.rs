//! Fault injection below the store (issue 7): the real HTTP server, in this process, over a
//! real redb file whose disk starts failing on cue ([`FlakyBackend`]: writes fail after N).
//!
//! What is shown, sweeping the fault over every write of a commit in turn:
//! - once the disk fails, every change answers 503 `storage_unavailable` (a problem body
//!   without a secret or the cause), and no change is acknowledged after the first failure;
//! - after a reopen (a new store on the same file: redb refuses every later write, and new
//!   reads, after one I/O error) the file holds every acknowledged change;
//! - of the refused changes, all but the one the fault struck mid-commit never began and are
//!   absent; the struck one is there wholly or not at all (a rotation never half), and is
//!   there when the failing write comes after the commit's last fsync (redb 4.6 writes the
//!   header once more after it). So 503 means "unconfirmed", not "not made"; the sweep
//!   prints how often each happened;
//! - during the fault, verification of a key served from the current view still answers,
//!   reads that need the file answer 503; `iblueprint check` passes on the file afterwards;
//! - a fault during the rate-limit flush does not crash the server, limits stay enforced from
//!   memory, and the file keeps the last flush that succeeded.
//!
//! Changes go through HTTP; the checks afterwards read the store directly, which is the
//! strongest view of what is in the file.

#[path = "api/helpers.rs"]
mod helpers;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

use iblueprint::domain::{KeyId, Timestamp, Token};
use iblueprint::service::{Service, ServiceSettings};
use iblueprint::store::fault::{FaultSwitch, FlakyBackend};
use iblueprint::store::{Reads, Store};

use helpers::{TestDir, assert_problem};

/// The HTTP server of this crate, run in a thread of the test over a given service.
struct InProcess {
    base: String,
    client: Client,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    service: Option<Arc<Service>>,
}

impl InProcess {
    fn start(service: Service) -> InProcess {
        let service = Arc::new(service);
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let shared = Arc::clone(&service);
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let options = iblueprint::http::ServerOptions {
                    listen: "127.0.0.1:0".parse().expect("addr"),
                    workers: Some(2),
                    pages: iblueprint::http::pages::PagesConfig { public_url: None },
                    tls: None,
                    metrics: None,
                    // The defaults an operator gets, whatever knobs they grow.
                    http: iblueprint::config::Config::load(&Default::default(), &|_| None).expect("defaults").http,
                };
                iblueprint::http::serve(shared, options, move |bound| {
                    let _ = bound_tx.send((bound.api[0], bound.handle.clone()));
                })
                .await
            })
        });
        let (addr, handle) =
            bound_rx.recv_timeout(Duration::from_secs(20)).expect("the in-process server did not bind");
        InProcess {
            base: format!("http://{addr}"),
            client: Client::new(),
            handle,
            thread: Some(thread),
            service: Some(service),
        }
    }

    fn service(&self) -> &Service {
        self.service.as_ref().expect("running")
    }

    fn get(&self, path: &str, key: &str) -> Response {
        self.client.get(format!("{}{path}", self.base)).bearer_auth(key).send().expect("request")
    }

    fn post(&self, path: &str, key: &str, body: &Value) -> Response {
        self.client.post(format!("{}{path}", self.base)).bearer_auth(key).json(body).send().expect("request")
    }

    /// Stops the server and waits until its workers let go of the service, so the store can
    /// be dropped and the file opened again.
    fn stop(mut self) -> Service {
        // The stop command is sent when `stop` is called; the server's future then ends and
        // the thread returns, which `join` waits for.
        drop(self.handle.stop(true));
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread").expect("server result");
        }
        let mut service = self.service.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Arc::try_unwrap(service) {
                Ok(service) => return service,
                Err(shared) if Instant::now() < deadline => {
                    service = shared;
                    std::thread::yield_now();
                }
                Err(_) => panic!("the server's workers still hold the service after 10 s"),
            }
        }
    }
}

fn open_flaky(path: &Path) -> (Service, FaultSwitch) {
    let (backend, switch) = FlakyBackend::open(path).expect("open the file");
    let store = Store::open_with_backend(path, backend).expect("open the store on the flaky disk");
    (Service::new(store, ServiceSettings::default()), switch)
}

fn now() -> Timestamp {
    Timestamp::from_millis(iblueprint::clock::now_millis())
}

/// A refused change: 503 `storage_unavailable`, a problem body that gives nothing away.
#[track_caller]
fn assert_refused(response: Response, what: &str) {
    let status = response.status().as_u16();
    assert_eq!(status, 503, "{what}: expected 503 storage_unavailable, got {status}");
    let body = assert_problem(response, 503, "storage_unavailable");
    let text = body.to_string();
    assert!(!text.contains("ibp_"), "{what}: the problem body mentions a token: {text}");
    assert!(!text.contains("injected"), "{what}: the problem body leaks the cause: {text}");
}

/// A refused change, as far as the test needs to find it in the file.
#[derive(Debug, Clone)]
enum Refused {
    Create { name: String },
    Revoke { id: String },
    Rotate { id: String },
}

/// What the API acknowledged, and what it refused, across all rounds.
#[derive(Default)]
struct Ledger {
    /// key id → (secret, revoked?) for every key whose creation or rotation was acknowledged
    /// (the secret is unknown for a refused change that turned out durable).
    acked: BTreeMap<String, (Option<String>, bool)>,
    /// Names of keys whose creation was refused.
    refused_names: Vec<String>,
    /// Keys whose revocation or rotation was refused (and which nothing later revoked).
    refused_targets: Vec<String>,
    /// How reads went during a fault, for the report: (ok, 503).
    reads: (u32, u32),
    /// Refused changes found in the file all the same (see `resolve_first_refused`).
    durable_despite_503: u32,
}

impl Ledger {
    fn live(&self) -> Vec<String> {
        self.acked.iter().filter(|(_, (_, revoked))| !revoked).map(|(id, _)| id.clone()).collect()
    }
}

/// One change during the fault: create, revoke or rotate. `None` if acknowledged.
fn change(server: &InProcess, root: &str, ledger: &mut Ledger, round: u64, step: usize) -> Option<Refused> {
    let live: Vec<String> = ledger.live();
    match step % 3 {
        0 => {
            let name = format!("during-{round}-{step}");
            let response = server.post("/v1/keys", root, &json!({"name": name}));
            if response.status() == 201 {
                let body: Value = response.json().expect("json");
                let id = body["key"]["id"].as_str().expect("id").to_owned();
                ledger.acked.insert(id, (body["secret"].as_str().map(str::to_owned), false));
                return None;
            }
            assert_refused(response, &format!("round {round}: create {name}"));
            Some(Refused::Create { name })
        }
        1 => {
            let id = live.first().expect("a live key").clone();
            let response = server.post(&format!("/v1/keys/{id}/revoke"), root, &json!({}));
            if response.status() == 200 {
                ledger.acked.get_mut(&id).expect("known").1 = true;
                return None;
            }
            assert_refused(response, &format!("round {round}: revoke {id}"));
            Some(Refused::Revoke { id })
        }
        _ => {
            let id = live.last().expect("a live key").clone();
            let response = server.post(&format!("/v1/keys/{id}/rotate"), root, &json!({}));
            if response.status() == 201 {
                let body: Value = response.json().expect("json");
                ledger.acked.get_mut(&id).expect("known").1 = true;
                let new = body["key"]["id"].as_str().expect("id").to_owned();
                ledger.acked.insert(new, (body["secret"].as_str().map(str::to_owned), false));
                return None;
            }
            assert_refused(response, &format!("round {round}: rotate {id}"));
            Some(Refused::Rotate { id })
        }
    }
}

/// The change during which the disk failed: it is in the file wholly or not at all. Wholly
/// happens when the failing write comes after the commit's last fsync (redb 4.6 writes the
/// header once more after it and reports that failure): the change is durable although it
/// was answered 503. Returns whether it is there, and from now on the ledger expects it.
fn resolve_first_refused(path: &Path, ledger: &mut Ledger, refused: Refused, round: u64) -> bool {
    let store = Store::open(path).expect("reopen");
    let read = store.read().expect("read");
    let key = |id: &str| read.key(&KeyId::parse(id).expect("id")).expect("read").expect("key");
    let any_id = ledger.acked.keys().next().expect("a key").clone();
    let all = read.user_keys(&key(&any_id).user_id, None, usize::MAX).expect("keys");
    let unknown = |name: &str| -> Vec<String> {
        all.iter()
            .filter(|k| k.name.as_str() == name && !ledger.acked.contains_key(k.id.as_str()))
            .map(|k| k.id.to_string())
            .collect()
    };
    let present = match &refused {
        Refused::Create { name } => {
            let new = unknown(name);
            assert!(new.len() <= 1, "round {round}: the refused create {name} is in the file {} times", new.len());
            new.first().inspect(|id| drop(ledger.acked.insert((*id).clone(), (None, false)))).is_some()
        }
        Refused::Revoke { id } => {
            let revoked = key(id).revoked_at.is_some();
            if revoked {
                ledger.acked.get_mut(id).expect("known").1 = true;
            }
            revoked
        }
        Refused::Rotate { id } => {
            let revoked = key(id).revoked_at.is_some();
            let new = unknown(key(id).name.as_str());
            assert_eq!(
                usize::from(revoked),
                new.len(),
                "round {round}: the refused rotation of {id} is half in the file (old revoked: {revoked}, successors: {new:?})"
            );
            if let Some(new) = new.first() {
                ledger.acked.get_mut(id).expect("known").1 = true;
                ledger.acked.insert(new.clone(), (None, false));
            }
            revoked
        }
    };
    if !present {
        remember_refused(ledger, refused);
    }
    present
}

fn remember_refused(ledger: &mut Ledger, refused: Refused) {
    match refused {
        Refused::Create { name } => ledger.refused_names.push(name),
        Refused::Revoke { id } | Refused::Rotate { id } => ledger.refused_targets.push(id),
    }
}

/// The file holds every acknowledged change and no refused one.
fn assert_file_matches(path: &Path, root_id: &str, ledger: &Ledger, round: u64) {
    let store = Store::open(path).expect("reopen on the plain file backend");
    let read = store.read().expect("read");
    for (id, (secret, revoked)) in &ledger.acked {
        let key = read.key(&KeyId::parse(id).expect("id")).expect("read key");
        let key = key.unwrap_or_else(|| panic!("round {round}: acknowledged key {id} is missing after the reopen"));
        assert_eq!(key.revoked_at.is_some(), *revoked, "round {round}: revocation of {id} disagrees with the ack");
        let Some(secret) = secret else { continue };
        let token = Token::parse(secret).expect("token");
        let found = store.key_and_owner(&token.hash()).expect("lookup");
        assert_eq!(found.map(|(k, _)| k.id.to_string()), Some(id.clone()), "round {round}: {id} must verify");
    }
    for id in &ledger.refused_targets {
        let key = read.key(&KeyId::parse(id).expect("id")).expect("read key").expect("target exists");
        let acked_revoked = ledger.acked.get(id).is_some_and(|(_, revoked)| *revoked);
        assert_eq!(
            key.revoked_at.is_some(),
            acked_revoked,
            "round {round}: a refused revoke/rotate of {id} left its mark in the file"
        );
    }
    let owner = read.key(&KeyId::parse(root_id).expect("id")).expect("root").expect("root key").user_id;
    let all = read.user_keys(&owner, None, usize::MAX).expect("keys");
    for name in &ledger.refused_names {
        assert!(all.iter().all(|k| k.name.as_str() != name), "round {round}: refused create {name} is in the file");
    }
    assert_eq!(
        all.len(),
        1 + ledger.acked.len(),
        "round {round}: the file must hold the root key and the acknowledged keys, nothing else"
    );
    drop(read);
    drop(store);
    let report = iblueprint::store::check::check_file(path, now()).expect("check");
    assert!(report.problems.is_empty(), "round {round}: check found {:?}", report.problems);
}

#[test]
fn a_failing_disk_gets_503s_no_half_change_and_a_reopen_keeps_every_acknowledged_one() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let root = dir.issue_key("alice", &["keys:read", "keys:write"]);
    let path = dir.data();
    let root_id = {
        let store = Store::open(&path).expect("open");
        let token = Token::parse(&root).expect("token");
        store.key_and_owner(&token.hash()).expect("lookup").expect("root").0.id.to_string()
    };
    let mut ledger = Ledger::default();
    let mut tripped_rounds = 0;
    // Each round lets a few more writes through before the disk fails, so the fault lands
    // on every write of a commit in turn, and some rounds get a change or two in first.
    for allowed in 0..28u64 {
        let (service, switch) = open_flaky(&path);
        let server = InProcess::start(service);
        let name = format!("before-{allowed}");
        let response = server.post("/v1/keys", &root, &json!({"name": name}));
        assert_eq!(response.status(), 201, "round {allowed}: a change before the fault");
        let body: Value = response.json().expect("json");
        ledger.acked.insert(
            body["key"]["id"].as_str().expect("id").to_owned(),
            (body["secret"].as_str().map(str::to_owned), false),
        );

        switch.arm(allowed);
        let mut refused: Vec<Refused> = Vec::new();
        for step in 0..6 {
            let outcome = change(&server, &root, &mut ledger, allowed, step);
            assert!(
                refused.is_empty() || outcome.is_some(),
                "round {allowed}: a change was acknowledged after an earlier one failed on the disk"
            );
            refused.extend(outcome);
        }
        if !refused.is_empty() {
            tripped_rounds += 1;
            assert!(switch.tripped(), "round {allowed}: refused without a disk fault");
            // Reads: the key list and verification of a key acknowledged earlier.
            for response in [
                server.get("/v1/keys?limit=200", &root),
                server.get(
                    "/v1/me",
                    ledger.acked.values().find_map(|(s, r)| s.as_ref().filter(|_| !r)).expect("a live key"),
                ),
            ] {
                match response.status().as_u16() {
                    200 => ledger.reads.0 += 1,
                    _ => {
                        assert_refused(response, &format!("round {allowed}: a read during the fault"));
                        ledger.reads.1 += 1;
                    }
                }
            }
        }
        drop(server.stop());
        switch.clear();
        // The first refused change failed inside its commit, at whichever write the fault
        // struck: all or nothing of it is in the file. The later ones never began (redb
        // refuses to after an I/O error): none of them may be there.
        let mut refused = refused.into_iter();
        if let Some(first) = refused.next() {
            ledger.durable_despite_503 += u32::from(resolve_first_refused(&path, &mut ledger, first, allowed));
        }
        refused.for_each(|r| remember_refused(&mut ledger, r));
        assert_file_matches(&path, &root_id, &ledger, allowed);
    }
    assert!(tripped_rounds >= 20, "only {tripped_rounds} rounds met the fault; the sweep is too gentle");
    eprintln!(
        "fault sweep: {tripped_rounds} rounds with a fault; {} keys acknowledged, {} refused creates and {} refused \
         revokes/rotates absent; {} refused changes durable all the same; reads during faults: {} ok, {} 503",
        ledger.acked.len(),
        ledger.refused_names.len(),
        ledger.refused_targets.len(),
        ledger.durable_despite_503,
        ledger.reads.0,
        ledger.reads.1
    );
}

#[test]
fn a_fault_during_the_rate_limit_flush_keeps_the_server_up_and_limits_enforced() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let root = dir.issue_key("alice", &["keys:read", "keys:write"]);
    let path = dir.data();
    let (service, switch) = open_flaky(&path);
    let server = InProcess::start(service);
    let response = server.post("/v1/keys", &root, &json!({"name": "limited", "rate_limit": {"per_hour": 10}}));
    assert_eq!(response.status(), 201);
    let body: Value = response.json().expect("json");
    let (id, secret) =
        (body["key"]["id"].as_str().expect("id").to_owned(), body["secret"].as_str().expect("s").to_owned());
    let key_id = KeyId::parse(&id).expect("id");
    for _ in 0..4 {
        assert_eq!(server.get("/v1/me", &secret).status(), 200);
    }
    server.service().limiter().flush(iblueprint::clock::now_millis()).expect("a flush on a healthy disk");
    let persisted = |service: &Service| service.store().read().expect("read").key(&key_id).expect("key").expect("k");
    assert_eq!(persisted(server.service()).request_count, 4);

    switch.arm(0);
    for _ in 0..3 {
        assert_eq!(server.get("/v1/me", &secret).status(), 200, "verification during the fault");
    }
    let failed = server.service().limiter().flush(iblueprint::clock::now_millis());
    assert!(failed.as_ref().is_err_and(|e| e.is_unavailable()), "the flush must fail on the disk: {failed:?}");
    // The server is up, and the budget spent since the last good flush is still enforced
    // from memory: 10 per hour, 7 used, so 3 more and then 429.
    for n in 0..3 {
        let response = server.get("/v1/me", &secret);
        assert_eq!(response.status(), 200, "request {} of 10 after a failed flush", 8 + n);
    }
    assert_problem(server.get("/v1/me", &secret), 429, "rate_limited");
    // A second flush still fails (redb refuses writes after an I/O error) and still crashes nothing.
    assert!(server.service().limiter().flush(iblueprint::clock::now_millis()).is_err());
    // After an I/O error redb refuses every further access to the file, reads included: a
    // read that needs the file answers 503 until the restart.
    assert_refused(server.get("/v1/keys", &root), "listing keys after the failed flush");

    drop(server.stop());
    switch.clear();
    // After the reopen: the last good flush is there; what came after it lived in memory
    // only and is gone, as with a crash (README "What is durable when").
    let (service, _switch) = open_flaky(&path);
    assert_eq!(persisted(&service).request_count, 4);
    let server = InProcess::start(service);
    let response = server.get("/v1/me", &secret);
    assert_eq!(response.status(), 200);
    let state = response.headers().get("ratelimit").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert!(state.starts_with("\"hour\";r=5;"), "4 spent before the fault, this one the 5th: {state}");
    drop(server.stop());
}

/// `iblueprint check` on damaged files: exit 1 with a message, never a panic, and the file
/// is left as it was. (Crash-recovered files passing it are shown by `tests/crash.rs`.)
#[test]
fn check_reports_a_damaged_file_with_exit_1_and_leaves_it_alone() {
    let dir = TestDir::new();
    dir.add_user("alice");
    dir.issue_key("alice", &["keys:read"]);
    let ok = dir.cli(&["check"], "");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(stdout.contains("1 users, 1 keys (0 revoked)") && stdout.contains("ok: "), "{stdout}");

    // Every page after the first (redb's header) gets a flipped byte: a disk that rotted.
    let mut bytes = std::fs::read(dir.data()).expect("read");
    for page in (4096..bytes.len()).step_by(4096) {
        bytes[page + 100] ^= 0x5A;
    }
    std::fs::write(dir.data(), &bytes).expect("write");
    let damaged = dir.cli(&["check"], "");
    let stderr = String::from_utf8_lossy(&damaged.stderr);
    assert_eq!(damaged.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("problem") || stderr.contains("error: "), "{stderr}");
    assert!(std::fs::read(dir.data()).expect("read") == bytes, "check must not touch the file");

    std::fs::write(dir.data(), b"not a database at all").expect("write");
    let garbage = dir.cli(&["check"], "");
    assert_eq!(garbage.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&garbage.stderr).contains("is not an iblueprint data file"));
}
