//! The command line as an operator meets it (SPEC §1, §2, §9): `users …` straight on the
//! data file, `version`, and how `serve` takes its configuration, starts, stops and logs.
//! Every case runs the real binary; exit codes and the one-line error on stderr are part
//! of the contract (0 ok, 1 runtime failure, 2 usage or configuration error).

#[path = "api/helpers.rs"]
mod helpers;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use helpers::*;

/// How long a process gets to do what it should (print its address, or exit).
const DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Small helpers of this file
// ---------------------------------------------------------------------------------------

fn stdout_of(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("stderr is UTF-8")
}

/// Asserts the exit code and that stderr is exactly one line, `error: …`, mentioning every
/// one of `mentions`. Returns that line.
#[track_caller]
fn assert_fails(out: &Output, code: i32, mentions: &[&str]) -> String {
    let stderr = stderr_of(out);
    assert_eq!(out.status.code(), Some(code), "expected exit {code}; stdout: {:?}; stderr: {stderr:?}", stdout_of(out));
    assert_one_error_line(&stderr, mentions)
}

#[track_caller]
fn assert_one_error_line(stderr: &str, mentions: &[&str]) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr must be exactly one line, got: {stderr:?}");
    let line = lines[0];
    assert!(line.starts_with("error: "), "stderr line must start with `error: `: {line:?}");
    for mention in mentions {
        assert!(line.contains(mention), "stderr must mention {mention:?}: {line:?}");
    }
    line.to_owned()
}

#[track_caller]
fn assert_ok(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "expected success; stdout: {:?}; stderr: {:?}",
        stdout_of(out),
        stderr_of(out)
    );
}

/// One row of `users list`.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    username: String,
    role: String,
    status: String,
    created: String,
    id: String,
}

/// Runs `users list` and parses its table, checking the header.
#[track_caller]
fn list_users(dir: &TestDir) -> Vec<Row> {
    let out = cli(dir, &["users", "list"], "");
    assert_ok(&out);
    let stdout = stdout_of(&out);
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines.next().expect("a header line").split_whitespace().collect();
    assert_eq!(header, ["USERNAME", "ROLE", "STATUS", "CREATED", "ID"], "{stdout}");
    lines
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cells.len(), 5, "a row has five cells: {line:?}");
            Row {
                username: cells[0].into(),
                role: cells[1].into(),
                status: cells[2].into(),
                created: cells[3].into(),
                id: cells[4].into(),
            }
        })
        .collect()
}

#[track_caller]
fn row<'a>(rows: &'a [Row], username: &str) -> &'a Row {
    rows.iter()
        .find(|r| r.username == username)
        .unwrap_or_else(|| panic!("{username} is not in `users list`: {rows:?}"))
}

/// `iblueprint ARGS…` on `dir`'s data file (through IBLUEPRINT_DATA, like helpers'
/// `run_cli`), but a command that exits before reading its stdin is not a test failure:
/// helpers' `run_cli` panics on the broken pipe.
fn cli(dir: &TestDir, args: &[&str], stdin: &str) -> Output {
    let mut command = Command::new(binary());
    command.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("IBLUEPRINT_") {
            command.env_remove(name);
        }
    }
    command.env("IBLUEPRINT_DATA", dir.data());
    let mut child =
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn iblueprint");
    let mut input = child.stdin.take().expect("stdin");
    match input.write_all(stdin.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.expect("write stdin"),
    }
    drop(input);
    child.wait_with_output().expect("wait")
}

fn password_line() -> String {
    format!("{PASSWORD}\n")
}

/// `iblueprint ARGS…` with none of the developer's `IBLUEPRINT_*` or `RUST_LOG` settings,
/// run in `cwd` so a default `./data/…` lands in a temp folder, never in the repo.
fn command_in(cwd: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command.args(args).current_dir(cwd).env_remove("RUST_LOG").stdin(Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("IBLUEPRINT_") {
            command.env_remove(name);
        }
    }
    command
}

/// Runs a command that is expected to exit by itself (e.g. `serve` with a bad config),
/// killing it and failing the test if it is still running at the deadline.
fn run_to_exit(mut command: Command, scratch: &Path) -> Output {
    let out_path = scratch.join("run.stdout");
    let err_path = scratch.join("run.stderr");
    let mut child = command
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn iblueprint");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the process was still running after {DEADLINE:?} (did `serve` start despite the error?); stdout: {:?}",
                std::fs::read_to_string(&out_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: std::fs::read(&out_path).expect("read stdout"),
        stderr: std::fs::read(&err_path).expect("read stderr"),
    }
}

/// A `serve` process this file started itself (helpers' `start_with` always passes
/// `--data`, which the configuration tests must not).
struct Served {
    child: Child,
    /// `IP:PORT` from the `iblueprint listening on http://…` line.
    addr: String,
    log_path: PathBuf,
    client: reqwest::blocking::Client,
}

impl Served {
    /// Spawns `command` (stderr to `log_path`) and waits, bounded, for the listening line.
    fn start(mut command: Command, log_path: PathBuf) -> Served {
        // As every black-box server: debug logging everywhere, scanned for secrets at the end.
        command.env("RUST_LOG", "debug");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut child = command.stdout(Stdio::piped()).stderr(log).spawn().expect("spawn iblueprint serve");
        let stdout = child.stdout.take().expect("stdout");
        let (lines_tx, lines) = mpsc::channel();
        // A reader thread, so the wait for the line can have a deadline.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let started = Instant::now();
        let addr = loop {
            let left = DEADLINE.saturating_sub(started.elapsed());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.trim().strip_prefix("iblueprint listening on http://") {
                        break addr.to_owned();
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait().expect("wait");
                    panic!(
                        "serve did not print its address (exit: {status}); log:\n{}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                }
            }
        };
        Served { child, addr, log_path, client: reqwest::blocking::Client::new() }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn post(&self, path: &str, key: &str, body: &Value) -> reqwest::blocking::Response {
        self.client.post(self.url(path)).bearer_auth(key).json(body).send().expect("request")
    }

    /// GET /v1/health answers 200. Also proves the server is past its start-up (see
    /// `sigterm_right_after_the_listening_line_still_exits_0`).
    #[track_caller]
    fn assert_healthy(&self) {
        let response = self.client.get(self.url("/v1/health")).send().expect("health");
        assert_eq!(response.status(), 200);
    }

    /// SIGTERM and wait for the exit.
    fn stop(mut self) -> ExitStatus {
        signal(&self.child, "TERM");
        self.child.wait().expect("wait for serve")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            assert_no_secrets_in_file(&self.log_path);
        }
    }
}

// ---------------------------------------------------------------------------------------
// users add / list
// ---------------------------------------------------------------------------------------

#[test]
fn users_add_then_list_shows_each_user_with_role_and_status() {
    let dir = TestDir::new();
    let out = cli(&dir, &["users", "add", "alice", "--admin", "--password-stdin"], &password_line());
    assert_ok(&out);
    let said = stdout_of(&out);
    assert!(said.starts_with("added admin alice (usr_"), "{said:?}");
    let out = cli(&dir, &["users", "add", "bob", "--password-stdin"], &password_line());
    assert_ok(&out);
    assert!(stdout_of(&out).starts_with("added member bob (usr_"), "{:?}", stdout_of(&out));

    let rows = list_users(&dir);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let alice = row(&rows, "alice");
    assert_eq!((alice.role.as_str(), alice.status.as_str()), ("admin", "active"));
    let bob = row(&rows, "bob");
    assert_eq!((bob.role.as_str(), bob.status.as_str()), ("member", "active"));
    for r in &rows {
        assert!(r.id.starts_with("usr_"), "{r:?}");
        assert!(OffsetDateTime::parse(&r.created, &Rfc3339).is_ok(), "created is RFC 3339: {r:?}");
    }
    assert_eq!(said, format!("added admin alice ({})\n", alice.id), "add prints the id that list shows");
}

#[test]
fn the_first_users_add_says_it_created_the_data_file() {
    let dir = TestDir::new();
    assert!(!dir.data().exists());
    let out = cli(&dir, &["users", "add", "alice", "--password-stdin"], &password_line());
    assert_ok(&out);
    assert!(dir.data().exists(), "users add creates the data file");
    let stderr = stderr_of(&out);
    assert!(stderr.contains("created a new data file"), "{stderr:?}");
    // A second add on the now existing file says nothing about creating one.
    let out = cli(&dir, &["users", "add", "bob", "--password-stdin"], &password_line());
    assert_ok(&out);
    assert_eq!(stderr_of(&out), "");
}

#[test]
fn adding_the_same_username_twice_fails_saying_it_exists() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let out = cli(&dir, &["users", "add", "alice", "--password-stdin"], &password_line());
    assert_fails(&out, 1, &["alice", "already exists"]);
    assert_eq!(list_users(&dir).len(), 1, "the refused add left a second alice behind");
}

#[test]
fn a_bad_username_exits_2_naming_the_username_rule() {
    let dir = TestDir::new();
    dir.add_user("alice");
    for bad in ["Bad Name", "Alice", "_underscore_first", "semi;colon", ""] {
        let out = cli(&dir, &["users", "add", bad, "--password-stdin"], &password_line());
        assert_fails(&out, 2, &["username"]);
    }
    assert_eq!(list_users(&dir).len(), 1);
}

#[test]
fn a_bad_username_on_a_fresh_path_leaves_no_data_file_behind() {
    let dir = TestDir::new();
    let out = cli(&dir, &["users", "add", "Bad Name", "--password-stdin"], &password_line());
    assert_fails(&out, 2, &["username"]);
    assert!(
        !dir.data().exists(),
        "a refused `users add` (bad username) created the data file {} although it did not exist before \
         (src/admin.rs promises `a refused add leaves nothing behind`)",
        dir.data().display()
    );
}

#[test]
fn a_too_short_password_exits_2_and_leaves_no_data_file_behind() {
    let dir = TestDir::new();
    let out = cli(&dir, &["users", "add", "alice", "--password-stdin"], "short\n");
    assert_fails(&out, 2, &["password", "at least 8"]);
    assert!(!dir.data().exists(), "a refused add created {}", dir.data().display());
    assert!(
        std::fs::read_dir(dir.dir.path()).unwrap().next().is_none(),
        "the temp folder must stay empty after a refused add"
    );
}

#[test]
fn a_too_short_password_on_an_existing_file_exits_2_and_adds_nobody() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let out = cli(&dir, &["users", "add", "bob", "--password-stdin"], "short\n");
    assert_fails(&out, 2, &["password"]);
    let rows = list_users(&dir);
    assert_eq!(rows.iter().map(|r| r.username.as_str()).collect::<Vec<_>>(), ["alice"]);
}

#[test]
fn users_add_without_a_terminal_or_password_stdin_exits_2_saying_to_pass_password_stdin() {
    let dir = TestDir::new();
    let out = cli(&dir, &["users", "add", "alice"], "");
    assert_fails(&out, 2, &["--password-stdin"]);
    assert!(!dir.data().exists());
}

#[test]
fn users_list_without_a_data_file_exits_1_and_does_not_create_one() {
    let dir = TestDir::new();
    let out = cli(&dir, &["users", "list"], "");
    assert_fails(&out, 1, &["no data file", &dir.data().display().to_string()]);
    assert!(!dir.data().exists(), "users list created {}", dir.data().display());
    assert_eq!(stdout_of(&out), "", "nothing on stdout when listing fails");
}

#[test]
fn every_users_command_but_add_refuses_a_missing_data_file_without_creating_it() {
    let dir = TestDir::new();
    for args in [
        &["users", "passwd", "alice", "--password-stdin"][..],
        &["users", "disable", "alice"],
        &["users", "enable", "alice"],
        &["users", "issue-key", "alice", "--name", "k"],
    ] {
        let out = cli(&dir, args, &password_line());
        assert_fails(&out, 1, &["no data file"]);
        assert!(!dir.data().exists(), "{args:?} created the data file");
    }
}

// ---------------------------------------------------------------------------------------
// users passwd / disable / enable
// ---------------------------------------------------------------------------------------

#[test]
fn users_passwd_changes_the_password_of_a_known_user() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let out = cli(&dir, &["users", "passwd", "alice", "--password-stdin"], "a whole new passphrase\n");
    assert_ok(&out);
    assert_eq!(stdout_of(&out), "password changed for alice\n");
}

#[test]
fn users_passwd_for_an_unknown_user_exits_1_naming_the_user() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let out = cli(&dir, &["users", "passwd", "mallory", "--password-stdin"], &password_line());
    assert_fails(&out, 1, &["mallory"]);
}

#[test]
fn users_passwd_with_a_too_short_password_exits_2() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let out = cli(&dir, &["users", "passwd", "alice", "--password-stdin"], "short\n");
    assert_fails(&out, 2, &["password"]);
}

#[test]
fn users_disable_and_enable_change_the_status_in_users_list() {
    let dir = TestDir::new();
    dir.add_user("alice");
    dir.add_user("bob");

    let out = cli(&dir, &["users", "disable", "alice"], "");
    assert_ok(&out);
    assert!(stdout_of(&out).starts_with("disabled alice"), "{:?}", stdout_of(&out));
    let rows = list_users(&dir);
    assert_eq!(row(&rows, "alice").status, "disabled");
    assert_eq!(row(&rows, "bob").status, "active", "disabling alice must not touch bob");

    let out = cli(&dir, &["users", "enable", "alice"], "");
    assert_ok(&out);
    assert_eq!(stdout_of(&out), "enabled alice\n");
    let rows = list_users(&dir);
    assert_eq!(row(&rows, "alice").status, "active");
    assert_eq!(row(&rows, "bob").status, "active");
}

#[test]
fn users_disable_and_enable_of_an_unknown_user_exit_1_naming_the_user() {
    let dir = TestDir::new();
    dir.add_user("alice");
    for verb in ["disable", "enable"] {
        let out = cli(&dir, &["users", verb, "mallory"], "");
        assert_fails(&out, 1, &["mallory"]);
    }
}

// ---------------------------------------------------------------------------------------
// users issue-key
// ---------------------------------------------------------------------------------------

#[test]
fn issue_key_prints_exactly_one_working_token_with_its_limit_and_expiry() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let before = OffsetDateTime::now_utc().unix_timestamp();
    let out = cli(
        &dir,
        &[
            "users",
            "issue-key",
            "alice",
            "--name",
            "k",
            "--scope",
            "keys:read",
            "--per-hour",
            "10",
            "--expires-in",
            "7d",
        ],
        "",
    );
    let after = OffsetDateTime::now_utc().unix_timestamp();
    assert_ok(&out);
    let stdout = stdout_of(&out);
    assert!(stdout.ends_with('\n') && stdout.lines().count() == 1, "exactly one line on stdout: {stdout:?}");
    let token = stdout.trim_end_matches('\n');
    assert_eq!(token.len(), 50, "{token:?}");
    assert!(token.starts_with("ibp_"), "{token:?}");
    assert!(token[4..].bytes().all(|b| b.is_ascii_alphanumeric()), "base62 after the prefix: {token:?}");
    assert!(!stderr_of(&out).contains(token), "the secret belongs on stdout only");

    let server = dir.start();
    let response = server.get("/v1/me", Some(token));
    assert_eq!(response.status(), 200);
    let me: Value = response.json().unwrap();
    assert_eq!(me["user"]["username"], "alice");
    let key = &me["key"];
    assert_eq!(key["name"], "k");
    assert_eq!(key["scopes"], json!(["keys:read"]));
    assert_eq!(key["rate_limit"], json!({"per_hour": 10, "per_day": null}));
    assert_eq!(key["start"], &token[..8]);
    assert_eq!(key["end"], &token[46..]);
    let expires = key["expires_at"].as_str().expect("expires_at is set");
    let expires = OffsetDateTime::parse(expires, &Rfc3339).expect("RFC 3339").unix_timestamp();
    let week = 7 * 86_400;
    assert!(
        (before + week..=after + week + 1).contains(&expires),
        "expires_at {expires} must be 7 days after issuing ({before}..={after})"
    );
    // The stderr note names the key id the server reports.
    let id = key["id"].as_str().unwrap();
    assert!(stderr_of(&out).contains(id), "stderr names the new key id {id}: {:?}", stderr_of(&out));
    // The scope was granted.
    assert_eq!(server.get("/v1/keys", Some(token)).status(), 200);
}

#[test]
fn issue_key_for_a_disabled_user_works_but_says_the_key_is_refused_until_enabled() {
    let dir = TestDir::new();
    dir.add_user("alice");
    assert_ok(&cli(&dir, &["users", "disable", "alice"], ""));
    let out = cli(&dir, &["users", "issue-key", "alice", "--name", "prepared"], "");
    assert_ok(&out);
    assert_eq!(stdout_of(&out).trim().len(), 50, "the token: {}", stdout_of(&out));
    let stderr = stderr_of(&out);
    assert!(stderr.contains("alice is disabled") && stderr.contains("users enable alice"), "{stderr}");
}

#[test]
fn issue_key_with_a_bad_expires_in_exits_2_naming_the_flag() {
    let dir = TestDir::new();
    dir.add_user("alice");
    for bad in ["7w", "7", "d", "-1d"] {
        let out = cli(&dir, &["users", "issue-key", "alice", "--name", "k", &format!("--expires-in={bad}")], "");
        assert_fails(&out, 2, &["--expires-in"]);
        assert_eq!(stdout_of(&out), "", "no token printed");
    }
}

#[test]
fn issue_key_with_per_hour_0_exits_2_naming_the_flag() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let out = cli(&dir, &["users", "issue-key", "alice", "--name", "k", "--per-hour", "0"], "");
    assert_fails(&out, 2, &["--per-hour"]);
    assert_eq!(stdout_of(&out), "");
    let out = cli(&dir, &["users", "issue-key", "alice", "--name", "k", "--per-day", "0"], "");
    assert_fails(&out, 2, &["--per-day"]);
}

#[test]
fn issue_key_with_a_bad_scope_or_name_exits_2_naming_the_flag() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let out = cli(&dir, &["users", "issue-key", "alice", "--name", "k", "--scope", "Not A Scope"], "");
    assert_fails(&out, 2, &["--scope"]);
    let long = "n".repeat(101);
    let out = cli(&dir, &["users", "issue-key", "alice", "--name", &long], "");
    assert_fails(&out, 2, &["--name"]);
}

#[test]
fn issue_key_for_an_unknown_user_exits_1_naming_the_user() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let out = cli(&dir, &["users", "issue-key", "mallory", "--name", "k"], "");
    assert_fails(&out, 1, &["mallory"]);
    assert_eq!(stdout_of(&out), "");
}

#[test]
fn issue_key_without_the_name_flag_exits_2() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let out = cli(&dir, &["users", "issue-key", "alice"], "");
    assert_eq!(out.status.code(), Some(2), "{:?}", stderr_of(&out));
    assert!(stderr_of(&out).contains("--name"), "{:?}", stderr_of(&out));
}

// ---------------------------------------------------------------------------------------
// users … while the server runs
// ---------------------------------------------------------------------------------------

#[test]
fn users_commands_are_refused_while_a_server_holds_the_file_and_work_after_it_stops() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let server = dir.start();
    let path = dir.data().display().to_string();
    for (args, stdin) in [
        (&["users", "list"][..], String::new()),
        (&["users", "add", "bob", "--password-stdin"], password_line()),
        (&["users", "disable", "alice"], String::new()),
        (&["users", "issue-key", "alice", "--name", "k"], String::new()),
    ] {
        let out = cli(&dir, args, &stdin);
        assert_fails(&out, 1, &["held by a running", &path]);
    }
    assert!(server.stop().success());

    assert_ok(&cli(&dir, &["users", "add", "bob", "--password-stdin"], &password_line()));
    let rows = list_users(&dir);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(row(&rows, "alice").status, "active", "the refused disable must not have applied");
}

// ---------------------------------------------------------------------------------------
// Finding the data file
// ---------------------------------------------------------------------------------------

#[test]
fn the_data_file_is_found_through_iblueprint_data() {
    let dir = TestDir::new();
    // helpers' run_cli passes the file only through IBLUEPRINT_DATA.
    let out = run_cli(&["users", "add", "alice", "--password-stdin"], Some(&dir.data()), &password_line());
    assert_ok(&out);
    assert!(dir.data().exists());
    let out = run_cli(&["users", "list"], Some(&dir.data()), "");
    assert_ok(&out);
    assert!(stdout_of(&out).contains("alice"));
}

#[test]
fn the_data_file_is_found_through_the_data_flag() {
    let dir = TestDir::new();
    let data = dir.dir.path().join("by-flag.redb");
    let data_str = data.to_str().unwrap();
    let out = run_cli(&["users", "add", "alice", "--password-stdin", "--data", data_str], None, &password_line());
    assert_ok(&out);
    assert!(data.exists(), "--data must create the file it names");
    let out = run_cli(&["users", "list", "--data", data_str], None, "");
    assert_ok(&out);
    assert!(stdout_of(&out).contains("alice"));
}

#[test]
fn the_data_flag_beats_iblueprint_data() {
    let dir = TestDir::new();
    let by_flag = dir.dir.path().join("by-flag.redb");
    let out = run_cli(
        &["users", "add", "alice", "--password-stdin", "--data", by_flag.to_str().unwrap()],
        Some(&dir.data()),
        &password_line(),
    );
    assert_ok(&out);
    assert!(by_flag.exists());
    assert!(!dir.data().exists(), "IBLUEPRINT_DATA was used although --data was given");
}

// ---------------------------------------------------------------------------------------
// A damaged data file, or a folder where it should be
// ---------------------------------------------------------------------------------------

/// Runs each command that opens the data file at `data` (in `dir`, with `backup` a good
/// backup to import) and returns what each printed, by its command line.
fn every_opener(dir: &Path, data: &Path, backup: &Path) -> Vec<(String, Output)> {
    let (data, backup) = (data.to_str().unwrap(), backup.to_str().unwrap());
    let out = dir.join("out.redb");
    let out = out.to_str().unwrap();
    [
        &["users", "list", "--data", data][..],
        &["users", "issue-key", "alice", "--name", "k", "--data", data],
        &["serve", "--listen", "127.0.0.1:0", "--data", data],
        &["backup", "--out", out, "--data", data],
        &["import", backup, "--data", data, "--merge"],
        &["import", backup, "--data", data, "--merge", "--dry-run"],
    ]
    .into_iter()
    .map(|args| (args.join(" "), run_to_exit(command_in(dir, args), dir)))
    .collect()
}

#[test]
fn a_truncated_data_file_is_called_damaged_once_by_every_command_that_opens_it_and_left_as_it_was() {
    let dir = TestDir::new();
    dir.add_user("alice");
    dir.issue_key("alice", &[]);
    let work = dir.dir.path();
    let backup = work.join("good.jsonl");
    assert_ok(&dir.cli(&["backup", "--out", backup.to_str().unwrap(), "--format", "jsonl"], ""));
    let whole = std::fs::read(dir.data()).unwrap();
    // Cut inside the header, inside the first pages, and halfway.
    for len in [100, 5_000, whole.len() / 2] {
        let cut = work.join(format!("cut-{len}.redb"));
        std::fs::write(&cut, &whole[..len]).unwrap();
        let path = cut.display().to_string();
        for (command, out) in every_opener(work, &cut, &backup) {
            let line = assert_fails(&out, 1, &[&path, "damaged or truncated", "restore it from a backup"]);
            assert!(!line.contains("I/O error") && !line.contains("fill whole buffer"), "{command}: {line}");
            assert_eq!(line.matches("damaged").count(), 1, "{command} says it once: {line}");
        }
        assert!(std::fs::read(&cut).unwrap() == whole[..len], "a damaged file is left as it was ({len} bytes)");
        assert!(!work.join("out.redb").exists(), "no backup of a damaged file");
    }
}

#[test]
fn a_folder_given_as_the_data_file_is_refused_naming_it_once() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let work = dir.dir.path();
    let backup = work.join("good.jsonl");
    assert_ok(&dir.cli(&["backup", "--out", backup.to_str().unwrap(), "--format", "jsonl"], ""));
    let folder = work.join("folder");
    std::fs::create_dir(&folder).unwrap();
    let path = folder.display().to_string();
    let mut runs = every_opener(work, &folder, &backup);
    runs.push(("check".into(), run_to_exit(command_in(work, &["check", "--data", &path]), work)));
    for (command, out) in runs {
        let line = assert_fails(&out, 1, &[&path, "is a folder", "point --data"]);
        assert!(!line.contains("os error"), "{command}: {line}");
    }
    assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 0, "nothing was created in the folder");
}

// ---------------------------------------------------------------------------------------
// version and usage errors
// ---------------------------------------------------------------------------------------

#[test]
fn version_prints_the_package_version() {
    let out = run_cli(&["version"], None, "");
    assert_ok(&out);
    assert_eq!(stdout_of(&out), format!("iblueprint {}\n", env!("CARGO_PKG_VERSION")));
    assert_eq!(stderr_of(&out), "");
}

#[test]
fn an_unknown_subcommand_exits_2_naming_it() {
    let out = run_cli(&["frobnicate"], None, "");
    assert_eq!(out.status.code(), Some(2), "{:?}", stderr_of(&out));
    let stderr = stderr_of(&out);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("error: ") && first.contains("frobnicate"), "{stderr:?}");
    assert_eq!(stdout_of(&out), "");
}

#[test]
fn an_unknown_users_subcommand_or_flag_exits_2() {
    let dir = TestDir::new();
    for args in [&["users", "remove", "alice"][..], &["users", "list", "--colour"]] {
        let out = cli(&dir, args, "");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {:?}", stderr_of(&out));
    }
    assert!(!dir.data().exists());
}

// ---------------------------------------------------------------------------------------
// serve: configuration errors
// ---------------------------------------------------------------------------------------

/// Asserts that a `serve` run failed as a configuration error: exit 2, one line naming
/// `culprit`, never listening, and no data file created in the working folder.
#[track_caller]
fn assert_serve_refused(out: &Output, cwd: &Path, culprit: &[&str]) -> String {
    let line = assert_fails(out, 2, culprit);
    assert!(!stdout_of(out).contains("listening"), "serve started: {:?}", stdout_of(out));
    assert!(!cwd.join("data").exists(), "serve created ./data despite the configuration error");
    line
}

#[test]
fn an_unknown_key_in_the_config_file_exits_2_naming_the_key_and_the_file() {
    let dir = TestDir::new();
    let config = dir.dir.path().join("bad.toml");
    std::fs::write(&config, "lisen = \"x\"\n").unwrap();
    let out = run_to_exit(command_in(dir.dir.path(), &["serve", "--config", config.to_str().unwrap()]), dir.dir.path());
    assert_serve_refused(&out, dir.dir.path(), &["`lisen`", &config.display().to_string()]);
}

#[test]
fn a_bad_listen_variable_exits_2_naming_iblueprint_listen() {
    let dir = TestDir::new();
    let mut command = command_in(dir.dir.path(), &["serve"]);
    command.env("IBLUEPRINT_LISTEN", "nonsense");
    let out = run_to_exit(command, dir.dir.path());
    assert_serve_refused(&out, dir.dir.path(), &["IBLUEPRINT_LISTEN", "nonsense"]);
}

#[test]
fn a_bad_log_format_flag_exits_2_naming_the_flag() {
    let dir = TestDir::new();
    let out = run_to_exit(command_in(dir.dir.path(), &["serve", "--log-format", "yaml"]), dir.dir.path());
    assert_serve_refused(&out, dir.dir.path(), &["--log-format", "yaml"]);
}

#[test]
fn a_missing_config_file_exits_2_naming_the_file() {
    let dir = TestDir::new();
    let config = dir.dir.path().join("absent.toml");
    let out = run_to_exit(command_in(dir.dir.path(), &["serve", "--config", config.to_str().unwrap()]), dir.dir.path());
    assert_serve_refused(&out, dir.dir.path(), &[&config.display().to_string()]);
}

#[test]
fn a_missing_config_file_named_by_iblueprint_config_exits_2_naming_the_file() {
    let dir = TestDir::new();
    let config = dir.dir.path().join("absent.toml");
    let mut command = command_in(dir.dir.path(), &["serve"]);
    command.env("IBLUEPRINT_CONFIG", &config);
    let out = run_to_exit(command, dir.dir.path());
    assert_serve_refused(&out, dir.dir.path(), &[&config.display().to_string()]);
}

#[test]
fn a_bad_value_in_the_config_file_exits_2_naming_the_key() {
    let dir = TestDir::new();
    let config = dir.dir.path().join("bad.toml");
    std::fs::write(&config, "max_keys_per_user = 0\n").unwrap();
    let out = run_to_exit(command_in(dir.dir.path(), &["serve", "--config", config.to_str().unwrap()]), dir.dir.path());
    assert_serve_refused(&out, dir.dir.path(), &["max_keys_per_user", &config.display().to_string()]);
}

#[test]
fn serve_on_a_data_file_held_by_another_server_exits_1_saying_so() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let _running = dir.start();
    let data = dir.data();
    let out = run_to_exit(
        command_in(dir.dir.path(), &["serve", "--listen", "127.0.0.1:0", "--data", data.to_str().unwrap()]),
        dir.dir.path(),
    );
    assert_fails(&out, 1, &["held by a running"]);
    assert!(!stdout_of(&out).contains("listening"));
}

#[test]
fn serve_on_an_address_already_in_use_exits_1_naming_it_and_what_to_do() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let data = dir.data();
    let mut command = command_in(dir.dir.path(), &["serve", "--listen", &address, "--data", data.to_str().unwrap()]);
    command.env("RUST_LOG", "warn");
    let out = run_to_exit(command, dir.dir.path());
    assert_fails(&out, 1, &[&address, "already in use", "--listen"]);
    assert!(!stdout_of(&out).contains("listening"));
}

// ---------------------------------------------------------------------------------------
// serve: precedence and defaults
// ---------------------------------------------------------------------------------------

/// Writes a config file into `dir` and returns its path.
fn config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("iblueprint.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn toml_path(path: &Path) -> String {
    // TOML basic strings need backslashes escaped; temp paths on Unix have none.
    format!("\"{}\"", path.display().to_string().replace('\\', "\\\\"))
}

#[test]
fn the_listen_flag_beats_listen_in_the_config_file() {
    let dir = TestDir::new();
    let data = dir.dir.path().join("from-file.redb");
    // An address no local socket can bind: if the file won, serve would fail to start.
    let config = config_file(dir.dir.path(), &format!("listen = \"192.0.2.1:9\"\ndata = {}\n", toml_path(&data)));
    let command =
        command_in(dir.dir.path(), &["serve", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    let served = Served::start(command, dir.dir.path().join("serve.log"));
    let (ip, port) = served.addr.rsplit_once(':').expect("IP:PORT");
    assert_eq!(ip, "127.0.0.1", "{}", served.addr);
    assert_ne!(port, "0");
    assert_ne!(port, "9");
    served.assert_healthy();
    assert_eq!(served.stop().code(), Some(0));
}

#[test]
fn data_from_the_config_file_is_used_when_no_flag_or_variable_sets_it() {
    let dir = TestDir::new();
    let data = dir.dir.path().join("nested").join("from-file.redb");
    let config = config_file(dir.dir.path(), &format!("data = {}\n", toml_path(&data)));
    let command =
        command_in(dir.dir.path(), &["serve", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    let served = Served::start(command, dir.dir.path().join("serve.log"));
    assert!(data.exists(), "the data file from the config file was not created at {}", data.display());
    assert!(!dir.dir.path().join("data").exists(), "the default ./data was used instead of the config file's");
    served.assert_healthy();
    assert_eq!(served.stop().code(), Some(0));
}

#[test]
fn iblueprint_data_beats_data_in_the_config_file() {
    let dir = TestDir::new();
    let from_file = dir.dir.path().join("from-file.redb");
    let from_env = dir.dir.path().join("from-env.redb");
    let config = config_file(dir.dir.path(), &format!("data = {}\n", toml_path(&from_file)));
    let mut command =
        command_in(dir.dir.path(), &["serve", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    command.env("IBLUEPRINT_DATA", &from_env);
    let served = Served::start(command, dir.dir.path().join("serve.log"));
    assert!(from_env.exists(), "IBLUEPRINT_DATA was not used");
    assert!(!from_file.exists(), "the config file beat IBLUEPRINT_DATA");
    served.assert_healthy();
    assert_eq!(served.stop().code(), Some(0));
}

#[test]
fn the_data_flag_beats_iblueprint_data_for_serve() {
    let dir = TestDir::new();
    let from_env = dir.dir.path().join("from-env.redb");
    let from_flag = dir.dir.path().join("from-flag.redb");
    let mut command =
        command_in(dir.dir.path(), &["serve", "--listen", "127.0.0.1:0", "--data", from_flag.to_str().unwrap()]);
    command.env("IBLUEPRINT_DATA", &from_env);
    let served = Served::start(command, dir.dir.path().join("serve.log"));
    assert!(from_flag.exists(), "--data was not used");
    assert!(!from_env.exists(), "IBLUEPRINT_DATA beat --data");
    served.assert_healthy();
    assert_eq!(served.stop().code(), Some(0));
}

#[test]
fn max_keys_per_user_from_the_config_file_applies_and_its_variable_beats_it() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let root = dir.issue_key("alice", &["keys:read", "keys:write"]);
    let config = config_file(dir.dir.path(), &format!("data = {}\nmax_keys_per_user = 1\n", toml_path(&dir.data())));
    let args = ["serve", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"];

    // The file says 1 and alice already holds one key.
    let served = Served::start(command_in(dir.dir.path(), &args), dir.dir.path().join("serve.log"));
    let response = served.post("/v1/keys", &root, &json!({"name": "second"}));
    assert_problem(response, 409, "key_limit_reached");
    assert_eq!(served.stop().code(), Some(0));

    // The variable says 2: one more is allowed, then the limit holds again.
    let mut command = command_in(dir.dir.path(), &args);
    command.env("IBLUEPRINT_MAX_KEYS_PER_USER", "2");
    let served = Served::start(command, dir.dir.path().join("serve2.log"));
    assert_eq!(served.post("/v1/keys", &root, &json!({"name": "second"})).status(), 201);
    assert_problem(served.post("/v1/keys", &root, &json!({"name": "third"})), 409, "key_limit_reached");
    assert_eq!(served.stop().code(), Some(0));
}

#[test]
fn serve_with_only_listen_creates_data_iblueprint_redb_under_the_current_folder() {
    let dir = TestDir::new();
    let served = Served::start(
        command_in(dir.dir.path(), &["serve", "--listen", "127.0.0.1:0"]),
        dir.dir.path().join("serve.log"),
    );
    let expected = dir.dir.path().join("data").join("iblueprint.redb");
    assert!(expected.is_file(), "the embedded default data file {} was not created", expected.display());
    // Both its own: the file holds password and key hashes.
    assert_eq!(mode_of(&dir.dir.path().join("data")), 0o700, "the folder serve made");
    assert_eq!(mode_of(&expected), 0o600, "the data file serve made");
    let log_path = served.log_path.clone();
    served.assert_healthy();
    assert_eq!(served.stop().code(), Some(0));
    assert_eq!(mode_of(&expected), 0o600, "the data file after serve stopped");
    // With no users yet the log tells the operator how to make the first one.
    let log = std::fs::read_to_string(log_path).unwrap();
    assert!(log.contains("users add"), "{log}");
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `serve`'s own `./data` and data file are checked in
/// `serve_with_only_listen_creates_data_iblueprint_redb_under_the_current_folder`.
#[test]
fn the_data_file_and_folders_iblueprint_creates_are_its_owners_alone_and_the_operators_keep_their_modes() {
    let dir = TestDir::new();
    // `users add` on a path two missing folders deep.
    let nested = dir.dir.path().join("a").join("b").join("x.redb");
    let add = |data: &Path| {
        let args = ["users", "add", "alice", "--password-stdin", "--data", data.to_str().unwrap()];
        assert_ok(&run_cli(&args, None, &password_line()));
    };
    add(&nested);
    assert_eq!(mode_of(&dir.dir.path().join("a")), 0o700, "every folder users add made");
    assert_eq!(mode_of(&dir.dir.path().join("a").join("b")), 0o700, "every folder users add made");
    assert_eq!(mode_of(&nested), 0o600, "the data file users add made");

    // A folder the operator made keeps its mode, and the new file in it is still private;
    // a file the operator made (empty, for iblueprint to fill) keeps its mode too.
    let theirs = dir.dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    set_mode(&theirs, 0o750);
    add(&theirs.join("new.redb"));
    assert_eq!(mode_of(&theirs), 0o750, "the operator's folder");
    assert_eq!(mode_of(&theirs.join("new.redb")), 0o600, "a new data file in the operator's folder");
    let their_file = theirs.join("made.redb");
    std::fs::write(&their_file, b"").unwrap();
    set_mode(&their_file, 0o640);
    add(&their_file);
    assert_eq!(mode_of(&their_file), 0o640, "the operator's own (empty) data file");
}

// ---------------------------------------------------------------------------------------
// serve: shutdown and logs
// ---------------------------------------------------------------------------------------

#[test]
fn sigterm_makes_serve_exit_0_and_log_that_it_stopped_cleanly() {
    let f = alice();
    assert_eq!(f.server.get("/v1/me", Some(&f.root_key)).status(), 200);
    let log_path = f.server.log_path.clone();
    let status = f.server.stop();
    assert_eq!(status.code(), Some(0), "serve must exit 0 on SIGTERM, got {status}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("stopped cleanly"), "the log must say it stopped cleanly:\n{log}");
    // And the file is free again for offline commands.
    assert_ok(&cli(&f.dir, &["users", "list"], ""));
}

#[test]
fn sigterm_right_after_the_listening_line_still_exits_0() {
    // A supervisor (or script) may stop the server the moment it says it is listening;
    // the announcement must not come before SIGTERM is handled.
    for attempt in 0..5 {
        let dir = TestDir::new();
        let data = dir.data();
        let served = Served::start(
            command_in(dir.dir.path(), &["serve", "--listen", "127.0.0.1:0", "--data", data.to_str().unwrap()]),
            dir.dir.path().join("serve.log"),
        );
        let log_path = served.log_path.clone();
        let status = served.stop();
        assert_eq!(
            status.code(),
            Some(0),
            "attempt {attempt}: SIGTERM sent right after `iblueprint listening on` ended serve with {status} \
             instead of a clean exit 0 (the address is announced before the signal handlers are installed); log:\n{}",
            std::fs::read_to_string(log_path).unwrap_or_default()
        );
    }
}

/// Creates keys over the API, uses them well and badly (secrets in the path, the query and
/// a mangled header), stops the server and returns (secrets, key ids, log).
fn exercise_keys(f: Fixture) -> (Vec<String>, Vec<String>, String) {
    let server = &f.server;
    let me: Value = server.get("/v1/me", Some(&f.root_key)).json().unwrap();
    let mut ids = vec![me["key"]["id"].as_str().unwrap().to_owned()];
    let mut secrets = vec![f.root_key.clone()];
    for name in ["first", "second", "third"] {
        let (key, secret) = server.create_key(&f.root_key, json!({"name": name, "scopes": ["keys:read"]}));
        assert_eq!(server.get("/v1/me", Some(&secret)).status(), 200);
        assert_eq!(server.get("/v1/keys", Some(&secret)).status(), 200);
        assert_eq!(server.get("/v1/auth", Some(&secret)).status(), 200);
        ids.push(key["id"].as_str().unwrap().to_owned());
        secrets.push(secret);
    }
    let (rotated_from, _) = server.create_key(&f.root_key, json!({"name": "rotating"}));
    let rotated_id = rotated_from["id"].as_str().unwrap();
    let response = server.post(&format!("/v1/keys/{rotated_id}/rotate"), Some(&f.root_key), &json!({}));
    assert_eq!(response.status(), 201);
    let rotated: Value = response.json().unwrap();
    let rotated_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_eq!(server.get("/v1/me", Some(&rotated_secret)).status(), 200);
    secrets.push(rotated_secret);
    ids.push(rotated["key"]["id"].as_str().unwrap().to_owned());

    // Misuse: a secret where it does not belong, and a mangled one as a bearer.
    let leaked = secrets[1].clone();
    assert!(server.get(&format!("/v1/keys/{leaked}"), Some(&f.root_key)).status().is_client_error());
    server.get(&format!("/v1/me?api_key={leaked}"), None);
    let mut mangled = leaked.clone();
    mangled.push('x');
    assert_eq!(server.get("/v1/me", Some(&mangled)).status(), 401);
    let revoke = server.post(&format!("/v1/keys/{}/revoke", ids[2]), Some(&f.root_key), &json!({}));
    assert_eq!(revoke.status(), 200);
    assert_eq!(server.get("/v1/me", Some(&secrets[2])).status(), 403);

    let log_path = f.server.log_path.clone();
    assert!(f.server.stop().success());
    (secrets, ids, std::fs::read_to_string(log_path).unwrap())
}

#[track_caller]
fn assert_no_secret_in(log: &str, secrets: &[String]) {
    assert!(!log.is_empty());
    for secret in secrets {
        // The random body alone (no prefix, no checksum) must not appear either.
        let body = &secret[4..44];
        assert!(!log.contains(body), "the server log contains (part of) a secret {}…:\n{log}", &secret[..8]);
    }
}

#[test]
fn the_log_never_contains_a_secret_but_names_key_ids_on_request_lines() {
    let f = alice();
    let (secrets, ids, log) = exercise_keys(f);
    assert_no_secret_in(&log, &secrets);
    for id in &ids {
        assert!(
            log.lines().any(|line| line.contains("request") && line.contains(id.as_str())),
            "no request line names key {id}:\n{log}"
        );
    }
}

#[test]
fn json_logs_never_contain_a_secret_and_each_request_line_carries_its_key_id() {
    let dir = TestDir::new();
    dir.add_user("alice");
    let root_key = dir.issue_key("alice", &["keys:read", "keys:write"]);
    let server = dir.start_with(&["--log-format", "json"], &[]);
    let f = Fixture { server, dir, root_key };
    let (secrets, ids, log) = exercise_keys(f);
    assert_no_secret_in(&log, &secrets);
    let entries: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}")))
        .collect();
    let requests: Vec<&Value> = entries.iter().filter(|e| e["message"] == "request").collect();
    // exercise_keys makes 21 requests: exactly one line each.
    assert_eq!(requests.len(), 21, "one line per request: {requests:#?}");
    for request in &requests {
        assert!(request["status"].is_u64() && request["latency_us"].is_u64(), "{request}");
        assert!(request["route"].is_string() && request["key_id"].is_string(), "{request}");
    }
    for id in &ids {
        assert!(
            requests.iter().any(|r| r["key_id"] == id.as_str() && r["route"] == "me" && r["status"] == 200),
            "no successful /v1/me request line with key_id {id}"
        );
    }
    // The mangled and the missing key have no id to name.
    assert!(requests.iter().any(|r| r["status"] == 401 && r["key_id"] == "-"), "401 lines carry key_id \"-\"");
}
