//! The HTTP hardening knobs (issue 7, `src/http/limits.rs`) as a client meets them: slow
//! request heads, idle keep-alive connections, the connection limit, header count and size,
//! body limits on every route, and the TLS handshake timeout.
//!
//! Most of these need a client that misbehaves below HTTP, so they use a raw
//! `std::net::TcpStream`. Nothing waits by sleeping: each test reads with a deadline until
//! the server answers or closes, and the few "must not answer yet" checks are bounded reads
//! whose positive counterpart follows at once.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// A deadline far beyond any timeout under test: only a hung server reaches it.
const PATIENCE: Duration = Duration::from_secs(20);

/// The least a 1 s actix-http timeout (head, keep-alive, disconnect) can take: its
/// deadlines are dated from a clock refreshed every 500 ms, so they may fire that much early.
/// (The body and TLS handshake deadlines are plain timers and exact.)
const ACTIX_CLOCK_EARLY: Duration = Duration::from_millis(400);

fn connect(server: &TestServer) -> TcpStream {
    let addr = server.base.trim_start_matches("http://").trim_start_matches("https://");
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

/// What a raw connection received before the server closed it.
struct Closed {
    bytes: Vec<u8>,
    after: Duration,
}

impl Closed {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Reads until the server closes the connection (EOF or reset); fails the test if it is
/// still open after [`PATIENCE`].
fn read_until_closed(stream: &mut TcpStream, since: Instant) -> Closed {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = PATIENCE.checked_sub(since.elapsed()).unwrap_or_else(|| {
            panic!("the server kept the connection open for {PATIENCE:?}; got {:?}", String::from_utf8_lossy(&bytes))
        });
        stream.set_read_timeout(Some(left.max(Duration::from_millis(1)))).expect("timeout");
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(e) => panic!("reading: {e}"),
        }
    }
    Closed { bytes, after: since.elapsed() }
}

/// Reads one whole response (head and `Content-Length` body) within [`PATIENCE`].
fn read_response(stream: &mut TcpStream) -> String {
    let since = Instant::now();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                return text;
            }
        }
        let left = PATIENCE.checked_sub(since.elapsed()).expect("no whole response in time");
        stream.set_read_timeout(Some(left.max(Duration::from_millis(1)))).expect("timeout");
        match stream.read(&mut buf) {
            Ok(0) => panic!("the connection closed mid-response: {text:?}"),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(e) => panic!("reading a response: {e}"),
        }
    }
}

/// True if nothing arrives within `wait`: for the "not served yet" half of a check whose
/// other half (served once a slot frees) follows.
fn silent_for(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).expect("timeout");
    let mut buf = [0u8; 1];
    // A peek, so that whatever does arrive is still there for the reader that follows.
    matches!(stream.peek(&mut buf), Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
}

/// True if the server sends something (not just a close) within `wait`.
fn answered_within(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).expect("timeout");
    let mut buf = [0u8; 1];
    matches!(stream.peek(&mut buf), Ok(n) if n > 0)
}

const HEALTH: &[u8] = b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n";

fn status_of(response: &str) -> &str {
    response.split(' ').nth(1).unwrap_or_default()
}

fn started_with(env: &[(&str, &str)]) -> (TestDir, TestServer) {
    let dir = TestDir::new();
    let server = dir.start_with(&[], env);
    (dir, server)
}

// ----- timeouts and connections -----

#[test]
fn a_request_head_not_finished_within_the_request_timeout_gets_408_and_is_closed() {
    let (_dir, server) = started_with(&[("IBLUEPRINT_HTTP_REQUEST_TIMEOUT", "1s")]);
    let mut stream = connect(&server);
    let since = Instant::now();
    stream.write_all(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\n").expect("write a partial head");
    let closed = read_until_closed(&mut stream, since);
    assert!(closed.text().starts_with("HTTP/1.1 408 "), "{:?}", closed.text());
    // The setting (1 s), not the default (10 s). actix-http dates its deadlines from a clock
    // it refreshes every 500 ms, so they fire up to that much early; the upper margin is for a
    // loaded machine.
    let after = closed.after;
    assert!(after >= ACTIX_CLOCK_EARLY && after < Duration::from_secs(8), "closed after {after:?}");

    // Dripping the head a byte at a time does not reset the clock (slowloris).
    let mut stream = connect(&server);
    let since = Instant::now();
    let mut answer = Vec::new();
    for byte in b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ".iter().chain(std::iter::repeat(&b'a')) {
        if stream.write_all(&[*byte]).is_err() || !silent_for(&mut stream, Duration::from_millis(100)) {
            answer = read_until_closed(&mut stream, since).bytes;
            break;
        }
        assert!(since.elapsed() < PATIENCE, "a dripping client was never cut off");
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
    assert!(since.elapsed() < Duration::from_secs(8), "cut off only after {:?}", since.elapsed());

    // A prompt client on the same server is unaffected.
    let mut stream = connect(&server);
    stream.write_all(HEALTH).expect("write");
    assert_eq!(status_of(&read_response(&mut stream)), "200");
}

#[test]
fn a_keep_alive_connection_serves_several_requests_then_closes_when_idle_past_keep_alive() {
    let (_dir, server) = started_with(&[("IBLUEPRINT_HTTP_KEEP_ALIVE", "1s")]);
    let mut stream = connect(&server);
    for _ in 0..3 {
        stream.write_all(HEALTH).expect("write");
        let response = read_response(&mut stream);
        assert_eq!(status_of(&response), "200");
        assert!(!response.to_ascii_lowercase().contains("connection: close"), "{response}");
    }
    let idle_since = Instant::now();
    let closed = read_until_closed(&mut stream, idle_since);
    assert!(closed.bytes.is_empty(), "an idle connection is closed without a word: {:?}", closed.text());
    // The setting (1 s), not the default (75 s); early by up to 500 ms like the head timeout.
    let after = closed.after;
    assert!(after >= ACTIX_CLOCK_EARLY && after < Duration::from_secs(8), "closed after {after:?}");
}

#[test]
fn connections_past_max_connections_wait_in_the_queue_until_one_closes() {
    let (_dir, server) = started_with(&[("IBLUEPRINT_HTTP_WORKERS", "1"), ("IBLUEPRINT_HTTP_MAX_CONNECTIONS", "2")]);
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect(&server)).collect();
    for stream in &mut held {
        stream.write_all(HEALTH).expect("write");
        assert_eq!(status_of(&read_response(stream)), "200");
    }
    // The third connection is queued by the kernel, not refused, and not served yet.
    let mut third = connect(&server);
    third.write_all(HEALTH).expect("write");
    assert!(silent_for(&mut third, Duration::from_millis(700)), "a third connection was served past the limit of 2");
    drop(held.pop());
    assert_eq!(status_of(&read_response(&mut third)), "200", "served once a connection closed");
}

#[test]
fn a_tls_client_that_never_finishes_the_handshake_is_closed_after_the_handshake_timeout() {
    let (dir, cert, key) = tls_files();
    let server = dir.start_with(&[], &[("IBLUEPRINT_TLS_CERT", &cert), ("IBLUEPRINT_TLS_KEY", &key)]);
    let mut silent = connect(&server);
    let closed = read_until_closed(&mut silent, Instant::now());
    assert!(closed.bytes.is_empty(), "{:?}", closed.text());
    // 5 s (src/http/limits.rs), well before the 10 s request timeout could apply.
    assert!(closed.after >= Duration::from_millis(4500), "closed after {:?}", closed.after);
    assert!(closed.after < Duration::from_secs(9), "closed only after {:?}", closed.after);
}

#[test]
fn tls_handshakes_past_256_in_progress_per_worker_wait_until_one_ends() {
    let (dir, cert, key) = tls_files();
    let server = dir.start_with(
        &[],
        &[("IBLUEPRINT_HTTP_WORKERS", "1"), ("IBLUEPRINT_TLS_CERT", &cert), ("IBLUEPRINT_TLS_KEY", &key)],
    );
    // A ClientHello from a real TLS client; any answer from the server (its ServerHello)
    // shows the handshake started. Certificates are never checked: it goes no further.
    let hello = |stream: &mut TcpStream| {
        let roots = rustls::RootCertStore::empty();
        let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
        let mut client = rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("client");
        client.write_tls(stream).expect("send ClientHello");
    };
    let mut prompt = connect(&server);
    hello(&mut prompt);
    assert!(answered_within(&mut prompt, PATIENCE), "a lone handshake is answered");
    drop(prompt);
    // 256 clients that connect and never say hello fill the worker's handshake slots.
    let stalled: Vec<TcpStream> = (0..256).map(|_| connect(&server)).collect();
    let mut waiting = connect(&server);
    hello(&mut waiting);
    assert!(silent_for(&mut waiting, Duration::from_millis(700)), "a 257th handshake started at once");
    drop(stalled);
    assert!(answered_within(&mut waiting, PATIENCE), "the waiting handshake goes ahead once the slots free up");
}

/// A folder with a self-signed certificate and its key for `localhost`, as paths.
fn tls_files() -> (TestDir, String, String) {
    let dir = TestDir::new();
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params").self_signed(&key);
    let (cert_path, key_path) = (dir.dir.path().join("cert.pem"), dir.dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.expect("certificate").pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    let path = |p: std::path::PathBuf| p.to_str().expect("utf-8 path").to_owned();
    (dir, path(cert_path), path(key_path))
}

#[test]
fn a_body_not_in_within_the_request_timeout_is_refused_and_the_connection_dropped_after_the_disconnect_timeout() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let key = dir.issue_key("alice", &["keys:write"]);
    let server = dir.start_with(&[], &[("IBLUEPRINT_HTTP_REQUEST_TIMEOUT", "1s")]);
    let session = server.sign_in("alice", PASSWORD);
    let host = server.base.trim_start_matches("http://").to_owned();
    let heads = [
        format!(
            "POST /v1/keys HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\""
        ),
        format!(
            "POST /settings/keys/new HTTP/1.1\r\nHost: {host}\r\nCookie: {}\r\nOrigin: {}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ncsrf={}&name=",
            session.cookie, server.base, session.csrf
        ),
    ];
    // Both at once, so the test waits out the timeouts once.
    let since = Instant::now();
    let mut streams: Vec<TcpStream> = heads
        .iter()
        .map(|head| {
            let mut stream = connect(&server);
            stream.write_all(head.as_bytes()).expect("write a head and part of the body");
            stream
        })
        .collect();
    let mut answered = Vec::new();
    for stream in &mut streams {
        let text = read_response(stream);
        let after = since.elapsed();
        assert!(text.starts_with("HTTP/1.1 400 "), "{text:?}");
        assert!(text.contains("did not arrive") && text.contains("connection: close"), "{text:?}");
        assert!(after >= Duration::from_millis(900) && after < Duration::from_secs(8), "answered after {after:?}");
        answered.push(after);
    }
    // The clients neither send the rest nor close: the server waits out the disconnect
    // timeout (5 s, src/http/limits.rs) for them to go, then drops the connections.
    for (stream, answered) in streams.iter_mut().zip(answered) {
        let lingered = read_until_closed(stream, since).after - answered;
        let least = Duration::from_secs(5) - (Duration::from_secs(1) - ACTIX_CLOCK_EARLY);
        assert!(lingered >= least && lingered < Duration::from_secs(9), "{lingered:?}");
    }
    // Nothing was created.
    let page = server.page(&session, "/settings/keys").send().unwrap().text().unwrap();
    assert!(page.contains("id=\"keys-table\""), "{page}");
    assert_eq!(page.matches("data-key-id=").count(), 1, "only the issued key: {page}");
}

// ----- header limits -----

/// A request for /v1/health with `extra` headers of `value` after Host.
fn with_headers(extra: usize, value: &str) -> Vec<u8> {
    let mut head = String::from("GET /v1/health HTTP/1.1\r\nHost: localhost\r\n");
    for i in 0..extra {
        head.push_str(&format!("X-H{i}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

#[test]
fn more_than_96_headers_get_431_and_the_connection_is_closed() {
    let (_dir, server) = started_with(&[]);
    // 96 in all (Host and 95 more) is actix-http's fixed limit, and is served.
    let mut stream = connect(&server);
    stream.write_all(&with_headers(95, "x")).expect("write");
    assert_eq!(status_of(&read_response(&mut stream)), "200");
    let mut stream = connect(&server);
    let since = Instant::now();
    stream.write_all(&with_headers(96, "x")).expect("write");
    let closed = read_until_closed(&mut stream, since);
    assert!(closed.text().starts_with("HTTP/1.1 431 "), "{:?}", closed.text());
}

#[test]
fn a_request_head_over_128_kib_gets_431_or_a_reset_and_never_reaches_a_handler() {
    let (_dir, server) = started_with(&[]);
    // Just under the 128 KiB read buffer: parsed and served.
    let mut stream = connect(&server);
    stream.write_all(&with_headers(15, &"a".repeat(8 * 1024))).expect("write");
    assert_eq!(status_of(&read_response(&mut stream)), "200");
    // Past it, in one header or spread over many: 431, unless the server's close resets the
    // connection while the client is still sending (then the client sees a reset).
    for head in [with_headers(1, &"a".repeat(200 * 1024)), with_headers(40, &"a".repeat(4 * 1024))] {
        let mut stream = connect(&server);
        let since = Instant::now();
        let writer = {
            let mut stream = stream.try_clone().expect("clone");
            std::thread::spawn(move || stream.write_all(&head).is_ok())
        };
        let closed = read_until_closed(&mut stream, since);
        let _ = writer.join();
        let text = closed.text();
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 431 "), "{text:?}");
    }
    let mut stream = connect(&server);
    stream.write_all(HEALTH).expect("write");
    assert_eq!(status_of(&read_response(&mut stream)), "200", "the server is unharmed");
}

// ----- body limits on every route -----

/// How a route refuses a body over its limit.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    /// JSON API: 64 KiB, then 413 `payload_too_large`.
    Problem413,
    /// Settings pages: 16 KiB, then the 400 page.
    Page400,
}

const JSON_LIMIT: usize = 64 * 1024;
const FORM_LIMIT: usize = 16 * 1024;

#[test]
fn every_route_that_takes_a_body_refuses_one_over_its_limit_with_or_without_content_length() {
    let dir = TestDir::new();
    let out = dir.cli(&["users", "add", "alice", "--admin", "--password-stdin"], &format!("{PASSWORD}\n"));
    assert!(out.status.success());
    dir.add_user("bob");
    let root = dir.issue_key("alice", &["keys:read", "keys:write"]);
    let server = dir.start();
    let (key, _) = server.create_key(&root, json!({"name": "target"}));
    let id = key["id"].as_str().unwrap().to_owned();
    let session = server.sign_in("alice", PASSWORD);
    let users = server.page(&session, "/settings/users").send().unwrap().text().unwrap();
    let bob = users.split("data-username=\"bob\"").next().and_then(|t| t.rsplit("data-user-id=\"").next()).unwrap();
    let bob = bob[..bob.find('"').unwrap()].to_owned();

    let routes: Vec<(Method, String, Refusal)> = vec![
        (Method::POST, "/v1/keys".into(), Refusal::Problem413),
        (Method::PATCH, format!("/v1/keys/{id}"), Refusal::Problem413),
        (Method::POST, format!("/v1/keys/{id}/revoke"), Refusal::Problem413),
        (Method::POST, format!("/v1/keys/{id}/rotate"), Refusal::Problem413),
        (Method::POST, "/login".into(), Refusal::Page400),
        (Method::POST, "/logout".into(), Refusal::Page400),
        (Method::POST, "/settings/keys/new".into(), Refusal::Page400),
        (Method::POST, format!("/settings/keys/{id}/revoke"), Refusal::Page400),
        (Method::POST, format!("/settings/keys/{id}/rotate"), Refusal::Page400),
        (Method::POST, "/settings/users".into(), Refusal::Page400),
        (Method::POST, format!("/settings/users/{bob}/disable"), Refusal::Page400),
        (Method::POST, format!("/settings/users/{bob}/enable"), Refusal::Page400),
        (Method::POST, "/settings/profile/password".into(), Refusal::Page400),
    ];
    for (method, path, refusal) in &routes {
        for chunked in [false, true] {
            // Signed out, the sign-in form goes with its own form cookie and token.
            let (cookie, csrf) = if path == "/login" {
                let form = server.client.get(server.url("/login")).send().unwrap();
                remember_cookies(&form);
                let cookie = form.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
                (cookie, csrf_of(&form.text().unwrap()).unwrap())
            } else {
                (session.cookie.clone(), session.csrf.clone())
            };
            let (body, content_type) = match refusal {
                // Valid JSON, so only the size can be the reason.
                Refusal::Problem413 => {
                    (format!("{{\"name\": \"{}\"}}", "a".repeat(JSON_LIMIT)).into_bytes(), "application/json")
                }
                Refusal::Page400 => (
                    format!("csrf={csrf}&name={}", "a".repeat(FORM_LIMIT)).into_bytes(),
                    "application/x-www-form-urlencoded",
                ),
            };
            let body = if chunked {
                // A reader has no length: reqwest sends it chunked, without Content-Length.
                reqwest::blocking::Body::new(std::io::Cursor::new(body))
            } else {
                reqwest::blocking::Body::from(body)
            };
            let what = format!("{method} {path} ({})", if chunked { "chunked" } else { "Content-Length" });
            let request = match refusal {
                Refusal::Problem413 => server.client.request(method.clone(), server.url(path)).bearer_auth(&root),
                Refusal::Page400 => server
                    .client
                    .request(method.clone(), server.url(path))
                    .header("cookie", cookie)
                    .header("origin", &server.base),
            };
            let response = request.header("content-type", content_type).body(body).send().expect(&what);
            match refusal {
                Refusal::Problem413 => {
                    let problem = assert_problem(response, 413, "payload_too_large");
                    assert!(problem["detail"].as_str().unwrap().contains("64 KiB"), "{what}: {problem}");
                }
                Refusal::Page400 => {
                    assert_eq!(response.status(), 400, "{what}");
                    let page = response.text().unwrap();
                    assert!(page.contains("larger than 16 KiB"), "{what}: {page}");
                }
            }
        }
    }
    // Nothing was changed by any of them: the key is active, bob enabled, alice signed in.
    let shown: Value = server.get(&format!("/v1/keys/{id}"), Some(&root)).json().unwrap();
    assert_eq!((shown["name"].as_str(), shown["status"].as_str()), (Some("target"), Some("active")));
    assert_eq!(server.get("/v1/keys", Some(&root)).json::<Value>().unwrap()["keys"].as_array().unwrap().len(), 2);
    assert_eq!(server.page(&session, "/settings/profile").send().unwrap().status(), 200);
    assert!(
        server.page(&session, "/settings/users").send().unwrap().text().unwrap().contains("data-status=\"active\"")
    );
}

#[test]
fn the_setup_form_refuses_a_body_over_16_kib() {
    let dir = TestDir::new();
    let mut server = dir.start();
    let line = server.next_stdout_line();
    let path = format!("/setup/{}", line.split("/setup/").nth(1).unwrap().split_whitespace().next().unwrap());
    let form = server.client.get(server.url(&path)).send().unwrap();
    remember_cookies(&form);
    let cookie = form.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let csrf = csrf_of(&form.text().unwrap()).unwrap();
    let body = format!("csrf={csrf}&username=admin&password={}", "a".repeat(FORM_LIMIT));
    let response = server
        .client
        .post(server.url(&path))
        .header("cookie", cookie)
        .header("origin", &server.base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .unwrap();
    assert_eq!(response.status(), 400);
    // The link still works: the refusal created no admin.
    assert_eq!(server.client.get(server.url(&path)).send().unwrap().status(), 200);
}

#[test]
fn a_body_where_none_is_expected_is_not_read_and_does_not_stop_the_request() {
    let f = alice();
    // /v1/auth takes any method and ignores the body: verification is the same, and a
    // large body costs no memory: it is never read, and actix closes the connection after
    // the answer rather than read it (a chunked one it discards as it arrives).
    let big = vec![b'x'; 1024 * 1024];
    for (method, path) in [(Method::POST, "/v1/auth"), (Method::GET, "/v1/me"), (Method::GET, "/v1/health")] {
        let request = f.server.client.request(method.clone(), f.server.url(path)).body(big.clone());
        let response = f.server.send(request, Some(&f.root_key));
        assert_eq!(response.status(), 200, "{method} {path}");
    }
}
