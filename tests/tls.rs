//! HTTPS (SPEC §9, issue 6): `serve` with `tls.cert` and `tls.key`, against a test PKI made
//! here with rcgen (root CA → intermediate → server certificate for 127.0.0.1 and localhost;
//! `tls.cert` holds the full chain). The `keys` client and a plain HTTPS client succeed when
//! they trust the root and fail cleanly when they do not; every response carries HSTS; a
//! plain-HTTP request or a TLS 1.1 hello on the TLS port is refused without hurting the
//! server; cookies are `Secure`; a bad certificate or key file stops start-up with exit 2
//! and a message naming the file.

#[path = "api/helpers.rs"]
mod helpers;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use reqwest::blocking::Client;
use serde_json::Value;

use helpers::*;

const HSTS: &str = "max-age=31536000";

/// The files of a test PKI, in a folder of their own.
struct Pki {
    /// The root CA certificate clients are told to trust.
    ca: PathBuf,
    /// Server certificate, then the intermediate that signed it.
    chain: PathBuf,
    /// The server certificate's private key.
    key: PathBuf,
    /// A private key that belongs to no certificate here.
    other_key: PathBuf,
}

fn ca_params(name: &str, constraints: BasicConstraints) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(constraints);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

fn make_pki(folder: &Path) -> Pki {
    let root_key = KeyPair::generate().expect("key");
    let root_params = ca_params("iblueprint test root", BasicConstraints::Unconstrained);
    let root_cert = root_params.self_signed(&root_key).expect("root");
    let root = Issuer::new(root_params, root_key);

    let intermediate_key = KeyPair::generate().expect("key");
    let intermediate_params = ca_params("iblueprint test intermediate", BasicConstraints::Constrained(0));
    let intermediate_cert = intermediate_params.signed_by(&intermediate_key, &root).expect("intermediate");
    let intermediate = Issuer::new(intermediate_params, intermediate_key);

    let server_key = KeyPair::generate().expect("key");
    let mut server_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("params");
    server_params.distinguished_name.push(DnType::CommonName, "localhost");
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server_params.use_authority_key_identifier_extension = true;
    let server_cert = server_params.signed_by(&server_key, &intermediate).expect("server");

    let write = |name: &str, text: String| {
        let path = folder.join(name);
        std::fs::write(&path, text).expect("write pem");
        path
    };
    Pki {
        ca: write("ca.pem", root_cert.pem()),
        chain: write("chain.pem", format!("{}{}", server_cert.pem(), intermediate_cert.pem())),
        key: write("server.key", server_key.serialize_pem()),
        other_key: write("other.key", KeyPair::generate().expect("key").serialize_pem()),
    }
}

/// A config file that turns TLS on with these files.
fn tls_config(folder: &Path, cert: &Path, key: &Path) -> PathBuf {
    let path = folder.join("iblueprint.toml");
    let text = format!("[tls]\ncert = {:?}\nkey = {:?}\n", cert.display().to_string(), key.display().to_string());
    std::fs::write(&path, text).expect("write config");
    path
}

/// A user `alice` with a keys:read key, a test PKI and an HTTPS server using it.
struct TlsFixture {
    /// First: fields drop in order, and the server's leak check reads files in `dir`.
    server: TestServer,
    dir: TestDir,
    pki: Pki,
    key: String,
}

fn tls_server() -> TlsFixture {
    let dir = TestDir::new();
    dir.add_user("alice");
    let key = dir.issue_key("alice", &["keys:read"]);
    let pki = make_pki(dir.dir.path());
    let config = tls_config(dir.dir.path(), &pki.chain, &pki.key);
    let server = dir.start_with(&["--config", config.to_str().expect("utf-8 path")], &[]);
    TlsFixture { server, dir, pki, key }
}

/// An HTTPS client that trusts the test root (and only what reqwest trusts anyway).
fn trusting_client(ca: &Path) -> reqwest::blocking::ClientBuilder {
    let pem = std::fs::read(ca).expect("read ca");
    Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("ca pem"))
}

fn run_keys(url: &str, key: &str, args: &[&str]) -> Output {
    let mut command = Command::new(binary());
    command.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("IBLUEPRINT_") {
            command.env_remove(name);
        }
    }
    command.env("IBLUEPRINT_URL", url).env("IBLUEPRINT_API_KEY", key);
    command.stdin(Stdio::null()).output().expect("run iblueprint keys")
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_server_announces_https_and_the_keys_client_trusts_a_private_ca_with_ca_cert() {
    let f = tls_server();
    assert!(f.server.base.starts_with("https://127.0.0.1:"), "{}", f.server.base);
    let ca = f.pki.ca.to_str().expect("utf-8");
    let port = f.server.base.rsplit(':').next().expect("port");
    for url in [f.server.base.clone(), format!("https://localhost:{port}")] {
        let out = run_keys(&url, &f.key, &["keys", "whoami", "--ca-cert", ca, "--json"]);
        assert_eq!(out.status.code(), Some(0), "{url}: {}", stderr_of(&out));
        let me: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(me["user"]["username"], "alice");
    }
}

#[test]
fn without_the_ca_the_keys_client_fails_cleanly_naming_the_certificate() {
    let f = tls_server();
    let out = run_keys(&f.server.base, &f.key, &["keys", "whoami"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let stderr = stderr_of(&out);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    for mention in ["certificate", &f.server.base, "--ca-cert"] {
        assert!(stderr.contains(mention), "must mention {mention:?}: {stderr}");
    }
    assert!(!stderr.contains(&f.key));

    // A CA file that is not PEM is a usage error naming the file.
    let garbage = f.dir.dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let out = run_keys(&f.server.base, &f.key, &["keys", "--ca-cert", garbage.to_str().expect("utf-8"), "whoami"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains(garbage.to_str().expect("utf-8")), "{}", stderr_of(&out));

    // Plain http:// to the TLS port: a clean failure that suggests https.
    let plain = f.server.base.replacen("https://", "http://", 1);
    let out = run_keys(&plain, &f.key, &["keys", "whoami"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("https://"), "{}", stderr_of(&out));
}

#[test]
fn https_requests_succeed_and_every_response_carries_hsts() {
    let f = tls_server();
    let client = trusting_client(&f.pki.ca).build().expect("client");
    let me = client.get(f.server.url("/v1/me")).bearer_auth(&f.key).send().expect("https request");
    assert_eq!(me.status(), 200);
    assert_eq!(me.headers().get("strict-transport-security").and_then(|v| v.to_str().ok()), Some(HSTS));
    for (path, status) in [("/v1/health", 200), ("/v1/keys", 401), ("/nowhere", 404), ("/login", 200)] {
        let response = client.get(f.server.url(path)).send().expect("https request");
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(
            response.headers().get("strict-transport-security").and_then(|v| v.to_str().ok()),
            Some(HSTS),
            "{path}"
        );
    }
    // Untrusted: the plain client refuses the certificate.
    let error = Client::new().get(f.server.url("/v1/health")).send().expect_err("untrusted certificate");
    assert!(format!("{error:?}").to_lowercase().contains("certificate"), "{error:?}");
}

#[test]
fn plain_http_gets_no_hsts() {
    let f = alice();
    let response = f.server.get("/v1/health", None);
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("strict-transport-security").is_none());
}

#[test]
fn tls_1_2_and_1_3_work() {
    let f = tls_server();
    for (min, max) in [
        (reqwest::tls::Version::TLS_1_2, reqwest::tls::Version::TLS_1_2),
        (reqwest::tls::Version::TLS_1_3, reqwest::tls::Version::TLS_1_3),
    ] {
        let client = trusting_client(&f.pki.ca).min_tls_version(min).max_tls_version(max).build().expect("client");
        let response = client.get(f.server.url("/v1/me")).bearer_auth(&f.key).send().expect("request");
        assert_eq!(response.status(), 200, "{min:?}");
    }
}

/// A minimal ClientHello offering only `version` (no supported_versions extension): ECDHE
/// suites and the extensions a TLS 1.2 server needs, so that the version is the only thing
/// that can be refused.
fn client_hello(version: [u8; 2]) -> Vec<u8> {
    fn with_len(prefix_bytes: usize, data: &[u8]) -> Vec<u8> {
        let len = u32::try_from(data.len()).expect("len").to_be_bytes();
        let mut out = len[4 - prefix_bytes..].to_vec();
        out.extend(data);
        out
    }
    fn extension(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend(with_len(2, data));
        out
    }
    let mut body = version.to_vec();
    body.extend([7u8; 32]); // random
    body.push(0); // no session id
    // ECDHE-ECDSA/RSA with AES-128-GCM, and plain RSA AES-128-CBC (what TLS 1.1 clients offer).
    body.extend(with_len(2, &[0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x2f]));
    body.extend([1, 0]); // compression: null only
    let mut extensions = Vec::new();
    extensions.extend(extension(0x000a, &with_len(2, &[0x00, 0x1d, 0x00, 0x17]))); // x25519, P-256
    extensions.extend(extension(0x000b, &[1, 0])); // uncompressed points
    extensions.extend(extension(0x000d, &with_len(2, &[0x04, 0x03, 0x08, 0x04]))); // ECDSA P-256, RSA-PSS
    body.extend(with_len(2, &extensions));
    let mut handshake = vec![1]; // ClientHello
    handshake.extend(with_len(3, &body));
    let mut record = vec![22, 0x03, 0x01];
    record.extend(with_len(2, &handshake));
    record
}

/// Sends raw bytes to the server's port and returns the first bytes it answers (the server
/// then waits for the rest of a handshake this test does not send).
fn raw_exchange_first(base: &str, bytes: &[u8]) -> Vec<u8> {
    let addr = base.trim_start_matches("https://");
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream.write_all(bytes).expect("write");
    let mut answer = vec![0u8; 5];
    stream.read_exact(&mut answer).expect("an answer");
    answer
}

/// Sends raw bytes to the server's port and returns what it answers until it closes.
fn raw_exchange(base: &str, bytes: &[u8]) -> Vec<u8> {
    let addr = base.trim_start_matches("https://");
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream.write_all(bytes).expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

#[test]
fn tls_1_1_and_1_0_are_refused_with_a_protocol_version_alert() {
    let f = tls_server();
    // Control: the same hello offering TLS 1.2 gets a ServerHello (a handshake record, 22).
    let answer = raw_exchange_first(&f.server.base, &client_hello([3, 3]));
    assert_eq!(answer.first(), Some(&22), "TLS 1.2 hello: expected a handshake record, got {answer:?}");
    for version in [[3, 2], [3, 1]] {
        let answer = raw_exchange(&f.server.base, &client_hello(version));
        // An alert record (21) whose description is protocol_version (70).
        assert!(answer.len() >= 7, "expected an alert, got {answer:?}");
        assert_eq!(answer[0], 21, "{version:?}: expected an alert record, got {answer:?}");
        assert_eq!(answer[6], 70, "{version:?}: expected protocol_version, got {answer:?}");
    }
    // And the server is fine.
    let client = trusting_client(&f.pki.ca).build().expect("client");
    assert_eq!(client.get(f.server.url("/v1/health")).send().expect("request").status(), 200);
}

#[test]
fn plain_http_to_the_tls_port_does_not_hurt_the_server() {
    let f = tls_server();
    for _ in 0..3 {
        let answer = raw_exchange(&f.server.base, b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        assert!(!answer.starts_with(b"HTTP/"), "no plain-HTTP answer on the TLS port: {answer:?}");
    }
    let client = trusting_client(&f.pki.ca).build().expect("client");
    let me = client.get(f.server.url("/v1/me")).bearer_auth(&f.key).send().expect("https after plain http");
    assert_eq!(me.status(), 200);
}

/// The value of the `name="csrf"` field of a form.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\"").expect("csrf field");
    let rest = &html[at..];
    let start = rest.find("value=\"").expect("value") + "value=\"".len();
    rest[start..][..rest[start..].find('"').expect("closing quote")].to_owned()
}

#[test]
fn cookies_are_secure_over_https() {
    let f = tls_server();
    let client = trusting_client(&f.pki.ca).redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let form = client.get(f.server.url("/login")).send().expect("login page");
    let cookies: Vec<String> =
        form.headers().get_all("set-cookie").iter().map(|v| v.to_str().expect("ascii").to_owned()).collect();
    let jar: Vec<&str> = cookies.iter().map(|c| c.split(';').next().unwrap_or_default()).collect();
    let token = csrf_of(&form.text().expect("body"));
    let response = client
        .post(f.server.url("/login"))
        .header("Origin", &f.server.base)
        .header("Cookie", jar.join("; "))
        .form(&[("csrf", token.as_str()), ("username", "alice"), ("password", PASSWORD)])
        .send()
        .expect("sign in");
    assert_eq!(response.status(), 303, "{:?}", response.text());
    let session = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .find(|c| c.starts_with("ibp_session="))
        .expect("a session cookie");
    assert!(session.split(';').any(|a| a.trim().eq_ignore_ascii_case("secure")), "{session}");
    assert!(cookies.iter().all(|c| c.to_ascii_lowercase().contains("; secure")), "{cookies:?}");
}

/// Runs `serve` with this TLS config to completion; it must exit 2 before opening the data
/// file, with a last stderr line naming `file` and saying `what`.
#[track_caller]
fn assert_start_up_refused(dir: &TestDir, config: &Path, file: &Path, what: &str) {
    let out = run_cli(
        &["serve", "--listen", "127.0.0.1:0", "--config", config.to_str().expect("utf-8")],
        Some(&dir.data()),
        "",
    );
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let line = stderr.lines().last().unwrap_or_default();
    assert!(line.starts_with("error: "), "{stderr}");
    assert!(line.contains(file.to_str().expect("utf-8")), "must name {}: {line}", file.display());
    assert!(line.contains(what), "must say {what:?}: {line}");
    assert!(!dir.data().exists(), "the data file is not touched");
}

#[test]
fn bad_certificate_or_key_files_stop_start_up_with_exit_2_naming_the_file() {
    let dir = TestDir::new();
    let folder = dir.dir.path();
    let pki = make_pki(folder);
    let file = |name: &str, text: &str| {
        let path = folder.join(name);
        std::fs::write(&path, text).expect("write");
        path
    };

    let garbage = file("garbage.pem", "this is not a certificate\n");
    assert_start_up_refused(&dir, &tls_config(folder, &garbage, &pki.key), &garbage, "holds no certificates");

    let missing = folder.join("missing.key");
    assert_start_up_refused(&dir, &tls_config(folder, &pki.chain, &missing), &missing, "cannot read");

    // A key file with only a certificate in it.
    assert_start_up_refused(&dir, &tls_config(folder, &pki.chain, &pki.ca), &pki.ca, "holds no private key");

    let unterminated = file("cut.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n");
    assert_start_up_refused(&dir, &tls_config(folder, &unterminated, &pki.key), &unterminated, "not valid PEM");

    let not_a_key = file("bad.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
    assert_start_up_refused(&dir, &tls_config(folder, &pki.chain, &not_a_key), &not_a_key, "not a usable private key");

    assert_start_up_refused(&dir, &tls_config(folder, &pki.chain, &pki.other_key), &pki.other_key, "does not match");

    // A directory where a file should be.
    assert_start_up_refused(&dir, &tls_config(folder, folder, &pki.key), folder, "cannot read");
}
