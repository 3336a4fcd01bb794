//! Forward-auth behind real proxies (SPEC §4, `/v1/auth`): Debian's nginx (`auth_request`)
//! and Caddy (`forward_auth`), each started by the test on a free loopback port in front of a
//! real iblueprint and a small recording upstream.
//!
//! The proxies run the SHIPPED examples, `packaging/nginx/iblueprint.conf` and
//! `packaging/caddy/Caddyfile`, read from the repository with only their three addresses
//! replaced (each replacement must match, so the test cannot drift from the file). For
//! nginx the test adds the surrounding `nginx.conf` (`daemon off`, temp pid/log/temp paths,
//! `http { include … }`); for Caddy a global block that turns the admin endpoint off.
//!
//! Every test runs for both proxies. Where they differ, it is because the proxies differ,
//! and each difference is what the example's comments claim.
//!
//! Without the proxy binary a test prints a loud notice and passes; with `CI` set it fails.
//! `TEST_LOG=1` prints the proxy's log when a test ends.

#[path = "api/helpers.rs"]
mod helpers;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{Value, json};
use tempfile::TempDir;

use helpers::*;

/// How long a proxy gets to start listening.
const DEADLINE: Duration = Duration::from_secs(20);

const NGINX_CONF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/nginx/iblueprint.conf");
const CADDYFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/caddy/Caddyfile");

// ---------------------------------------------------------------------------------------
// The tests: each scenario for each proxy
// ---------------------------------------------------------------------------------------

macro_rules! for_both_proxies {
    ($($scenario:ident),* $(,)?) => {
        mod nginx {
            $( #[test] fn $scenario() { if let Some(world) = super::World::start(super::Kind::Nginx) { super::$scenario(world) } } )*
        }
        mod caddy {
            $( #[test] fn $scenario() { if let Some(world) = super::World::start(super::Kind::Caddy) { super::$scenario(world) } } )*
        }
    };
}

for_both_proxies!(
    valid_key_reaches_upstream_with_identity_headers,
    client_cannot_spoof_identity_headers,
    denials_are_iblueprint_answers_and_never_reach_upstream,
    rate_limited_key_gets_429_with_retry_after,
    fails_closed_when_iblueprint_is_down,
);

/// A valid key reaches the upstream with exactly one of each identity header, holding the
/// exact key id, username and sorted scopes; the key itself is not passed on.
fn valid_key_reaches_upstream_with_identity_headers(w: World) {
    let response = w.send(w.client.get(w.proxy.url("/v1/things?page=2")), Some(&w.full.secret));
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("ratelimit").is_none(), "an unlimited key has no RateLimit header");
    assert_eq!(response.text().expect("body"), UPSTREAM_BODY);
    let seen = w.upstream.only_request();
    assert_eq!((seen.method.as_str(), seen.target.as_str()), ("GET", "/v1/things?page=2"));
    assert_eq!(seen.all("x-iblueprint-key-id"), [w.full.id.as_str()]);
    assert_eq!(seen.all("x-iblueprint-user"), ["alice"]);
    assert_eq!(seen.all("x-iblueprint-scopes"), ["orders:read orders:write"]);
    assert!(seen.all("authorization").is_empty(), "the key must not reach the upstream: {seen:?}");

    // The scoped location, with a method and a body, for a key holding the scope.
    let response = w.send(
        w.client.post(w.proxy.url("/orders/42")).body("{\"qty\":3}").header("content-type", "application/json"),
        Some(&w.full.secret),
    );
    assert_eq!(response.status(), 200);
    let seen = w.upstream.last();
    assert_eq!((seen.method.as_str(), seen.target.as_str()), ("POST", "/orders/42"));
    assert_eq!(seen.body, b"{\"qty\":3}");
    assert_eq!(seen.all("x-iblueprint-key-id"), [w.full.id.as_str()]);

    // A key without scopes: nginx drops the empty header, Caddy 2.6 sends it empty.
    let response = w.send(w.client.get(w.proxy.url("/v1/things")), Some(&w.bare.secret));
    assert_eq!(response.status(), 200);
    let seen = w.upstream.last();
    assert_eq!(seen.all("x-iblueprint-key-id"), [w.bare.id.as_str()]);
    assert_eq!(seen.all("x-iblueprint-user"), ["alice"]);
    match w.kind {
        Kind::Nginx => assert!(seen.all("x-iblueprint-scopes").is_empty(), "{seen:?}"),
        Kind::Caddy => assert!(seen.all("x-iblueprint-scopes").iter().all(|v| v.is_empty()), "{seen:?}"),
    }
    assert_eq!(w.upstream.count(), 3);
    w.assert_quiet_log();
}

/// Identity headers a client sends itself never reach the upstream: not with a valid key
/// (replaced by iblueprint's), not with a key that has no scopes (nothing to replace
/// X-Iblueprint-Scopes with), not on an unprotected location.
fn client_cannot_spoof_identity_headers(w: World) {
    let spoof = |request: RequestBuilder| {
        request
            .header("X-Iblueprint-User", "mallory")
            .header("x-iblueprint-key-id", "key_AAAAAAAAAAAAAAAA")
            .header("X-IBLUEPRINT-SCOPES", "admin:all")
            // CGI-style frameworks (WSGI, Rack, PHP) read these as the names above.
            .header("X_Iblueprint_User", "mallory")
            .header("x-iblueprint_scopes", "admin:all")
            .header("X-Iblueprint-Admin", "yes")
    };
    let response = w.send(spoof(w.client.get(w.proxy.url("/v1/things"))), Some(&w.full.secret));
    assert_eq!(response.status(), 200);
    let seen = w.upstream.last();
    assert_eq!(seen.all_like("x-iblueprint-user"), ["alice"], "{seen:?}");
    assert_eq!(seen.all_like("x-iblueprint-key-id"), [w.full.id.as_str()], "{seen:?}");
    assert_eq!(seen.all_like("x-iblueprint-scopes"), ["orders:read orders:write"], "{seen:?}");
    // What the comments claim: Caddy removes every X-Iblueprint* name; nginx can only
    // replace the names it sets, so another one gets through.
    match w.kind {
        Kind::Caddy => assert!(seen.all_like("x-iblueprint-admin").is_empty(), "{seen:?}"),
        Kind::Nginx => assert_eq!(seen.all("x-iblueprint-admin"), ["yes"], "{seen:?}"),
    }

    let response = w.send(spoof(w.client.get(w.proxy.url("/v1/things"))), Some(&w.bare.secret));
    assert_eq!(response.status(), 200);
    let seen = w.upstream.last();
    assert_eq!(seen.all_like("x-iblueprint-user"), ["alice"], "{seen:?}");
    assert!(seen.all_like("x-iblueprint-scopes").iter().all(|v| v.is_empty()), "spoofed scopes got through: {seen:?}");

    // An unprotected location: no key, and still none of the client's identity headers.
    let response = w.send(spoof(w.client.get(w.proxy.url("/healthz"))), None);
    assert_eq!(response.status(), 200);
    let seen = w.upstream.last();
    assert_eq!(seen.target, "/healthz");
    for name in ["x-iblueprint-user", "x-iblueprint-key-id", "x-iblueprint-scopes"] {
        assert!(seen.all_like(name).is_empty(), "{name} got through: {seen:?}");
    }

    // A protected location without a key: refused before the upstream.
    let before = w.upstream.count();
    let response = w.send(spoof(w.client.get(w.proxy.url("/v1/things"))), None);
    assert_eq!(response.status(), 401);
    assert_eq!(w.upstream.count(), before);
    w.assert_quiet_log();
}

/// No key, a bad key, a revoked key and a key without the location's scope get what
/// iblueprint itself answers (status, problem body, WWW-Authenticate), through either proxy,
/// and the upstream never sees them.
fn denials_are_iblueprint_answers_and_never_reach_upstream(w: World) {
    let server = w.server();
    let revoke = server.post(&format!("/v1/keys/{}/revoke", w.revoked.id), Some(&w.root), &json!({}));
    assert_eq!(revoke.status(), 200, "revoke failed");

    let bad = "ibp_this-is-not-a-key";
    // (method, path through the proxy, key, iblueprint's own query, status, code)
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, &'a str, u16, &'a str);
    let cases: [Case; 5] = [
        ("GET", "/v1/things", None, "", 401, "missing_key"),
        ("POST", "/v1/things", None, "", 401, "missing_key"),
        ("GET", "/v1/things", Some(bad), "", 401, "invalid_key"),
        ("GET", "/v1/things", Some(&w.revoked.secret), "", 403, "key_revoked"),
        ("POST", "/orders/7", Some(&w.reader.secret), "?scope=orders:write", 403, "insufficient_scope"),
    ];
    for (method, path, key, auth_query, status, code) in cases {
        let what = format!("{method} {path} ({code})");
        let request = match method {
            // A body the proxy must not wait for or pass on.
            "POST" => w.client.post(w.proxy.url(path)).body(vec![b'x'; 100_000]),
            _ => w.client.get(w.proxy.url(path)),
        };
        let through_proxy = Answer::of(w.send(request, key));
        let direct = Answer::of(server.send(server.client.get(server.url(&format!("/v1/auth{auth_query}"))), key));
        assert_eq!(direct.status, status, "{what}: iblueprint itself");
        assert_eq!(direct.body["code"], code, "{what}: iblueprint itself");
        assert_eq!(through_proxy.status, status, "{what}: {through_proxy:?}");
        assert_eq!(through_proxy.content_type.as_deref(), Some("application/problem+json"), "{what}");
        assert_eq!(through_proxy.body, direct.body, "{what}: the problem body");
        assert_eq!(through_proxy.www_authenticate, direct.www_authenticate, "{what}: WWW-Authenticate");
        assert_eq!(through_proxy.cache_control.as_deref(), Some("no-store"), "{what}");
    }
    assert_eq!(w.upstream.count(), 0, "a denied request reached the upstream: {:?}", w.upstream.requests());
    w.assert_quiet_log();
}

/// A key limited to one request an hour: the first passes (through nginx with its RateLimit
/// headers), the second gets a 429 with Retry-After and the problem body iblueprint gives,
/// and only the first reaches the upstream.
fn rate_limited_key_gets_429_with_retry_after(w: World) {
    let response = w.send(w.client.get(w.proxy.url("/v1/things")), Some(&w.limited.secret));
    assert_eq!(response.status(), 200);
    let policy = header(&response, "ratelimit-policy");
    let state = header(&response, "ratelimit");
    match w.kind {
        // nginx adds the captured headers to the response.
        Kind::Nginx => {
            assert_eq!(policy.as_deref(), Some("\"hour\";q=1;w=3600"));
            assert!(state.as_deref().is_some_and(|s| s.starts_with("\"hour\";r=0;t=")), "{state:?}");
        }
        // forward_auth copies onto the request only (the Caddyfile's comment says so).
        Kind::Caddy => assert_eq!((policy, state), (None, None)),
    }
    assert_eq!(w.upstream.only_request().all("x-iblueprint-key-id"), [w.limited.id.as_str()]);

    let response = w.send(w.client.get(w.proxy.url("/v1/things")), Some(&w.limited.secret));
    let retry_after = header(&response, "retry-after");
    let policy = header(&response, "ratelimit-policy");
    let state = header(&response, "ratelimit");
    let answer = Answer::of(response);
    assert_eq!(answer.status, 429, "{answer:?}");
    assert_eq!(answer.content_type.as_deref(), Some("application/problem+json"));
    assert_eq!(answer.cache_control.as_deref(), Some("no-store"));
    let seconds: u64 = retry_after.as_deref().and_then(|s| s.parse().ok()).expect("Retry-After in whole seconds");
    assert!((1..=3600).contains(&seconds), "Retry-After: {seconds}");
    assert_eq!(policy.as_deref(), Some("\"hour\";q=1;w=3600"));
    assert!(state.as_deref().is_some_and(|s| s.starts_with("\"hour\";r=0;t=")), "{state:?}");
    // The body iblueprint gives for the same key now (a refusal spends nothing), with the
    // seconds this answer's Retry-After names.
    let server = w.server();
    let direct = Answer::of(server.send(server.client.get(server.url("/v1/auth")), Some(&w.limited.secret)));
    assert_eq!(direct.status, 429);
    let mut expected = direct.body.clone();
    expected["detail"] = json!(format!("the API key's rate limit is used up; retry in {seconds} seconds"));
    assert_eq!(answer.body, expected);
    assert_eq!(w.upstream.count(), 1, "the refused request reached the upstream");

    if w.kind == Kind::Nginx {
        // What the config's comments say nginx does with a 429 from auth_request.
        assert!(w.proxy.log().contains("auth request unexpected status: 429"), "{}", w.proxy.log());
    }
}

/// With iblueprint stopped, a protected request is refused (nginx: 503 problem+json;
/// Caddy: 502) and never reaches the upstream; an unprotected location still works.
fn fails_closed_when_iblueprint_is_down(mut w: World) {
    let server = w.server.take().expect("server");
    assert!(server.stop().success());
    let response = w.send(w.client.get(w.proxy.url("/v1/things")), Some(&w.full.secret));
    match w.kind {
        Kind::Nginx => {
            let answer = Answer::of(response);
            assert_eq!(answer.status, 503, "{answer:?}");
            assert_eq!(answer.content_type.as_deref(), Some("application/problem+json"));
            assert_eq!(answer.body["code"], "auth_unavailable");
            assert_eq!(answer.body["status"], 503);
        }
        Kind::Caddy => assert_eq!(response.status(), 502),
    }
    assert_eq!(w.upstream.count(), 0);
    let response = w.send(w.client.get(w.proxy.url("/healthz")), None);
    assert_eq!(response.status(), 200);
}

/// A 401 or 403 that is not iblueprint's (here a `deny` rule an operator added) stays
/// nginx's own: the config must not ask iblueprint again and answer with its empty 200.
#[test]
fn nginx_another_modules_403_is_not_replaced_by_iblueprints_answer() {
    let extra = "    location = /staff-only { set $iblueprint_require \"\"; deny all; proxy_pass http://app; }\n";
    let Some(w) = World::start_with(Kind::Nginx, extra) else { return };
    let response = w.send(w.client.get(w.proxy.url("/staff-only")), Some(&w.full.secret));
    let answer = Answer::of(response);
    assert_eq!(answer.status, 403, "{answer:?}");
    assert_eq!(answer.content_type.as_deref(), Some("text/html"), "nginx's own 403 page: {answer:?}");
    assert_eq!(w.upstream.count(), 0);
}

// ---------------------------------------------------------------------------------------
// The world: iblueprint with keys, a recording upstream, a proxy in front
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Nginx,
    Caddy,
}

struct Key {
    id: String,
    secret: String,
}

struct World {
    kind: Kind,
    // Dropped in this order: the proxy first, then the server, then its folder.
    proxy: Proxy,
    server: Option<TestServer>,
    _dir: TestDir,
    upstream: Upstream,
    client: Client,
    /// alice's own key: keys:read, keys:write, orders:read, orders:write.
    root: String,
    /// orders:read orders:write
    full: Key,
    /// orders:read
    reader: Key,
    /// no scopes
    bare: Key,
    /// no scopes, one request an hour
    limited: Key,
    /// revoked by the test that needs it
    revoked: Key,
}

impl World {
    /// None (after a notice) when the proxy is not installed and CI is not set.
    fn start(kind: Kind) -> Option<World> {
        World::start_with(kind, "")
    }

    /// `nginx_extra`: test-only nginx directives added to the shipped server block.
    fn start_with(kind: Kind, nginx_extra: &str) -> Option<World> {
        let binary = match kind {
            Kind::Nginx => proxy_binary("nginx", "nginx")?,
            Kind::Caddy => proxy_binary("caddy", "caddy")?,
        };
        let dir = TestDir::new();
        dir.add_user("alice");
        let root = dir.issue_key("alice", &["keys:read", "keys:write", "orders:read", "orders:write"]);
        let server = dir.start();
        let create = |name: &str, body: Value| {
            let mut body = body;
            body["name"] = json!(name);
            let (key, secret) = server.create_key(&root, body);
            Key { id: key["id"].as_str().expect("key id").to_owned(), secret }
        };
        let full = create("full", json!({ "scopes": ["orders:write", "orders:read"] }));
        let reader = create("reader", json!({ "scopes": ["orders:read"] }));
        let bare = create("bare", json!({ "scopes": [] }));
        let limited = create("limited", json!({ "scopes": [], "rate_limit": { "per_hour": 1 } }));
        let revoked = create("revoked", json!({ "scopes": [] }));

        let upstream = Upstream::start();
        let iblueprint = server.base.strip_prefix("http://").expect("server base is http://").to_owned();
        let proxy = match kind {
            Kind::Nginx => Proxy::nginx(&binary, &iblueprint, upstream.addr, nginx_extra),
            Kind::Caddy => Proxy::caddy(&binary, &iblueprint, upstream.addr),
        };
        let client = Client::builder().timeout(Duration::from_secs(20)).build().expect("client");
        Some(World {
            kind,
            proxy,
            server: Some(server),
            _dir: dir,
            upstream,
            client,
            root,
            full,
            reader,
            bare,
            limited,
            revoked,
        })
    }

    fn server(&self) -> &TestServer {
        self.server.as_ref().expect("the server is running")
    }

    fn send(&self, request: RequestBuilder, key: Option<&str>) -> Response {
        let request = match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        };
        request.send().expect("request through the proxy")
    }

    /// The proxy logged nothing suspicious: no nginx warning (e.g. an uninitialized
    /// variable) or error, no Caddy complaint about the Caddyfile.
    fn assert_quiet_log(&self) {
        let log = self.proxy.log();
        let suspicious: Vec<&str> = match self.kind {
            Kind::Nginx => log
                .lines()
                .filter(|l| ["[warn]", "[error]", "[crit]", "[alert]", "[emerg]"].iter().any(|level| l.contains(level)))
                // nginx reads a denied request's body before the second ask (the config's
                // comments say so), and warns when it is too big to keep in memory.
                .filter(|l| !l.contains("a client request body is buffered to a temporary file"))
                .collect(),
            Kind::Caddy => log
                .lines()
                .filter(|l| {
                    l.contains("\"level\":\"error\"") || l.contains("not formatted") || l.contains("deprecated")
                })
                .collect(),
        };
        assert!(suspicious.is_empty(), "{:?} logged:\n{}", self.kind, suspicious.join("\n"));
    }
}

/// What a response said, for comparing a proxy's answer with iblueprint's own.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: Option<String>,
    cache_control: Option<String>,
    www_authenticate: Vec<String>,
    body: Value,
}

impl Answer {
    fn of(response: Response) -> Answer {
        let status = response.status().as_u16();
        let content_type = header(&response, "content-type");
        let cache_control = header(&response, "cache-control");
        let www_authenticate = response
            .headers()
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap_or("<not ASCII>").to_owned())
            .collect();
        let text = response.text().expect("body");
        let body = serde_json::from_str(&text).unwrap_or_else(|_| json!({ "not json": text }));
        Answer { status, content_type, cache_control, www_authenticate, body }
    }
}

fn header(response: &Response, name: &str) -> Option<String> {
    response.headers().get(name).map(|v| v.to_str().unwrap_or("<not ASCII>").to_owned())
}

// ---------------------------------------------------------------------------------------
// The proxies
// ---------------------------------------------------------------------------------------

/// The proxy's binary, or None after a loud notice; with `CI` set, a missing binary fails.
fn proxy_binary(name: &str, package: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        let how = format!("install Debian's package with `apt-get install -y {package}` (.ci/run does)");
        if std::env::var_os("CI").is_some() {
            panic!("`{name}` is not installed, and CI is set so this test may not skip: {how}");
        }
        eprintln!(
            "\n************************************************************************\n\
             SKIPPED: `{name}` is not installed, so this forward-auth test did NOT run.\n\
             To run it, {how}.\n\
             ************************************************************************\n"
        );
    }
    found
}

/// A running proxy, killed (by its own pid) when dropped.
struct Proxy {
    child: Child,
    port: u16,
    log_path: PathBuf,
    _dir: TempDir,
}

impl Proxy {
    fn nginx(binary: &Path, iblueprint: &str, upstream: SocketAddr, extra: &str) -> Proxy {
        let shipped = std::fs::read_to_string(NGINX_CONF).expect("read packaging/nginx/iblueprint.conf");
        Proxy::start_retrying(|dir, port| {
            let site = render(
                NGINX_CONF,
                &shipped,
                &[
                    ("listen 80;", format!("listen 127.0.0.1:{port};")),
                    ("server 127.0.0.1:8080;", format!("server {iblueprint};")),
                    ("server 127.0.0.1:9000;", format!("server {upstream};")),
                    ("    server_name api.example.com;\n", format!("    server_name api.example.com;\n{extra}")),
                ],
                Some(1),
            );
            let d = dir.display();
            // A single process (master_process off), so killing it by pid leaves nothing
            // behind; as root it keeps running as root, with nothing to drop to.
            let main = format!(
                "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n    access_log {d}/access.log;\n    client_body_temp_path {d}/client_body;\n    \
                 proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    \
                 scgi_temp_path {d}/scgi;\n    include {d}/iblueprint.conf;\n}}\n"
            );
            write(&dir.join("iblueprint.conf"), &site);
            write(&dir.join("nginx.conf"), &main);
            let mut command = Command::new(binary);
            command.arg("-p").arg(dir).arg("-c").arg(dir.join("nginx.conf")).arg("-e").arg(dir.join("error.log"));
            (command, dir.join("error.log"))
        })
    }

    fn caddy(binary: &Path, iblueprint: &str, upstream: SocketAddr) -> Proxy {
        let shipped = std::fs::read_to_string(CADDYFILE).expect("read packaging/caddy/Caddyfile");
        Proxy::start_retrying(|dir, port| {
            let site = render(
                CADDYFILE,
                &shipped,
                &[
                    ("\napi.example.com {\n", format!("\nhttp://127.0.0.1:{port} {{\n")),
                    ("forward_auth 127.0.0.1:8080 {", format!("forward_auth {iblueprint} {{")),
                    ("reverse_proxy 127.0.0.1:9000", format!("reverse_proxy {upstream}")),
                ],
                None,
            );
            // No admin endpoint: tests run in parallel and it would want port 2019.
            write(&dir.join("Caddyfile"), &format!("{{\n\tadmin off\n}}\n\n{site}"));
            let mut command = Command::new(binary);
            command
                .args(["run", "--adapter", "caddyfile", "--config"])
                .arg(dir.join("Caddyfile"))
                // Caddy keeps its state (autosave.json, certificates) under these.
                .env("HOME", dir)
                .env("XDG_CONFIG_HOME", dir.join("config"))
                .env("XDG_DATA_HOME", dir.join("data"));
            (command, dir.join("proxy.log"))
        })
    }

    /// Starts the proxy on a free port; if another process took the port between our
    /// check and the proxy's bind, tries again with a new one.
    fn start_retrying(configure: impl Fn(&Path, u16) -> (Command, PathBuf)) -> Proxy {
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = free_port();
            let (mut command, log_path) = configure(dir.path(), port);
            // Caddy logs to stderr; nginx writes its own file but may complain on stderr.
            let stderr_path = dir.path().join("proxy.log");
            let stderr = std::fs::File::create(&stderr_path).expect("proxy log file");
            let mut child = command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
            match wait_listening(&mut child, port) {
                Ok(()) => return Proxy { child, port, log_path, _dir: dir },
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_log = format!(
                        "{why}\n--- log ---\n{}{}",
                        read_or_empty(&log_path),
                        if log_path == stderr_path { String::new() } else { read_or_empty(&stderr_path) }
                    );
                    if !last_log.contains("in use") {
                        break;
                    }
                }
            }
        }
        panic!("the proxy did not start: {last_log}");
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        read_or_empty(&self.log_path)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("TEST_LOG").is_some() {
            eprintln!("--- proxy log ---\n{}", self.log());
        }
    }
}

/// The shipped file with each placeholder replaced; every placeholder must be found
/// (`exactly` times, when given), so a changed example cannot silently go untested.
fn render(file: &str, text: &str, replacements: &[(&str, String)], exactly: Option<usize>) -> String {
    let mut out = text.to_owned();
    for (from, to) in replacements {
        let found = out.matches(from).count();
        match exactly {
            Some(n) => assert_eq!(found, n, "{file} must contain {from:?} exactly {n} time(s); found {found}"),
            None => assert!(found > 0, "{file} must contain {from:?}"),
        }
        out = out.replace(from, to);
    }
    out
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn read_or_empty(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// Waits until something accepts connections on the port, or the process exits.
fn wait_listening(child: &mut Child, port: u16) -> Result<(), String> {
    let start = Instant::now();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status} before listening on {addr}"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if start.elapsed() > DEADLINE {
            return Err(format!("not listening on {addr} after {DEADLINE:?}"));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------
// The upstream: records every request and answers 200
// ---------------------------------------------------------------------------------------

const UPSTREAM_BODY: &str = "upstream says hi";

/// One request as the upstream received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    /// Every value of the header `name` (any case), in order.
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    /// Like [`Seen::all`], but also counting names spelled with `_` for `-`, which
    /// CGI-style frameworks cannot tell apart.
    fn all_like(&self, name: &str) -> Vec<&str> {
        let like = |n: &str| n.replace('_', "-").eq_ignore_ascii_case(name);
        self.headers.iter().filter(|(n, _)| like(n)).map(|(_, v)| v.as_str()).collect()
    }
}

struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    /// A plain HTTP/1.1 server on a std TcpListener, one thread per connection. It lives
    /// until the test process ends.
    fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let record = Arc::clone(&record);
                thread::spawn(move || serve_connection(stream, &record));
            }
        });
        Upstream { addr, seen }
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    fn count(&self) -> usize {
        self.requests().len()
    }

    #[track_caller]
    fn only_request(&self) -> Seen {
        let requests = self.requests();
        assert_eq!(requests.len(), 1, "expected exactly one request upstream: {requests:?}");
        requests[0].clone()
    }

    #[track_caller]
    fn last(&self) -> Seen {
        self.requests().last().cloned().expect("the upstream received no request")
    }
}

/// Serves requests on one connection (keep-alive) until the peer closes it or sends
/// something this small parser does not understand.
fn serve_connection(stream: TcpStream, record: &Mutex<Vec<Seen>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(reader) = stream.try_clone() else { return };
    let mut reader = BufReader::new(reader);
    let mut writer = stream;
    while let Some(seen) = read_request(&mut reader) {
        let close = seen.all("connection").iter().any(|v| v.eq_ignore_ascii_case("close"));
        record.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(seen);
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{UPSTREAM_BODY}",
            UPSTREAM_BODY.len()
        );
        if writer.write_all(response.as_bytes()).and_then(|()| writer.flush()).is_err() || close {
            return;
        }
    }
}

fn read_request(reader: &mut impl BufRead) -> Option<Seen> {
    let request_line = read_line(reader)?;
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut seen = Seen { method, target, headers, body: Vec::new() };
    if seen.all("transfer-encoding").iter().any(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let size = usize::from_str_radix(read_line(reader)?.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                while !read_line(reader)?.is_empty() {} // trailers
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            seen.body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = seen.all("content-length").first().and_then(|v| v.parse::<usize>().ok()) {
        seen.body = vec![0; length];
        reader.read_exact(&mut seen.body).ok()?;
    }
    Some(seen)
}

/// One CRLF-terminated line without its ending; None at EOF or on an error.
fn read_line(reader: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_owned()),
    }
}
