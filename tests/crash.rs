//! Durability (SPEC §6): "no change is acknowledged before its transaction is fsynced".
//!
//! Twenty times, create or revoke a key and SIGKILL the server the moment the 2xx
//! arrives; after a restart on the same data file the change is there, and so is every
//! earlier one.

#[path = "api/helpers.rs"]
mod helpers;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use helpers::*;

const ROUNDS: usize = 20;

/// A key this test created over the API.
struct Created {
    id: String,
    secret: String,
    revoked: bool,
}

/// Everything acknowledged so far must be visible on `server`.
#[track_caller]
fn assert_every_acknowledged_change_is_there(
    server: &TestServer,
    root_key: &str,
    root_id: &str,
    created: &[Created],
    round: usize,
) {
    for key in created {
        let response = server.get("/v1/me", Some(&key.secret));
        if key.revoked {
            assert_eq!(
                response.status(),
                403,
                "round {round}: key {} was revoked (2xx acknowledged) before the SIGKILL, but after the restart it does not answer 403",
                key.id
            );
            assert_problem(response, 403, "key_revoked");
        } else {
            assert_eq!(
                response.status(),
                200,
                "round {round}: key {} was created (201 acknowledged) before the SIGKILL, but after the restart it does not verify",
                key.id
            );
            let me: Value = response.json().unwrap();
            assert_eq!(me["key"]["id"], key.id.as_str());
        }
    }

    let response = server.get("/v1/keys?limit=200", Some(root_key));
    assert_eq!(response.status(), 200, "round {round}: listing keys");
    let list: Value = response.json().unwrap();
    assert_eq!(list["next_cursor"], Value::Null, "round {round}: everything fits on one page");
    let keys = list["keys"].as_array().expect("keys array");
    let listed: BTreeSet<&str> = keys.iter().map(|k| k["id"].as_str().expect("id")).collect();
    let mut expected: BTreeSet<&str> = created.iter().map(|k| k.id.as_str()).collect();
    expected.insert(root_id);
    assert_eq!(keys.len(), listed.len(), "round {round}: a key is listed twice: {keys:?}");
    assert_eq!(
        listed, expected,
        "round {round}: GET /v1/keys must list exactly the root key and the keys created so far"
    );
    for key in keys {
        let id = key["id"].as_str().unwrap();
        let revoked = created.iter().any(|c| c.id == id && c.revoked);
        assert_eq!(
            key["revoked_at"].is_string(),
            revoked,
            "round {round}: revoked_at of {id} disagrees with what was acknowledged: {key}"
        );
    }
}

#[test]
fn create_or_revoke_acknowledged_just_before_a_sigkill_survives_the_restart_twenty_times() {
    let started = Instant::now();
    let dir = TestDir::new();
    dir.add_user("alice");
    let root_key = dir.issue_key("alice", &["keys:read", "keys:write"]);
    let mut server = dir.start();
    let me: Value = server.get("/v1/me", Some(&root_key)).json().unwrap();
    let root_id = me["key"]["id"].as_str().expect("root key id").to_owned();

    // A few live keys up front, so each revoke hits an older key while newer ones stay
    // live across several crashes.
    let mut created: Vec<Created> = (0..3)
        .map(|i| {
            let (key, secret) = server.create_key(&root_key, json!({"name": format!("early-{i}")}));
            Created { id: key["id"].as_str().expect("id").to_owned(), secret, revoked: false }
        })
        .collect();
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            // Create, read the acknowledgement, kill at once.
            let response = server.post("/v1/keys", Some(&root_key), &json!({"name": format!("crash-{round}")}));
            assert_eq!(response.status(), 201, "round {round}: create");
            let body: Value = response.json().expect("create body");
            server.kill();
            created.push(Created {
                id: body["key"]["id"].as_str().expect("id").to_owned(),
                secret: body["secret"].as_str().expect("secret").to_owned(),
                revoked: false,
            });
        } else {
            // Revoke the oldest key still live.
            let target = created.iter().position(|k| !k.revoked).expect("a live key to revoke");
            let id = created[target].id.clone();
            let response = server.post(&format!("/v1/keys/{id}/revoke"), Some(&root_key), &json!({}));
            assert_eq!(response.status(), 200, "round {round}: revoke {id}");
            let body: Value = response.json().expect("revoke body");
            server.kill();
            assert_eq!(body["id"], id.as_str());
            assert!(body["revoked_at"].is_string(), "round {round}: the revoke response has revoked_at: {body}");
            created[target].revoked = true;
        }

        server = dir.start();
        assert_every_acknowledged_change_is_there(&server, &root_key, &root_id, &created, round);
    }

    assert_eq!(created.len(), 3 + ROUNDS / 2);
    assert_eq!(created.iter().filter(|k| k.revoked).count(), ROUNDS / 2);
    // The root key was never touched and still works.
    assert_eq!(server.get("/v1/me", Some(&root_key)).status(), 200);
    assert!(server.stop().success());
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(60), "the crash test took {elapsed:?}; keep it well under a minute");
}
