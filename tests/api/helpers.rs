//! Shared set-up for the black-box tests: every test gets its own temp folder and data
//! file, runs the real `iblueprint` binary, and talks to it over real HTTP on loopback.
//!
//! The server's log goes to `server.log` in the test's folder; set `TEST_LOG=1` to have it
//! printed when a test server is dropped.

#![allow(dead_code)] // each test binary that includes these helpers uses a different subset

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};

use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::Value;
use tempfile::TempDir;

pub const PASSWORD: &str = "correct horse battery staple";

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_iblueprint")
}

/// A temp folder holding one data file, outliving server restarts.
pub struct TestDir {
    pub dir: TempDir,
}

impl TestDir {
    pub fn new() -> Self {
        TestDir { dir: tempfile::tempdir().expect("temp dir") }
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
        String::from_utf8(out.stdout).expect("utf8").trim().to_owned()
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
            .env_remove("RUST_LOG")
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
        TestServer { base: addr, child, _stdout: stdout, log_path, client: Client::new() }
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
    child.wait_with_output().expect("wait")
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
    pub client: Client,
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
        request.send().expect("request")
    }

    /// Creates a key through the API and returns (key object, secret).
    pub fn create_key(&self, key: &str, body: Value) -> (Value, String) {
        let response = self.post("/v1/keys", Some(key), &body);
        assert_eq!(response.status(), 201, "create failed: {}", response.text().unwrap_or_default());
        let json: Value = response.json().expect("json");
        let secret = json["secret"].as_str().expect("secret").to_owned();
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
    }
}

pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill").arg(format!("-{name}")).arg(child.id().to_string()).status().expect("kill");
    assert!(status.success());
}

/// A server with one user `alice` holding a key with `keys:read` and `keys:write`.
pub struct Fixture {
    pub dir: TestDir,
    pub server: TestServer,
    pub root_key: String,
}

pub fn alice() -> Fixture {
    let dir = TestDir::new();
    dir.add_user("alice");
    let root_key = dir.issue_key("alice", &["keys:read", "keys:write"]);
    let server = dir.start();
    Fixture { dir, server, root_key }
}

/// Asserts an RFC 9457 problem response with the given status and code; returns the body.
#[track_caller]
pub fn assert_problem(response: Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_owned());
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    let body: Value = response.json().expect("problem json");
    assert_eq!(body["code"], code, "body: {body}");
    assert_eq!(body["status"], status);
    assert!(body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(), "{body}");
    body
}
