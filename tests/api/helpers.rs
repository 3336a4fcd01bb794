//! Shared set-up for the black-box tests: every test gets its own temp folder and data
//! file, runs the real `iblueprint` binary, and talks to it over real HTTP on loopback.
//!
//! The server's log goes to `server.log` in the test's folder; set `TEST_LOG=1` to have it
//! printed when a test server is dropped.
//!
//! ## The secret-leak check
//!
//! Every server runs with `RUST_LOG=debug` (all crates: a dependency logging a header is
//! exactly the leak to catch), and every secret the harness sees issued is remembered:
//! tokens from `issue_key` and `create_key`, session and form cookies, the setup-link
//! secret, the test passwords. When a [`TestServer`] is dropped, its log and its data file
//! (users, keys, sessions and the audit trail) are scanned for any of them and for anything
//! shaped like a token (`ibp_` + 46 base62, SPEC §3); so are CLI stderr, every problem body
//! [`assert_problem`] sees, and whatever a test hands to [`assert_no_secrets`] (backups,
//! exports, the audit page). A find fails the test with the place and a redacted excerpt.
//! The places a secret legitimately appears are the ones never scanned: the 201 body of
//! create/rotate, the one-time secret page, `issue-key`'s stdout and the setup link on the
//! server's stdout.

#![allow(dead_code)] // each test binary that includes these helpers uses a different subset

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::Mutex;

use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::Value;
use tempfile::TempDir;

pub const PASSWORD: &str = "correct horse battery staple";

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_iblueprint")
}

/// A temp folder holding one data file, outliving server restarts. Shared with the servers
/// started in it, so it outlives them too: a server's leak check reads its files at drop,
/// whatever order a test's variables or fixture fields drop in.
pub struct TestDir {
    pub dir: Arc<TempDir>,
}

impl TestDir {
    pub fn new() -> Self {
        TestDir { dir: Arc::new(tempfile::tempdir().expect("temp dir")) }
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("iblueprint.redb")
    }

    /// Runs `iblueprint ARGS… --data <this dir's file>` to completion.
    pub fn cli(&self, args: &[&str], stdin: &str) -> Output {
        run_cli(args, Some(&self.data()), stdin)
    }

    /// Adds a user offline (server stopped) with [`PASSWORD`].
    pub fn add_user(&self, name: &str) {
        let out = self.cli(&["users", "add", name, "--password-stdin"], &format!("{PASSWORD}\n"));
        assert!(out.status.success(), "users add failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Issues a key offline and returns its secret.
    pub fn issue_key(&self, user: &str, scopes: &[&str]) -> String {
        let mut args = vec!["users", "issue-key", user, "--name", "test"];
        for scope in scopes {
            args.extend(["--scope", scope]);
        }
        let out = self.cli(&args, "");
        assert!(out.status.success(), "issue-key failed: {}", String::from_utf8_lossy(&out.stderr));
        let secret = String::from_utf8(out.stdout).expect("utf8").trim().to_owned();
        remember_secret(&secret);
        secret
    }

    pub fn start(&self) -> TestServer {
        self.start_with(&[], &[])
    }

    /// Starts `iblueprint serve` on port 0 with extra arguments and environment.
    pub fn start_with(&self, args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let log_path = self.dir.path().join("server.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).expect("log file");
        let mut command = Command::new(binary());
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(self.data())
            .args(args)
            // Debug for every crate, so the leak check sees what a verbose operator would.
            .env("RUST_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        clear_iblueprint_env(&mut command);
        let mut child = command.spawn().expect("spawn iblueprint serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        // The server prints its address once bound; EOF means it exited instead.
        let addr = loop {
            line.clear();
            let n = stdout.read_line(&mut line).expect("read server stdout");
            if n == 0 {
                let _ = child.wait();
                panic!(
                    "server exited before listening; log:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            if let Some(addr) = line.trim().strip_prefix("iblueprint listening on ") {
                break addr.to_owned();
            }
        };
        TestServer {
            base: addr,
            child,
            _stdout: stdout,
            log_path,
            data_path: self.data(),
            client: Client::new(),
            _dir: Arc::clone(&self.dir),
        }
    }
}

pub fn run_cli(args: &[&str], data: Option<&Path>, stdin: &str) -> Output {
    let mut command = Command::new(binary());
    command.args(args);
    clear_iblueprint_env(&mut command);
    if let Some(data) = data {
        command.env("IBLUEPRINT_DATA", data);
    }
    let mut child =
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn iblueprint");
    // The command may exit (refusing its arguments) before reading stdin: a broken pipe
    // here is not the test's concern, the exit status and output are.
    let _ = child.stdin.take().expect("stdin").write_all(stdin.as_bytes());
    let out = child.wait_with_output().expect("wait");
    // stdout is where `issue-key`, `keys create` and `keys rotate` show a new secret, once;
    // stderr is the command's log and must never hold one.
    assert_no_secrets(&format!("stderr of `iblueprint {}`", args.join(" ")), &out.stderr);
    out
}

/// Tests must not pick up the developer's own settings.
fn clear_iblueprint_env(command: &mut Command) {
    for (name, _) in std::env::vars() {
        if name.starts_with("IBLUEPRINT_") {
            command.env_remove(name);
        }
    }
}

pub struct TestServer {
    pub base: String,
    child: Child,
    _stdout: BufReader<ChildStdout>,
    pub log_path: PathBuf,
    data_path: PathBuf,
    pub client: Client,
    /// Keeps the folder until this server's leak check has read its files.
    _dir: Arc<TempDir>,
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str, key: Option<&str>) -> Response {
        self.send(self.client.get(self.url(path)), key)
    }

    pub fn post(&self, path: &str, key: Option<&str>, body: &Value) -> Response {
        self.send(self.client.post(self.url(path)).json(body), key)
    }

    pub fn patch(&self, path: &str, key: Option<&str>, body: &Value) -> Response {
        self.send(self.client.patch(self.url(path)).json(body), key)
    }

    pub fn send(&self, request: RequestBuilder, key: Option<&str>) -> Response {
        let request = match key {
            Some(key) => request.bearer_auth(key),
            None => request,
        };
        let response = request.send().expect("request");
        remember_cookies(&response);
        response
    }

    /// Creates a key through the API and returns (key object, secret).
    pub fn create_key(&self, key: &str, body: Value) -> (Value, String) {
        let response = self.post("/v1/keys", Some(key), &body);
        assert_eq!(response.status(), 201, "create failed: {}", response.text().unwrap_or_default());
        let json: Value = response.json().expect("json");
        let secret = json["secret"].as_str().expect("secret").to_owned();
        remember_secret(&secret);
        (json["key"].clone(), secret)
    }

    /// SIGTERM, then wait for a clean exit; returns the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        signal(&self.child, "TERM");
        self.child.wait().expect("wait for server")
    }

    /// SIGKILL: the crash case.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The next line the server prints on stdout after its address (e.g. the setup link).
    /// Blocks until there is one; call it only when a line is due.
    pub fn next_stdout_line(&mut self) -> String {
        let mut line = String::new();
        self._stdout.read_line(&mut line).expect("read server stdout");
        // The setup link's secret may show on stdout, and nowhere else.
        if let Some((_, secret)) = line.trim().split_once("/setup/") {
            remember_secret(secret.split_whitespace().next().unwrap_or_default());
        }
        line
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::env::var_os("TEST_LOG").is_some() {
            eprintln!("--- server log ---\n{}", self.log());
        }
        // The check point of the leak test: the process is gone, so the log and the data
        // file are complete. A test already failing is not made to abort by a second panic.
        if !std::thread::panicking() {
            let mut leaks = Vec::new();
            for path in [&self.log_path, &self.data_path] {
                // Unreadable is a failure, not a pass: a scan of nothing proves nothing.
                let bytes = std::fs::read(path)
                    .unwrap_or_else(|e| panic!("reading {} for the leak check: {e}", path.display()));
                let found = find_secrets(&bytes);
                leaks.extend(found.into_iter().map(|leak| format!("{}: {leak}", path.display())));
            }
            assert!(leaks.is_empty(), "secret leak: the server's files hold a secret:\n{}", leaks.join("\n"));
        }
    }
}

pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(child.id().to_string()).status().expect("kill");
    assert!(status.success());
}

/// A server with one user `alice` holding a key with `keys:read` and `keys:write`.
pub struct Fixture {
    /// Before `dir`: fields drop in order, and the server's leak check reads its log and data
    /// file, which must still exist then.
    pub server: TestServer,
    pub dir: TestDir,
    pub root_key: String,
}

pub fn alice() -> Fixture {
    alice_with(&[])
}

/// [`alice`], the server started with extra environment.
pub fn alice_with(env: &[(&str, &str)]) -> Fixture {
    let dir = TestDir::new();
    dir.add_user("alice");
    let root_key = dir.issue_key("alice", &["keys:read", "keys:write"]);
    let server = dir.start_with(&[], env);
    Fixture { server, dir, root_key }
}

/// Asserts an RFC 9457 problem response with the given status and code; returns the body.
#[track_caller]
pub fn assert_problem(response: Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_owned());
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    let bytes = response.bytes().expect("problem body");
    assert_no_secrets(&format!("a {status} {code} problem body"), &bytes);
    let body: Value = serde_json::from_slice(&bytes).expect("problem json");
    assert_eq!(body["code"], code, "body: {body}");
    assert_eq!(body["status"], status);
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(), "{body}");
    body
}

// ---------------------------------------------------------------------------------------
// The secret-leak check
// ---------------------------------------------------------------------------------------

/// Every secret seen issued, across all tests of this binary: a secret of one test has no
/// business in any other test's files either. Tokens are also caught by their shape.
static SECRETS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Shorter strings are too likely to occur by chance ("wrong" is not a secret worth a
/// false alarm); every real secret here is far longer.
const MIN_SECRET_LEN: usize = 8;

/// Remembers a secret the test has seen issued (or typed, for passwords), so that any later
/// scan fails if it shows up.
pub fn remember_secret(secret: &str) {
    if secret.len() < MIN_SECRET_LEN {
        return;
    }
    let mut secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    secrets.insert(secret.to_owned());
    // A token's 40 random characters leak it even without the prefix and checksum.
    if let Some(random) = secret.strip_prefix(TOKEN_PREFIX).and_then(|rest| rest.get(..TOKEN_RANDOM_LEN)) {
        secrets.insert(random.to_owned());
    }
}

/// Remembers the session and form cookies a response sets.
pub fn remember_cookies(response: &Response) {
    for set in response.headers().get_all("set-cookie") {
        let Ok(set) = set.to_str() else { continue };
        let pair = set.split(';').next().unwrap_or_default();
        if let Some((_, value)) = pair.split_once('=') {
            remember_secret(value.trim());
        }
    }
}

const TOKEN_PREFIX: &str = "ibp_";
/// The characters after the prefix: 40 random and 6 of checksum.
const TOKEN_BODY_LEN: usize = 46;
const TOKEN_RANDOM_LEN: usize = 40;

/// Every place in `bytes` holding a secret: anything token-shaped, and every remembered
/// secret. Each find is described with its offset and a redacted excerpt of its line.
/// Offsets count in the text as read, with invalid UTF-8 shown as U+FFFD (which never
/// swallows an ASCII byte, so no secret can hide in the conversion).
pub fn find_secrets(bytes: &[u8]) -> Vec<String> {
    // std's substring search is optimised even in a debug build; a byte loop here is not.
    let text = String::from_utf8_lossy(bytes);
    let bytes = text.as_bytes();
    // (offset, length, what), so that one secret found both ways is reported once.
    let mut found: Vec<(usize, usize, &str)> = Vec::new();
    // Token shape: the prefix and at least 46 base62 characters (a token with junk glued
    // to its end still leaks the token).
    for (i, _) in text.match_indices(TOKEN_PREFIX) {
        let run = bytes[i + TOKEN_PREFIX.len()..].iter().take_while(|b| b.is_ascii_alphanumeric()).count();
        if run >= TOKEN_BODY_LEN {
            found.push((i, TOKEN_PREFIX.len() + run, "a token-shaped string"));
        }
    }
    // Remembered secrets, found in one pass over `bytes` by their first bytes.
    let mut secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    secrets.insert(PASSWORD.to_owned());
    let heads: HashSet<&[u8]> = secrets.iter().map(|s| &s.as_bytes()[..MIN_SECRET_LEN]).collect();
    // A first-byte table spares most positions the hash (data files are mostly zeros);
    // a server's data file is scanned at every drop, crash rounds included.
    let mut first = [false; 256];
    secrets.iter().for_each(|s| first[usize::from(s.as_bytes()[0])] = true);
    for i in 0..bytes.len().saturating_sub(MIN_SECRET_LEN - 1) {
        if !first[usize::from(bytes[i])] || !heads.contains(&bytes[i..i + MIN_SECRET_LEN]) {
            continue;
        }
        for secret in &secrets {
            let covered = found.iter().any(|&(at, len, _)| at <= i && i + secret.len() <= at + len);
            if bytes[i..].starts_with(secret.as_bytes()) && !covered {
                found.push((i, secret.len(), "a secret issued during the tests"));
            }
        }
    }
    found.into_iter().map(|(at, len, what)| describe(bytes, at, len, what)).collect()
}

/// "offset N: WHAT in `…line with [ibp_a1B2…redacted]…`": the secret cut to its first
/// eight characters (a token's public `start`), the line cut to 80 characters either side.
fn describe(bytes: &[u8], at: usize, len: usize, what: &str) -> String {
    const CONTEXT: usize = 80;
    let line_start = bytes[..at].iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1).max(at.saturating_sub(CONTEXT));
    let end = at + len;
    let line_end = bytes[end..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |p| p + end).min(end + CONTEXT);
    let shown = |part: &[u8]| String::from_utf8_lossy(part).chars().flat_map(char::escape_debug).collect::<String>();
    let head = shown(&bytes[at..at + len.min(8)]);
    format!(
        "offset {at}: {what} in `{}[{head}…redacted]{}`",
        shown(&bytes[line_start..at]),
        shown(&bytes[end..line_end])
    )
}

/// Fails the test if `bytes` (described as `what`) holds a secret.
#[track_caller]
pub fn assert_no_secrets(what: &str, bytes: &[u8]) {
    let found = find_secrets(bytes);
    assert!(found.is_empty(), "secret leak: {what} holds a secret:\n{}", found.join("\n"));
}

/// Fails the test if the file at `path` holds a secret.
#[track_caller]
pub fn assert_no_secrets_in_file(path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {} for the leak check: {e}", path.display()));
    assert_no_secrets(&path.display().to_string(), &bytes);
}

// ---------------------------------------------------------------------------------------
// A signed-in browser, for tests that need the settings pages
// ---------------------------------------------------------------------------------------

/// A session made through the sign-in form: the cookie to send and a form token for POSTs.
pub struct Session {
    pub cookie: String,
    pub csrf: String,
    client: Client,
}

/// The first `csrf` form field's value on an HTML page.
pub fn csrf_of(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\"")?;
    let tag = &html[html[..at].rfind('<')?..];
    let tag = &tag[..tag.find('>')?];
    let value = &tag[tag.find(" value=\"")? + " value=\"".len()..];
    Some(value[..value.find('"')?].to_owned())
}

impl TestServer {
    /// Signs in through the form (as a browser does: form cookie, token, Origin) and panics
    /// unless it works. Redirects are not followed, so a test sees each 303.
    pub fn sign_in(&self, username: &str, password: &str) -> Session {
        let client = Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let form = client.get(self.url("/login")).send().expect("GET /login");
        remember_cookies(&form);
        let form_cookie = cookie_pair(&form, "ibp_form").expect("the sign-in form sets ibp_form");
        let csrf = csrf_of(&form.text().expect("login page")).expect("the sign-in form has a token");
        remember_secret(password);
        let done = client
            .post(self.url("/login"))
            .header("cookie", form_cookie)
            .header("origin", &self.base)
            .form(&[("csrf", csrf.as_str()), ("username", username), ("password", password)])
            .send()
            .expect("POST /login");
        remember_cookies(&done);
        assert_eq!(done.status(), 303, "sign-in failed: {}", done.text().unwrap_or_default());
        let cookie = cookie_pair(&done, "ibp_session").expect("signing in sets ibp_session");
        let profile = client.get(self.url("/settings/profile")).header("cookie", &cookie).send().expect("profile");
        assert_eq!(profile.status(), 200);
        let csrf = csrf_of(&profile.text().expect("profile page")).expect("the profile page has a form token");
        Session { cookie, csrf, client }
    }

    /// A GET with `session`'s cookie.
    pub fn page(&self, session: &Session, path: &str) -> RequestBuilder {
        session.client.get(self.url(path)).header("cookie", &session.cookie)
    }

    /// A form POST with `session`'s cookie and this site's Origin; add the `csrf` field
    /// (`session.csrf`) to the body for it to be accepted.
    pub fn form_post(&self, session: &Session, path: &str) -> RequestBuilder {
        session.client.post(self.url(path)).header("cookie", &session.cookie).header("origin", &self.base)
    }
}

/// `name=value` of the cookie `name` that `response` sets.
fn cookie_pair(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
        .find(|pair| pair.starts_with(&format!("{name}=")))
}
