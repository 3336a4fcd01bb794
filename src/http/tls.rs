//! HTTPS for `serve`: turns the `tls.cert` and `tls.key` PEM files into the rustls server
//! configuration actix-web listens with.
//!
//! It lives in [`crate::http`] because only `http` knows actix-web, and the configuration
//! built here is handed straight to actix's rustls 0.23 listener. Loading happens before
//! the data file is opened, so a bad file stops start-up at once with exit 2 and a message
//! that names the file and what is wrong with it (unreadable, no certificates, no private
//! key, a key that does not match the certificate).
//!
//! Choices:
//! - `tls.cert` holds the full chain, leaf first, then any intermediates; all of it is sent
//!   to clients. Non-certificate sections in it are ignored, so a combined PEM works too.
//! - `tls.key` holds one unencrypted private key (PKCS#8, PKCS#1 RSA or SEC1 EC); the first
//!   one in the file is used.
//! - TLS 1.2 and 1.3 only, with rustls' default cipher suites on the `ring` provider.
//! - PEM is parsed by `rustls-pki-types` (not the unmaintained `rustls-pemfile`).
//! - Messages never quote the files' contents: a key file is a secret.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::ring;
use rustls::version::{TLS12, TLS13};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsFiles;

/// The `Strict-Transport-Security` value sent on every response over TLS: one year, this
/// host only (no `includeSubDomains`, which would bind other services on sibling names).
pub const HSTS: &str = "max-age=31536000";

/// A ready rustls server configuration. Cheap to clone: actix clones it per listener.
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) server: ServerConfig,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfig { .. }")
    }
}

/// Why the TLS files cannot be used. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the {setting} file {}: {reason}", .path.display())]
    Unreadable { setting: &'static str, path: PathBuf, reason: String },
    #[error("the {setting} file {} is not valid PEM: {reason}", .path.display())]
    BadPem { setting: &'static str, path: PathBuf, reason: String },
    #[error(
        "the tls.cert file {} holds no certificates: expected PEM `-----BEGIN CERTIFICATE-----` blocks, the server's certificate first",
        .0.display()
    )]
    NoCertificates(PathBuf),
    #[error(
        "the tls.key file {} holds no private key: expected an unencrypted PEM `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY` block (decrypt an encrypted key with `openssl pkey -in KEY -out KEY.plain`)",
        .0.display()
    )]
    NoPrivateKey(PathBuf),
    #[error("the tls.key file {} is not a usable private key: {reason}", .path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("the first certificate in the tls.cert file {} cannot be parsed: {reason}", .path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error(
        "the private key in the tls.key file {} does not match the first certificate in the tls.cert file {}; the server's own certificate must come first in tls.cert",
        .key.display(), .cert.display()
    )]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("cannot build the TLS configuration from {} and {}: {reason}", .cert.display(), .key.display())]
    Other { cert: PathBuf, key: PathBuf, reason: String },
}

/// Reads both files and builds the server configuration.
pub fn load(files: &TlsFiles) -> Result<TlsConfig, TlsError> {
    let chain = read_chain(&files.cert)?;
    let key = read_key(&files.key)?;
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13, &TLS12])
        .map_err(|e| TlsError::Other { cert: files.cert.clone(), key: files.key.clone(), reason: e.to_string() })?
        .with_no_client_auth();
    let server = builder.with_single_cert(chain, key).map_err(|e| classify(e, files))?;
    Ok(TlsConfig { server })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let setting = "tls.cert";
    let items = CertificateDer::pem_file_iter(path).map_err(|e| pem_error(setting, path, e))?;
    let chain = items.collect::<Result<Vec<_>, _>>().map_err(|e| pem_error(setting, path, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificates(path.to_owned()));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    match PrivateKeyDer::from_pem_file(path) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(TlsError::NoPrivateKey(path.to_owned())),
        Err(e) => Err(pem_error("tls.key", path, e)),
    }
}

fn pem_error(setting: &'static str, path: &Path, err: pem::Error) -> TlsError {
    let path = path.to_owned();
    match err {
        pem::Error::Io(io) => TlsError::Unreadable { setting, path, reason: io.to_string() },
        pem::Error::NoItemsFound if setting == "tls.cert" => TlsError::NoCertificates(path),
        pem::Error::NoItemsFound => TlsError::NoPrivateKey(path),
        // Described in our own words: the library's messages may quote a line of the file.
        pem::Error::MissingSectionEnd { .. } => {
            TlsError::BadPem { setting, path, reason: "a PEM block has no `-----END …-----` line".to_owned() }
        }
        pem::Error::IllegalSectionStart { .. } => {
            TlsError::BadPem { setting, path, reason: "a `-----BEGIN …-----` line is malformed".to_owned() }
        }
        pem::Error::Base64Decode(_) => {
            TlsError::BadPem { setting, path, reason: "a PEM block's body is not valid base64".to_owned() }
        }
        other => TlsError::BadPem { setting, path, reason: other.to_string() },
    }
}

fn classify(err: rustls::Error, files: &TlsFiles) -> TlsError {
    match err {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsError::KeyMismatch { key: files.key.clone(), cert: files.cert.clone() }
        }
        rustls::Error::InvalidCertificate(reason) => {
            TlsError::BadCertificate { path: files.cert.clone(), reason: reason.to_string() }
        }
        // `load_private_key` fails with a general error when the key's bytes are not a key
        // the provider understands.
        rustls::Error::General(reason) => TlsError::BadKey { path: files.key.clone(), reason },
        other => TlsError::Other { cert: files.cert.clone(), key: files.key.clone(), reason: other.to_string() },
    }
}
