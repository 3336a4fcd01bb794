//! `iblueprint keys …`: the command-line client of a running server's `/v1` API.
//!
//! It owns everything between the shell and the HTTP API: reading `IBLUEPRINT_API_KEY` and
//! `IBLUEPRINT_URL`, refusing a malformed key before any connection is made (the token
//! checksum exists for exactly this), the HTTP(S) requests (reqwest with rustls; this module
//! is a client, so it is the one place outside [`crate::http`] that speaks HTTP, and it
//! never opens the data file), and turning answers into tables, JSON or one-line errors.
//!
//! Output contract:
//! - Tables for people by default; `--json` prints the server's JSON unchanged but
//!   indented (fields in the server's order). `list` follows `next_cursor` and prints one
//!   document `{"keys": [all of them], "next_cursor": null}`.
//! - `create` and `rotate` print the new secret alone on stdout (so `$(…)` captures it) and
//!   what was done on stderr, like `users issue-key`; with `--json`, the whole response.
//! - Failures are one line on stderr. A problem answer (RFC 9457) becomes
//!   `STATUS CODE: DETAIL` plus what to do next, exit 1; a connection or TLS failure names
//!   the URL, exit 1; a missing or malformed key, a bad URL, DUR or `--ca-cert`, exit 2.
//!
//! Choices: no redirects are followed (a redirect is reported with its target, so the key
//! is never sent anywhere but `IBLUEPRINT_URL`); proxy variables are ignored (the server is
//! normally on the same host or LAN, and an appliance client should not send keys through
//! whatever `HTTPS_PROXY` says); `--ca-cert` adds to the system's roots; the key is never
//! printed, and neither is anything that looks like one.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::redirect::Policy;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::{self, PemObject};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::cli::{CliError, KeySpecArgs, KeysArgs, KeysCommand};
use crate::domain::key::MAX_GRACE_SECONDS;
use crate::domain::time::parse_duration;
use crate::domain::token::{self, Token, TokenError};
use crate::domain::{KeyId, RateLimit};

pub const API_KEY_VAR: &str = "IBLUEPRINT_API_KEY";
pub const URL_VAR: &str = "IBLUEPRINT_URL";
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";
/// Keys per `GET /v1/keys` page: the most the server allows.
const PAGE_SIZE: &str = "200";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Server text shown in an error line is cut to this many characters.
const MAX_SHOWN: usize = 300;

pub fn run(args: KeysArgs) -> Result<(), CliError> {
    // Everything that can be checked locally is, before the key is read or a socket opened.
    let command = Action::from_command(args.command)?;
    let key = api_key_from(std::env::var_os(API_KEY_VAR))?;
    let base = base_url_from(std::env::var_os(URL_VAR))?;
    let client = build_client(args.ca_cert.as_deref())?;
    let api = Api { client, base, key, ca_cert: args.ca_cert };
    command.run(&api, args.json)
}

/// A subcommand with its arguments checked.
enum Action {
    Whoami,
    List,
    Create(Value),
    Show(KeyId),
    Revoke(KeyId),
    Rotate(KeyId, u64),
}

impl Action {
    fn from_command(command: KeysCommand) -> Result<Self, CliError> {
        Ok(match command {
            KeysCommand::Whoami => Action::Whoami,
            KeysCommand::List => Action::List,
            KeysCommand::Create { name, spec: KeySpecArgs { scopes, per_hour, per_day, expires_in } } => {
                let mut body = Map::new();
                body.insert("name".into(), Value::String(name));
                body.insert("scopes".into(), json!(scopes));
                // Checked here as `users issue-key` checks them, so a mistake in a flag is a
                // usage error (exit 2) naming the flag, not the server's 400 naming its field.
                RateLimit::new(per_hour, per_day)
                    .map_err(|(field, e)| CliError::usage(format!("--{}: {e}", field.replace('_', "-"))))?;
                // Neither flag: the server's default limit applies. One flag: the other
                // period is unlimited, as in `users issue-key`.
                if per_hour.is_some() || per_day.is_some() {
                    body.insert("rate_limit".into(), json!({ "per_hour": per_hour, "per_day": per_day }));
                }
                if let Some(raw) = expires_in {
                    let seconds = duration_arg("--expires-in", &raw)?;
                    if seconds == 0 {
                        return Err(CliError::usage("--expires-in: must be at least 1s"));
                    }
                    body.insert("expires_in".into(), json!(seconds));
                }
                Action::Create(Value::Object(body))
            }
            KeysCommand::Show { id } => Action::Show(key_id_arg(&id)?),
            KeysCommand::Revoke { id } => Action::Revoke(key_id_arg(&id)?),
            KeysCommand::Rotate { id, grace } => {
                let grace = grace.map(|raw| duration_arg("--grace", &raw)).transpose()?.unwrap_or(0);
                if grace > MAX_GRACE_SECONDS {
                    return Err(CliError::usage(format!("--grace: must be at most 7d ({MAX_GRACE_SECONDS}s)")));
                }
                Action::Rotate(key_id_arg(&id)?, grace)
            }
        })
    }

    fn run(self, api: &Api, json: bool) -> Result<(), CliError> {
        match self {
            Action::Whoami => {
                let body = api.get(&["me"], &[])?;
                if json {
                    return api.print_json(&body);
                }
                let me: Value = api.parse(&body)?;
                let user = &me["user"];
                let mut lines = vec![("user", format!("{} ({})", text(&user["username"]), text(&user["id"])))];
                lines.extend(key_lines(&me["key"]));
                print_stdout(&detail(&lines))
            }
            Action::List => {
                let (raw_keys, keys) = api.list_all()?;
                if json {
                    let document = format!("{{\"keys\":[{}],\"next_cursor\":null}}", raw_keys.join(","));
                    return api.print_json(&document);
                }
                if keys.is_empty() {
                    return print_stdout("no keys yet; create one with `iblueprint keys create NAME`\n");
                }
                print_stdout(&key_table(&keys))
            }
            Action::Create(body) => {
                let raw = api.post(&["keys"], &body)?;
                let created: Value = api.parse(&raw)?;
                let secret = api.secret_of(&created)?;
                let key = &created["key"];
                note(&format!(
                    "created key {} ({}); the secret below is shown only this once",
                    text(&key["id"]),
                    text(&key["name"])
                ));
                if json { api.print_json(&raw) } else { print_stdout(&secret) }
            }
            Action::Show(id) => {
                let raw = api.get(&["keys", id.as_str()], &[])?;
                if json {
                    return api.print_json(&raw);
                }
                let key: Value = api.parse(&raw)?;
                print_stdout(&detail(&key_lines(&key)))
            }
            Action::Revoke(id) => {
                let raw = api.post(&["keys", id.as_str(), "revoke"], &json!({}))?;
                if json {
                    return api.print_json(&raw);
                }
                let key: Value = api.parse(&raw)?;
                print_stdout(&format!(
                    "revoked {} ({}) at {}\n",
                    text(&key["id"]),
                    text(&key["name"]),
                    text(&key["revoked_at"])
                ))
            }
            Action::Rotate(id, grace) => {
                let raw = api.post(&["keys", id.as_str(), "rotate"], &json!({ "grace_seconds": grace }))?;
                let rotated: Value = api.parse(&raw)?;
                let secret = api.secret_of(&rotated)?;
                let (new, old) = (&rotated["key"], &rotated["previous"]);
                let until = if old["status"] == "rotating" {
                    format!("keeps working until {}", text(&old["revoked_at"]))
                } else {
                    "is revoked now".to_owned()
                };
                note(&format!(
                    "rotated {} into {} ({}); {} {until}; the secret below is shown only this once",
                    text(&old["id"]),
                    text(&new["id"]),
                    text(&new["name"]),
                    text(&old["id"]),
                ));
                if json { api.print_json(&raw) } else { print_stdout(&secret) }
            }
        }
    }
}

fn duration_arg(flag: &str, raw: &str) -> Result<u64, CliError> {
    parse_duration(raw).map_err(|e| CliError::usage(format!("{flag}: {e}")))
}

fn key_id_arg(raw: &str) -> Result<KeyId, CliError> {
    if raw.starts_with(token::PREFIX) {
        // Never echo what may be a secret.
        return Err(CliError::usage(
            "that is an API key's secret, not its id; ids look like key_…, and `iblueprint keys list` shows them",
        ));
    }
    KeyId::parse(raw).ok_or_else(|| {
        CliError::usage(format!(
            "{} is not a key id: an id is `key_` and 16 letters or digits; `iblueprint keys list` shows them",
            shown(raw)
        ))
    })
}

/// Reads the key from the environment value. A malformed key is refused here, before any
/// connection, in words that never include the key.
fn api_key_from(value: Option<std::ffi::OsString>) -> Result<Token, CliError> {
    let value = value.filter(|v| !v.is_empty()).ok_or_else(|| {
        CliError::usage(format!(
            "{API_KEY_VAR} is not set; create a key in the settings page or with `iblueprint users issue-key`, then export it"
        ))
    })?;
    let invalid = |why: String| CliError::usage(format!("{API_KEY_VAR} is not a valid iblueprint key: {why}"));
    let value = value.to_str().ok_or_else(|| invalid("it is not plain text".to_owned()))?;
    // Surrounding blanks are what a paste or `$(cat file)` leaves; they are not the key.
    Token::parse(value.trim()).map_err(|e| {
        invalid(match e {
            TokenError::WrongPrefix => format!("{e} — export the secret itself, as shown when the key was created"),
            TokenError::WrongLength(_) | TokenError::ChecksumMismatch => format!("{e} — was it truncated when pasted?"),
            TokenError::BadCharacter(_) => format!("{e} — check for quotes or stray characters"),
        })
    })
}

/// The server's base URL from the environment value, or the default.
fn base_url_from(value: Option<std::ffi::OsString>) -> Result<Url, CliError> {
    let value = match value.filter(|v| !v.is_empty()) {
        None => return Url::parse(DEFAULT_URL).map_err(|e| CliError::usage(format!("{DEFAULT_URL}: {e}"))),
        Some(value) => value,
    };
    let bad = |why: &str| {
        CliError::usage(format!(
            "{URL_VAR} is not a usable server address: {why}; expected e.g. https://keys.example.com or http://127.0.0.1:8080"
        ))
    };
    let raw = value.to_str().ok_or_else(|| bad("it is not plain text"))?;
    let url = Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("it must start with http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("it must not contain a user name or password"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it must not have a query or fragment"));
    }
    Ok(url)
}

fn build_client(ca_cert: Option<&Path>) -> Result<Client, CliError> {
    let mut builder = Client::builder()
        .use_rustls_tls()
        .user_agent(concat!("iblueprint-keys/", env!("CARGO_PKG_VERSION")))
        .redirect(Policy::none())
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT);
    if let Some(path) = ca_cert {
        for der in read_ca_file(path)? {
            let certificate = reqwest::Certificate::from_der(&der).map_err(|e| bad_ca(path, &e.to_string()))?;
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().map_err(|e| match ca_cert {
        Some(path) => bad_ca(path, &deepest(&e)),
        None => CliError::Runtime(anyhow::anyhow!("cannot set up the HTTP client: {}", deepest(&e))),
    })
}

fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, CliError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_problem(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_problem(path, e))?;
    if certs.is_empty() {
        return Err(bad_ca(path, "it holds no PEM `-----BEGIN CERTIFICATE-----` block"));
    }
    Ok(certs)
}

fn pem_problem(path: &Path, err: pem::Error) -> CliError {
    match err {
        pem::Error::Io(io) => CliError::usage(format!("--ca-cert: cannot read {}: {io}", path.display())),
        pem::Error::NoItemsFound => bad_ca(path, "it holds no PEM `-----BEGIN CERTIFICATE-----` block"),
        _ => bad_ca(path, "it is not valid PEM"),
    }
}

fn bad_ca(path: &Path, why: &str) -> CliError {
    CliError::usage(format!("--ca-cert: {} is not a usable CA certificate file: {why}", path.display()))
}

/// The client, the server's base URL and the key it acts as.
struct Api {
    client: Client,
    base: Url,
    key: Token,
    ca_cert: Option<PathBuf>,
}

#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    keys: Vec<&'a RawValue>,
    next_cursor: Option<String>,
}

impl Api {
    /// The base URL as people write it, for messages.
    fn shown_base(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `base` + `/v1/` + the segments, each percent-encoded as needed.
    fn endpoint(&self, segments: &[&str]) -> Result<Url, CliError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| CliError::usage(format!("{URL_VAR} cannot have paths appended")))?
            .pop_if_empty()
            .push("v1")
            .extend(segments);
        Ok(url)
    }

    fn get(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<String, CliError> {
        let mut url = self.endpoint(segments)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        self.send(self.client.get(url))
    }

    fn post(&self, segments: &[&str], body: &Value) -> Result<String, CliError> {
        let url = self.endpoint(segments)?;
        self.send(self.client.post(url).json(body))
    }

    /// Sends with the key; returns the body of a 2xx answer, else the one-line error.
    fn send(&self, request: RequestBuilder) -> Result<String, CliError> {
        let response = request.bearer_auth(self.key.expose_secret()).send().map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().map_err(|e| self.transport_error(&e))?;
        if status.is_success() {
            return Ok(body);
        }
        if status.is_redirection() {
            let target = headers.get(LOCATION).and_then(|v| v.to_str().ok()).map(shown).unwrap_or_default();
            return Err(runtime(format!(
                "the server at {} answered {status} to {target}; set {URL_VAR} to the address it redirects to",
                self.shown_base()
            )));
        }
        let is_problem = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/problem+json") || v.starts_with("application/json"));
        let problem = is_problem.then(|| serde_json::from_str::<Value>(&body).ok()).flatten();
        Err(runtime(match problem.as_ref().and_then(|p| p["code"].as_str().map(|code| (p, code))) {
            Some((problem, code)) => {
                let detail = problem["detail"].as_str().or(problem["title"].as_str()).unwrap_or("");
                let mut line = format!("{} {}: {}", status.as_u16(), shown(code), shown(detail));
                if let Some(hint) = self.hint(code) {
                    line.push_str("; ");
                    line.push_str(&hint);
                }
                line
            }
            None => format!(
                "the server at {} answered {status}, which is not an iblueprint answer; is {URL_VAR} right?",
                self.shown_base()
            ),
        }))
    }

    /// What to do next, for the codes where the server's detail does not say it.
    fn hint(&self, code: &str) -> Option<String> {
        Some(match code {
            "invalid_key" => format!("check that {API_KEY_VAR} is a key of the server at {}", self.shown_base()),
            "key_revoked" | "key_expired" => format!(
                "create a new key in the settings page or with `iblueprint users issue-key` and export it as {API_KEY_VAR}"
            ),
            "user_disabled" => "ask an administrator to enable the user".to_owned(),
            "insufficient_scope" => format!("use a key that has it in {API_KEY_VAR}"),
            "not_found" => "`iblueprint keys list` shows your keys".to_owned(),
            _ => return None,
        })
    }

    /// A connection, TLS or timeout failure, as one line naming the URL.
    fn transport_error(&self, err: &reqwest::Error) -> CliError {
        let base = self.shown_base();
        let cause = deepest(err);
        let tls = rustls_error(err);
        runtime(if let Some(rustls::Error::InvalidCertificate(problem)) = tls {
            let next = match &self.ca_cert {
                Some(path) => format!(
                    "check that {} holds the CA that signed it, and that the host in {URL_VAR} is one the certificate names",
                    path.display()
                ),
                None => "if it is signed by a private CA, pass --ca-cert FILE with that CA's certificate".to_owned(),
            };
            format!("the server certificate of {base} was not accepted: {}; {next}", certificate_problem(problem))
        } else if let Some(tls) = tls {
            let next = match tls {
                rustls::Error::InvalidMessage(_) => {
                    "; if the server serves plain HTTP, use an http:// address in IBLUEPRINT_URL"
                }
                _ => "",
            };
            format!("the TLS handshake with {base} failed: {tls}{next}")
        } else if err.is_timeout() {
            format!("the server at {base} did not answer within {} seconds", REQUEST_TIMEOUT.as_secs())
        } else if err.is_connect() {
            format!("cannot connect to {base}: {cause}; is `iblueprint serve` running there, and is {URL_VAR} right?")
        } else {
            let next = if self.base.scheme() == "http" {
                "; if the server serves HTTPS, use an https:// address in IBLUEPRINT_URL"
            } else {
                ""
            };
            format!("the request to {base} failed: {cause}{next}")
        })
    }

    /// Parses a 2xx body; anything else means IBLUEPRINT_URL points at something else.
    fn parse<T: serde::de::DeserializeOwned>(&self, body: &str) -> Result<T, CliError> {
        serde_json::from_str(body).map_err(|_| self.not_ours())
    }

    /// `--json` output: the server's JSON, indented.
    fn print_json(&self, raw: &str) -> Result<(), CliError> {
        print_stdout(&pretty(raw).ok_or_else(|| self.not_ours())?)
    }

    /// The `secret` of a create or rotate answer as a line for stdout, after checking that it
    /// is a well-formed key (anything else is not shown: it may not be a secret at all).
    fn secret_of(&self, answer: &Value) -> Result<String, CliError> {
        let token = answer["secret"].as_str().and_then(|s| Token::parse(s).ok()).ok_or_else(|| self.not_ours())?;
        Ok(format!("{}\n", token.expose_secret()))
    }

    fn not_ours(&self) -> CliError {
        runtime(format!(
            "the server at {} did not answer with iblueprint's JSON; is {URL_VAR} right?",
            self.shown_base()
        ))
    }

    /// Every key, following `next_cursor`: the raw JSON of each (for `--json`) and parsed.
    fn list_all(&self) -> Result<(Vec<String>, Vec<Value>), CliError> {
        let (mut raw, mut parsed) = (Vec::new(), Vec::new());
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", PAGE_SIZE)];
            if let Some(cursor) = &cursor {
                query.push(("cursor", cursor.as_str()));
            }
            let body = self.get(&["keys"], &query)?;
            let page: Page<'_> = serde_json::from_str(&body).map_err(|_| self.not_ours())?;
            for key in &page.keys {
                raw.push(key.get().to_owned());
                parsed.push(self.parse::<Value>(key.get())?);
            }
            match page.next_cursor {
                // A cursor that does not move would loop for ever: stop instead.
                Some(next) if Some(&next) != cursor.as_ref() && !page.keys.is_empty() => cursor = Some(next),
                _ => break,
            }
        }
        Ok((raw, parsed))
    }
}

fn runtime(message: String) -> CliError {
    CliError::Runtime(anyhow::anyhow!(message))
}

/// The rustls error somewhere in the chain, if the failure was TLS.
fn rustls_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(tls) = rustls_inside(e) {
            return Some(tls);
        }
        current = e.source();
    }
    None
}

/// `e` itself, or what the `io::Error`s it is wrapped in hold (`io::Error::source` skips the
/// error it wraps, and hyper-rustls wraps rustls' error in two of them).
fn rustls_inside<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let inner: &(dyn StdError + 'static) = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    rustls_inside(inner)
}

/// Why a server certificate was refused, in words (rustls prints most reasons as `Debug`).
fn certificate_problem(problem: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    match problem {
        E::UnknownIssuer => "it is not signed by a CA this client trusts".to_owned(),
        E::NotValidForName => "it does not name this host".to_owned(),
        E::Expired => "it has expired".to_owned(),
        E::NotValidYet => "it is not valid yet".to_owned(),
        E::BadSignature => "its signature is wrong".to_owned(),
        E::BadEncoding => "it cannot be parsed".to_owned(),
        E::Revoked => "it has been revoked".to_owned(),
        E::InvalidPurpose => "it is not meant for TLS servers".to_owned(),
        E::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => {
            "it is a CA certificate, not a server certificate signed by one".to_owned()
        }
        other => shown(&other.to_string()),
    }
}

/// The innermost message of an error chain: the one that says what actually happened.
fn deepest(err: &(dyn StdError + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    shown(&current.to_string())
}

/// Text from elsewhere made safe for one line: no control characters, bounded length.
fn shown(input: &str) -> String {
    let mut out: String = input.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_SHOWN).collect();
    if input.chars().count() > MAX_SHOWN {
        out.push('…');
    }
    out
}

fn note(message: &str) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn print_stdout(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(runtime(format!("cannot write to standard output: {e}")))
        }
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------

/// A string field for a table: control characters replaced, `-` when absent.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => shown(s),
        Value::Null => "-".to_owned(),
        other => shown(&other.to_string()),
    }
}

fn or_never(value: &Value) -> String {
    if value.is_null() { "never".to_owned() } else { text(value) }
}

fn limits(rate_limit: &Value) -> String {
    let parts: Vec<String> = [("per_hour", "hour"), ("per_day", "day")]
        .iter()
        .filter_map(|(field, unit)| rate_limit[*field].as_u64().map(|n| format!("{n}/{unit}")))
        .collect();
    if parts.is_empty() { "unlimited".to_owned() } else { parts.join(" ") }
}

fn shown_token(key: &Value) -> String {
    format!("{}…{}", text(&key["start"]), text(&key["end"]))
}

/// The fields of one key, for `show` and `whoami`.
fn key_lines(key: &Value) -> Vec<(&'static str, String)> {
    let scopes: Vec<String> = key["scopes"].as_array().into_iter().flatten().map(text).collect();
    let mut lines = vec![
        ("id", text(&key["id"])),
        ("name", text(&key["name"])),
        ("key", shown_token(key)),
        ("status", text(&key["status"])),
        ("scopes", if scopes.is_empty() { "none".to_owned() } else { scopes.join(" ") }),
        ("limits", limits(&key["rate_limit"])),
        ("expires", or_never(&key["expires_at"])),
        ("created", text(&key["created_at"])),
        ("last used", or_never(&key["last_used_at"])),
        ("requests", text(&key["request_count"])),
    ];
    if !key["revoked_at"].is_null() {
        let label = if key["status"] == "rotating" { "revokes at" } else { "revoked" };
        lines.push((label, text(&key["revoked_at"])));
    }
    lines
}

fn detail(lines: &[(&str, String)]) -> String {
    let width = lines.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (label, value) in lines {
        let _ = writeln!(out, "{label:<width$}  {value}");
    }
    out
}

const KEY_COLUMNS: [&str; 7] = ["ID", "NAME", "KEY", "STATUS", "LIMITS", "EXPIRES", "LAST USED"];
/// Longer names are cut in the table; `show` has them whole.
const NAME_WIDTH: usize = 32;

fn key_table(keys: &[Value]) -> String {
    let rows: Vec<[String; 7]> = keys
        .iter()
        .map(|k| {
            [
                text(&k["id"]),
                cut(&text(&k["name"]), NAME_WIDTH),
                shown_token(k),
                text(&k["status"]),
                limits(&k["rate_limit"]),
                or_never(&k["expires_at"]),
                or_never(&k["last_used_at"]),
            ]
        })
        .collect();
    let mut widths = KEY_COLUMNS.map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header = KEY_COLUMNS.map(str::to_owned);
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = width - cell.chars().count();
                let _ = write!(line, "{cell}{:pad$}  ", "");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Indents JSON text two spaces per level, keeping every field in the server's order (which
/// parsing into a map and printing again would not). `None` if the text is not JSON.
fn pretty(raw: &str) -> Option<String> {
    serde_json::from_str::<serde::de::IgnoredAny>(raw).ok()?;
    let mut out = String::with_capacity(raw.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = raw.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                    chars.next();
                }
                match chars.peek() {
                    Some(&close @ ('}' | ']')) => {
                        out.push(close);
                        chars.next();
                    }
                    _ => {
                        depth += 1;
                        newline(&mut out, depth);
                    }
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out.push('\n');
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_token() -> String {
        let mut rng = getrandom::SysRng;
        Token::generate(&mut rng).map(|t| t.expose_secret().to_owned()).expect("os rng")
    }

    fn key_error(value: &str) -> String {
        match api_key_from(Some(value.into())) {
            Err(CliError::Usage(message)) => message,
            other => panic!("expected a usage error, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn a_missing_or_empty_key_says_how_to_get_one() {
        for value in [None, Some("".into())] {
            let Err(CliError::Usage(message)) = api_key_from(value) else { panic!("expected a usage error") };
            assert!(message.starts_with("IBLUEPRINT_API_KEY is not set; create a key"), "{message}");
        }
    }

    #[test]
    fn malformed_keys_are_refused_without_repeating_them() {
        let good = valid_token();
        assert!(api_key_from(Some(format!(" {good}\n").into())).is_ok(), "surrounding blanks are trimmed");

        let mut flipped = good.clone().into_bytes();
        flipped[20] = if flipped[20] == b'a' { b'b' } else { b'a' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        let message = key_error(&flipped);
        assert_eq!(
            message,
            "IBLUEPRINT_API_KEY is not a valid iblueprint key: checksum mismatch — was it truncated when pasted?"
        );

        for (input, expected) in [
            (&good[..49], "has 49 characters"),
            ("sk_live_0123456789", "does not start with `ibp_`"),
            (&format!("{}\"{}", &good[..10], &good[11..]), "character 11 is not one of"),
        ] {
            let message = key_error(input);
            assert!(message.contains(expected), "{message}");
            assert!(!message.contains(&good[4..20]), "the key leaked into: {message}");
        }
    }

    #[test]
    fn urls_must_be_plain_http_or_https_addresses() {
        let ok = |raw: &str| base_url_from(Some(raw.into())).expect(raw).to_string();
        assert_eq!(base_url_from(None).expect("default").as_str(), "http://127.0.0.1:8080/");
        assert_eq!(ok("https://keys.example.com/prefix/"), "https://keys.example.com/prefix/");
        for bad in ["ftp://x", "not a url", "https://u:p@host", "http://host/?a=b", "127.0.0.1:8080"] {
            let Err(CliError::Usage(message)) = base_url_from(Some(bad.into())) else { panic!("{bad} accepted") };
            assert!(message.starts_with("IBLUEPRINT_URL is not a usable server address"), "{message}");
        }
    }

    #[test]
    fn endpoints_keep_a_path_prefix_and_encode_segments() {
        let api = |base: &str| Api {
            client: Client::new(),
            base: Url::parse(base).expect("url"),
            key: Token::parse(&valid_token()).expect("token"),
            ca_cert: None,
        };
        let url = api("https://h/prefix/").endpoint(&["keys", "key_a/b"]).expect("endpoint");
        assert_eq!(url.as_str(), "https://h/prefix/v1/keys/key_a%2Fb");
        let url = api("http://h:8080").endpoint(&["me"]).expect("endpoint");
        assert_eq!(url.as_str(), "http://h:8080/v1/me");
    }

    #[test]
    fn key_ids_are_checked_and_secrets_never_echoed() {
        assert!(key_id_arg("key_0123456789abcdef").is_ok());
        let Err(CliError::Usage(message)) = key_id_arg(&valid_token()) else { panic!("a secret accepted as id") };
        assert!(!message.contains("ibp_"), "{message}");
        assert!(key_id_arg("key_../../x").is_err());
    }

    #[test]
    fn pretty_keeps_field_order_and_strings_intact() {
        let raw = r#"{"z":1,"a":{"s":"a,b:{c}\"[x]","e":[],"o":{}},"l":[1,2]}"#;
        let expected = "{\n  \"z\": 1,\n  \"a\": {\n    \"s\": \"a,b:{c}\\\"[x]\",\n    \"e\": [],\n    \"o\": {}\n  },\n  \"l\": [\n    1,\n    2\n  ]\n}\n";
        assert_eq!(pretty(raw).as_deref(), Some(expected));
        assert_eq!(pretty("<html>"), None);
        let value: Value = serde_json::from_str(raw).expect("json");
        assert_eq!(serde_json::from_str::<Value>(&pretty(raw).expect("json")).expect("still json"), value);
        let compact = serde_json::to_string(&value).expect("json");
        assert_eq!(pretty(&compact), Some(format!("{}\n", serde_json::to_string_pretty(&value).expect("json"))));
    }

    #[test]
    fn limits_and_tables_read_well() {
        assert_eq!(limits(&json!({"per_hour": 100, "per_day": null})), "100/hour");
        assert_eq!(limits(&json!({"per_hour": null, "per_day": null})), "unlimited");
        let key = json!({"id": "key_0123456789abcdef", "name": "deploy\nbot", "start": "ibp_a1B2", "end": "wxyz",
            "status": "active", "rate_limit": {"per_hour": 10, "per_day": 20}, "expires_at": null, "last_used_at": null});
        let table = key_table(&[key]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ID"), "{table}");
        assert!(lines[1].contains("deploy bot") && lines[1].contains("ibp_a1B2…wxyz"), "{table}");
        assert!(lines[1].contains("10/hour 20/day") && lines[1].ends_with("never"), "{table}");
    }
}
