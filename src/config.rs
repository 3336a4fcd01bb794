//! Server configuration: every setting, where it may come from, and how it is checked.
//!
//! A value is taken from the first of these that sets it: a command-line flag, an
//! `IBLUEPRINT_*` environment variable, the config file, the built-in default. The
//! [`SETTINGS`] table is the single list of settings: it gives each one its file key, its
//! environment variable, its default and its help line, and `config/iblueprint.toml` (the
//! documented sample) is tested against it. Nothing is checked lazily: an unknown file key
//! or a bad value anywhere fails [`Config::load`] with a message naming where it came from.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::domain::RateLimit;
use crate::domain::time::parse_duration;

/// One setting: the dotted key it has in the config file, its environment variable,
/// its built-in default as it would be written (`None` means absent) and one line on what
/// it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub key: &'static str,
    pub env: &'static str,
    pub default: Option<&'static str>,
    pub help: &'static str,
}

/// Every setting, in the order the sample config file shows them. Top-level keys come
/// first because TOML needs them before any `[table]`.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "listen",
        env: "IBLUEPRINT_LISTEN",
        default: Some("127.0.0.1:8080"),
        help: "Address and port the HTTP server listens on.",
    },
    Setting {
        key: "data",
        env: "IBLUEPRINT_DATA",
        default: Some("./data/iblueprint.redb"),
        help: "The redb database file holding all users, keys and usage; created if missing.",
    },
    Setting {
        key: "public_url",
        env: "IBLUEPRINT_PUBLIC_URL",
        default: None,
        help: "Base URL clients use to reach this server, e.g. behind a proxy (http:// or https://).",
    },
    Setting {
        key: "flush_interval_ms",
        env: "IBLUEPRINT_FLUSH_INTERVAL_MS",
        default: Some("1000"),
        help: "How often, in ms, rate-limit levels and usage counts are written behind; a crash loses at most this much (10 to 60000).",
    },
    Setting {
        key: "max_keys_per_user",
        env: "IBLUEPRINT_MAX_KEYS_PER_USER",
        default: Some("1000"),
        help: "Most unrevoked API keys one user may hold (1 to 100000).",
    },
    Setting {
        key: "session_ttl",
        env: "IBLUEPRINT_SESSION_TTL",
        default: Some("12h"),
        help: "How long a login session lasts: a number and a unit s, m, h or d (60s to 30d).",
    },
    Setting {
        key: "log_format",
        env: "IBLUEPRINT_LOG_FORMAT",
        default: Some("pretty"),
        help: "Log output: \"pretty\" for people reading a terminal, \"json\" for collectors.",
    },
    Setting {
        key: "tls.cert",
        env: "IBLUEPRINT_TLS_CERT",
        default: None,
        help: "Certificate chain file (PEM); set together with tls.key to serve HTTPS.",
    },
    Setting { key: "tls.key", env: "IBLUEPRINT_TLS_KEY", default: None, help: "Private key file (PEM) for tls.cert." },
    Setting {
        key: "default_rate_limit.per_hour",
        env: "IBLUEPRINT_DEFAULT_RATE_LIMIT_PER_HOUR",
        default: None,
        help: "Requests per hour for new keys that set no limit (1 to 1000000000; absent: unlimited).",
    },
    Setting {
        key: "default_rate_limit.per_day",
        env: "IBLUEPRINT_DEFAULT_RATE_LIMIT_PER_DAY",
        default: None,
        help: "Requests per day for new keys that set no limit (1 to 1000000000; absent: unlimited).",
    },
    Setting {
        key: "metrics.listen",
        env: "IBLUEPRINT_METRICS_LISTEN",
        default: None,
        help: "Address and port of a separate listener serving Prometheus metrics at /metrics; absent: none.",
    },
    Setting {
        key: "http.workers",
        env: "IBLUEPRINT_HTTP_WORKERS",
        default: None,
        help: "Threads serving HTTP requests (1 to 256; absent: one per CPU core).",
    },
    Setting {
        key: "http.max_connections",
        env: "IBLUEPRINT_HTTP_MAX_CONNECTIONS",
        default: Some("10000"),
        help: "Most client connections open at once, shared evenly by the workers; more wait in the listen queue (1 to 1000000).",
    },
    Setting {
        key: "http.request_timeout",
        env: "IBLUEPRINT_HTTP_REQUEST_TIMEOUT",
        default: Some("10s"),
        help: "Time a client has to send a request's headers, and again its body; too slow: 408 (headers) or 400 (body), then closed (1s to 5m).",
    },
    Setting {
        key: "http.keep_alive",
        env: "IBLUEPRINT_HTTP_KEEP_ALIVE",
        default: Some("75s"),
        help: "How long an idle connection stays open for the next request; keep it above a reverse proxy's idle timeout (1s to 1h).",
    },
];

const FLUSH_INTERVAL_MS: std::ops::RangeInclusive<u64> = 10..=60_000;
const MAX_KEYS_PER_USER: std::ops::RangeInclusive<u64> = 1..=100_000;
const RATE_LIMIT: std::ops::RangeInclusive<u64> = 1..=1_000_000_000;
const SESSION_TTL_SECONDS: std::ops::RangeInclusive<u64> = 60..=30 * 86_400;
const HTTP_WORKERS: std::ops::RangeInclusive<u64> = 1..=256;
const HTTP_MAX_CONNECTIONS: std::ops::RangeInclusive<u64> = 1..=1_000_000;
const HTTP_REQUEST_TIMEOUT_SECONDS: std::ops::RangeInclusive<u64> = 1..=300;
const HTTP_KEEP_ALIVE_SECONDS: std::ops::RangeInclusive<u64> = 1..=3600;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data: PathBuf,
    /// Without a trailing slash, so callers can append `/path`.
    pub public_url: Option<String>,
    pub tls: Option<TlsFiles>,
    pub default_rate_limit: RateLimit,
    pub flush_interval: Duration,
    pub max_keys_per_user: usize,
    pub session_ttl: Duration,
    pub log_format: LogFormat,
    pub metrics_listen: Option<SocketAddr>,
    pub http: HttpSettings,
}

/// The HTTP server's knobs (`[http]`); the fixed ones, and why, are in `http::limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    /// `None`: one per CPU core.
    pub workers: Option<usize>,
    /// For the whole server; each worker takes its share.
    pub max_connections: usize,
    pub request_timeout: Duration,
    pub keep_alive: Duration,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Pretty => "pretty",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{}` is not a log format; expected `pretty` or `json`", shown(.0))]
pub struct UnknownLogFormat(pub String);

impl FromStr for LogFormat {
    type Err = UnknownLogFormat;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        match input {
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            other => Err(UnknownLogFormat(other.to_owned())),
        }
    }
}

/// What the command line says. Values stay strings so that a bad flag is reported by the
/// same checks, in the same words, as a bad environment variable or file value.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub listen: Option<String>,
    pub data: Option<String>,
    pub log_format: Option<String>,
}

/// Where a value came from, written the way the user would look for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Flag(&'static str),
    Env(&'static str),
    File { key: &'static str, path: PathBuf },
    Default(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => f.write_str(flag),
            Origin::Env(var) => f.write_str(var),
            Origin::File { key, path } => write!(f, "{key} in {}", path.display()),
            Origin::Default(key) => write!(f, "the built-in default for {key}"),
        }
    }
}

// Underlying errors are folded into the message rather than exposed as `source()`, so
// that printing the error, alone or as an anyhow chain, gives one line without repeats.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {error}", path.display())]
    ReadFile { path: PathBuf, error: std::io::Error },

    #[error("config file {} is not valid TOML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },

    #[error("unknown setting `{key}` in {}; known settings: {}", path.display(), known_keys())]
    UnknownKey { key: String, path: PathBuf },

    #[error("{key} in {}: must be a string or a whole number, not {found}", path.display())]
    WrongType { key: &'static str, path: PathBuf, found: &'static str },

    #[error("{var}: is not valid UTF-8")]
    NotUnicode { var: &'static str },

    // Values are echoed because no setting is secret. A secret one must not reach here
    // with its value.
    #[error("{origin}: `{}` is not {expected}", shown(value))]
    Invalid { origin: Origin, value: String, expected: String },

    #[error("{origin}: is empty; expected {expected}")]
    Empty { origin: Origin, expected: String },

    #[error(
        "{missing} is not set but {present} is; HTTPS needs both tls.cert and tls.key \
         (IBLUEPRINT_TLS_CERT and IBLUEPRINT_TLS_KEY), so set {missing} or neither"
    )]
    TlsIncomplete { missing: &'static str, present: Origin },
}

fn known_keys() -> String {
    SETTINGS.iter().map(|s| s.key).collect::<Vec<_>>().join(", ")
}

/// Keeps an echoed value on one line and readable: control characters (a stray newline
/// from `$(cat file)`, say) are escaped and very long values are cut.
fn shown(value: &str) -> String {
    const LIMIT: usize = 200;
    let mut out = String::new();
    for (i, c) in value.chars().enumerate() {
        if i == LIMIT {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl Config {
    /// Builds the configuration from `overrides`, the variables `env` returns and the
    /// config file named in `overrides`. `env` is a parameter so tests need not touch the
    /// process environment, which is shared between test threads.
    pub fn load(overrides: &Overrides, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let file = match &overrides.config_file {
            Some(path) => read_file(path)?,
            None => BTreeMap::new(),
        };
        let values = Values::resolve(overrides, env, file);

        let listen = values.required("listen", "an address and port such as 127.0.0.1:8080", parse_addr)?;
        let data = values.required("data", "a file path", |v| Some(PathBuf::from(v)))?;
        let public_url = values.optional("public_url", "a URL starting with http:// or https://", parse_url)?;
        let flush_interval_ms =
            values.required("flush_interval_ms", &whole_number_expected(&FLUSH_INTERVAL_MS), |v| {
                parse_in(v, &FLUSH_INTERVAL_MS)
            })?;
        let max_keys_per_user =
            values.required("max_keys_per_user", &whole_number_expected(&MAX_KEYS_PER_USER), |v| {
                parse_in(v, &MAX_KEYS_PER_USER).and_then(|n| usize::try_from(n).ok())
            })?;
        let session_ttl = values.required(
            "session_ttl",
            "a duration from 60s to 30d written as a number and a unit, such as 15m, 12h or 7d",
            |v| parse_duration(v).ok().filter(|s| SESSION_TTL_SECONDS.contains(s)),
        )?;
        let log_format = values.required("log_format", "`pretty` or `json`", |v| v.parse::<LogFormat>().ok())?;
        let tls = values.tls()?;
        let rate_expected = format!("{} (leave it out for no limit)", whole_number_expected(&RATE_LIMIT));
        let per_hour = values.optional("default_rate_limit.per_hour", &rate_expected, |v| parse_in(v, &RATE_LIMIT))?;
        let per_day = values.optional("default_rate_limit.per_day", &rate_expected, |v| parse_in(v, &RATE_LIMIT))?;
        // The range was checked above; this only maps RateLimit's own verdict, should its
        // rules ever become stricter than ours, onto the value the user gave.
        let default_rate_limit = RateLimit::new(per_hour, per_day).map_err(|(field, error)| {
            let key = match field {
                "per_hour" => "default_rate_limit.per_hour",
                _ => "default_rate_limit.per_day",
            };
            let (value, origin) = values.raw(key).cloned().unwrap_or_else(|| (String::new(), Origin::Default(key)));
            ConfigError::Invalid { origin, value, expected: error.to_string() }
        })?;
        let metrics_listen =
            values.optional("metrics.listen", "an address and port such as 127.0.0.1:9090", parse_addr)?;
        let http = values.http()?;

        Ok(Config {
            listen,
            data,
            public_url,
            tls,
            default_rate_limit,
            flush_interval: Duration::from_millis(flush_interval_ms),
            max_keys_per_user,
            session_ttl: Duration::from_secs(session_ttl),
            log_format,
            metrics_listen,
            http,
        })
    }

    /// [`Config::load`] with the real process environment.
    pub fn from_process_env(overrides: &Overrides) -> Result<Config, ConfigError> {
        // `std::env::var` would quietly treat a non-UTF-8 value as unset, and then a
        // different value than the one the user exported would be used.
        for setting in SETTINGS {
            if std::env::var_os(setting.env).is_some_and(|v| v.to_str().is_none()) {
                return Err(ConfigError::NotUnicode { var: setting.env });
            }
        }
        Config::load(overrides, &|name| std::env::var(name).ok())
    }
}

fn setting(key: &str) -> &'static Setting {
    SETTINGS
        .iter()
        .find(|s| s.key == key)
        .unwrap_or_else(|| panic!("config.rs asks for `{key}`, which is not in SETTINGS"))
}

fn flag<'a>(overrides: &'a Overrides, key: &str) -> Option<(&'static str, &'a str)> {
    let (name, value) = match key {
        "listen" => ("--listen", &overrides.listen),
        "data" => ("--data", &overrides.data),
        "log_format" => ("--log-format", &overrides.log_format),
        _ => return None,
    };
    value.as_deref().map(|v| (name, v))
}

/// The raw string each setting ends up with, and where it came from.
struct Values {
    chosen: BTreeMap<&'static str, (String, Origin)>,
}

impl Values {
    fn resolve(
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
        mut file: BTreeMap<&'static str, (String, Origin)>,
    ) -> Values {
        let mut chosen = BTreeMap::new();
        for setting in SETTINGS {
            let from_flag = flag(overrides, setting.key).map(|(name, v)| (v.to_owned(), Origin::Flag(name)));
            // An empty variable counts as unset, so `IBLUEPRINT_X= iblueprint ...` can
            // switch off an exported value without hiding what the file says.
            let from_env = || env(setting.env).filter(|v| !v.is_empty()).map(|v| (v, Origin::Env(setting.env)));
            let from_default = || setting.default.map(|v| (v.to_owned(), Origin::Default(setting.key)));
            let value = from_flag.or_else(from_env).or_else(|| file.remove(setting.key)).or_else(from_default);
            if let Some(value) = value {
                chosen.insert(setting.key, value);
            }
        }
        Values { chosen }
    }

    fn raw(&self, key: &str) -> Option<&(String, Origin)> {
        self.chosen.get(setting(key).key)
    }

    fn optional<T>(
        &self,
        key: &str,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        match self.raw(key) {
            None => Ok(None),
            // Only the file and flags can get an empty string this far; for an optional
            // setting it is the natural way to say "none".
            Some((value, _)) if value.is_empty() => Ok(None),
            Some((value, origin)) => match parse(value) {
                Some(parsed) => Ok(Some(parsed)),
                None => Err(ConfigError::Invalid {
                    origin: origin.clone(),
                    value: value.clone(),
                    expected: expected.to_owned(),
                }),
            },
        }
    }

    fn required<T>(&self, key: &str, expected: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, ConfigError> {
        let Some((value, origin)) = self.raw(key) else {
            panic!("setting `{key}` has no default in SETTINGS but is required");
        };
        if value.is_empty() {
            return Err(ConfigError::Empty { origin: origin.clone(), expected: expected.to_owned() });
        }
        parse(value).ok_or_else(|| ConfigError::Invalid {
            origin: origin.clone(),
            value: value.clone(),
            expected: expected.to_owned(),
        })
    }

    fn http(&self) -> Result<HttpSettings, ConfigError> {
        let count = |range: &'static std::ops::RangeInclusive<u64>| {
            move |v: &str| parse_in(v, range).and_then(|n| usize::try_from(n).ok())
        };
        let duration = |key, range: &std::ops::RangeInclusive<u64>, example| {
            let expected = format!(
                "a duration from {}s to {}s written as a number and a unit, such as {example}",
                range.start(),
                range.end()
            );
            self.required(key, &expected, |v| parse_duration(v).ok().filter(|s| range.contains(s)))
                .map(Duration::from_secs)
        };
        Ok(HttpSettings {
            workers: self.optional("http.workers", &whole_number_expected(&HTTP_WORKERS), count(&HTTP_WORKERS))?,
            max_connections: self.required(
                "http.max_connections",
                &whole_number_expected(&HTTP_MAX_CONNECTIONS),
                count(&HTTP_MAX_CONNECTIONS),
            )?,
            request_timeout: duration("http.request_timeout", &HTTP_REQUEST_TIMEOUT_SECONDS, "10s or 1m")?,
            keep_alive: duration("http.keep_alive", &HTTP_KEEP_ALIVE_SECONDS, "75s or 5m")?,
        })
    }

    fn tls(&self) -> Result<Option<TlsFiles>, ConfigError> {
        let cert = self.optional("tls.cert", "a file path", |v| Some(PathBuf::from(v)))?;
        let key = self.optional("tls.key", "a file path", |v| Some(PathBuf::from(v)))?;
        let origin_of = |key: &str| self.raw(key).map(|(_, origin)| origin.clone());
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(ConfigError::TlsIncomplete {
                missing: "tls.key",
                present: origin_of("tls.cert").unwrap_or(Origin::Default("tls.cert")),
            }),
            (None, Some(_)) => Err(ConfigError::TlsIncomplete {
                missing: "tls.cert",
                present: origin_of("tls.key").unwrap_or(Origin::Default("tls.key")),
            }),
        }
    }
}

/// Reads the config file into dotted keys and raw strings, rejecting keys that are not
/// settings: a misspelt key silently ignored is a setting silently not applied.
fn read_file(path: &Path) -> Result<BTreeMap<&'static str, (String, Origin)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::ReadFile { path: path.to_owned(), error })?;
    let table = toml::from_str::<toml::Table>(&text)
        .map_err(|error| ConfigError::Syntax { path: path.to_owned(), message: syntax_message(&text, &error) })?;
    let mut flat = Vec::new();
    flatten("", table, &mut flat);

    let mut values = BTreeMap::new();
    for (key, value) in flat {
        let Some(setting) = SETTINGS.iter().find(|s| s.key == key) else {
            return Err(ConfigError::UnknownKey { key, path: path.to_owned() });
        };
        let raw = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            other => {
                return Err(ConfigError::WrongType {
                    key: setting.key,
                    path: path.to_owned(),
                    found: type_name(&other),
                });
            }
        };
        let origin = Origin::File { key: setting.key, path: path.to_owned() };
        values.insert(setting.key, (raw, origin));
    }
    Ok(values)
}

fn flatten(prefix: &str, table: toml::Table, out: &mut Vec<(String, toml::Value)>) {
    for (name, value) in table {
        let key = if prefix.is_empty() { name } else { format!("{prefix}.{name}") };
        match value {
            toml::Value::Table(inner) => flatten(&key, inner, out),
            other => out.push((key, other)),
        }
    }
}

fn type_name(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a decimal number",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

/// toml's own `Display` draws a multi-line snippet; a one-line "line L, column C: what"
/// fits a log line and a terminal alike.
fn syntax_message(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim_end().replace('\n', "; ");
    let Some(span) = error.span() else {
        return message;
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: {message}")
}

fn parse_addr(value: &str) -> Option<SocketAddr> {
    value.parse().ok()
}

fn parse_url(value: &str) -> Option<String> {
    let rest = value.strip_prefix("https://").or_else(|| value.strip_prefix("http://"))?;
    let url = value.strip_suffix('/').unwrap_or(value);
    let host_missing = rest.is_empty() || rest.starts_with('/');
    if host_missing || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    Some(url.to_owned())
}

/// Digits only: `u64::from_str` would also take `+5`, which no one means in a config.
fn parse_in(value: &str, range: &std::ops::RangeInclusive<u64>) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|n| range.contains(n))
}

fn whole_number_expected(range: &std::ops::RangeInclusive<u64>) -> String {
    format!("a whole number from {} to {}", range.start(), range.end())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Write;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn file_with(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().expect("temp file");
        file.write_all(text.as_bytes()).expect("write temp file");
        file
    }

    fn with_file(file: &tempfile::NamedTempFile) -> Overrides {
        Overrides { config_file: Some(file.path().to_owned()), ..Overrides::default() }
    }

    fn error_of(result: Result<Config, ConfigError>) -> String {
        match result {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = Config::load(&Overrides::default(), &no_env).unwrap();
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.data, PathBuf::from("./data/iblueprint.redb"));
        assert_eq!(config.public_url, None);
        assert!(config.tls.is_none());
        assert!(config.default_rate_limit.is_unlimited());
        assert_eq!(config.flush_interval, Duration::from_millis(1000));
        assert_eq!(config.max_keys_per_user, 1000);
        assert_eq!(config.session_ttl, Duration::from_secs(12 * 3600));
        assert_eq!(config.log_format, LogFormat::Pretty);
        assert_eq!(config.metrics_listen, None);
        let http = config.http;
        assert_eq!((http.workers, http.max_connections), (None, 10_000));
        assert_eq!((http.request_timeout, http.keep_alive), (Duration::from_secs(10), Duration::from_secs(75)));
    }

    #[test]
    fn http_knobs_are_read_from_their_table_and_checked() {
        let file =
            file_with("[http]\nworkers = 3\nmax_connections = 50\nrequest_timeout = \"2m\"\nkeep_alive = \"1s\"\n");
        let http = Config::load(&with_file(&file), &no_env).unwrap().http;
        assert_eq!(http.workers, Some(3));
        assert_eq!(http.max_connections, 50);
        assert_eq!(http.request_timeout, Duration::from_secs(120));
        assert_eq!(http.keep_alive, Duration::from_secs(1));
        for (var, value, expected) in [
            ("IBLUEPRINT_HTTP_WORKERS", "0", "a whole number from 1 to 256"),
            ("IBLUEPRINT_HTTP_MAX_CONNECTIONS", "1000001", "a whole number from 1 to 1000000"),
            ("IBLUEPRINT_HTTP_REQUEST_TIMEOUT", "0s", "a duration from 1s to 300s"),
            ("IBLUEPRINT_HTTP_REQUEST_TIMEOUT", "10", "a duration from 1s to 300s"),
            ("IBLUEPRINT_HTTP_KEEP_ALIVE", "2h", "a duration from 1s to 3600s"),
        ] {
            let message = error_of(Config::load(&Overrides::default(), &env_of(&[(var, value)])));
            assert!(message.starts_with(&format!("{var}: `{value}` is not {expected}")), "{message}");
        }
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let file = file_with(
            "listen = \"10.0.0.1:1\"\ndata = \"/from/file\"\nlog_format = \"json\"\nflush_interval_ms = 50\n",
        );
        let env = env_of(&[("IBLUEPRINT_LISTEN", "10.0.0.2:2"), ("IBLUEPRINT_DATA", "/from/env")]);
        let overrides = Overrides { listen: Some("10.0.0.3:3".into()), ..with_file(&file) };
        let config = Config::load(&overrides, &env).unwrap();
        assert_eq!(config.listen, "10.0.0.3:3".parse().unwrap(), "flag beats env and file");
        assert_eq!(config.data, PathBuf::from("/from/env"), "env beats file");
        assert_eq!(config.log_format, LogFormat::Json, "file beats default");
        assert_eq!(config.flush_interval, Duration::from_millis(50));
    }

    #[test]
    fn an_empty_env_variable_counts_as_unset() {
        let file = file_with("listen = \"10.0.0.1:1\"\n");
        let env = env_of(&[("IBLUEPRINT_LISTEN", ""), ("IBLUEPRINT_PUBLIC_URL", "")]);
        let config = Config::load(&with_file(&file), &env).unwrap();
        assert_eq!(config.listen, "10.0.0.1:1".parse().unwrap());
        assert_eq!(config.public_url, None);
    }

    #[test]
    fn other_iblueprint_variables_are_left_alone() {
        let env = env_of(&[
            ("IBLUEPRINT_API_KEY", "ibp_whatever"),
            ("IBLUEPRINT_URL", "not a url"),
            ("IBLUEPRINT_CONFIG", "/nowhere.toml"),
        ]);
        assert!(Config::load(&Overrides::default(), &env).is_ok());
    }

    #[test]
    fn an_unknown_file_key_is_an_error_naming_it_and_the_file() {
        let file = file_with("[tls]\ncrt = \"/c.pem\"\n");
        let message = error_of(Config::load(&with_file(&file), &no_env));
        assert!(message.starts_with("unknown setting `tls.crt` in "), "{message}");
        assert!(message.contains(&file.path().display().to_string()), "{message}");
        assert!(message.contains("known settings: listen, data,"), "{message}");
        assert!(message.contains("tls.cert"), "{message}");
    }

    #[test]
    fn a_missing_config_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.toml");
        let overrides = Overrides { config_file: Some(path.clone()), ..Overrides::default() };
        let message = error_of(Config::load(&overrides, &no_env));
        assert!(message.starts_with(&format!("cannot read config file {}: ", path.display())), "{message}");
    }

    #[test]
    fn a_toml_syntax_error_names_the_file_line_and_column_on_one_line() {
        let file = file_with("listen = \"127.0.0.1:80\"\ndata = \n");
        let message = error_of(Config::load(&with_file(&file), &no_env));
        assert!(message.contains(&file.path().display().to_string()), "{message}");
        assert!(message.contains("is not valid TOML: line 2, column"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn a_bad_value_in_env_names_the_env_var() {
        let env = env_of(&[("IBLUEPRINT_FLUSH_INTERVAL_MS", "abc")]);
        let message = error_of(Config::load(&Overrides::default(), &env));
        assert_eq!(message, "IBLUEPRINT_FLUSH_INTERVAL_MS: `abc` is not a whole number from 10 to 60000");
    }

    #[test]
    fn a_bad_value_in_the_file_names_the_key_and_the_file() {
        let file = file_with("session_ttl = \"5s\"\n");
        let message = error_of(Config::load(&with_file(&file), &no_env));
        let expected_start = format!("session_ttl in {}: `5s` is not a duration", file.path().display());
        assert!(message.starts_with(&expected_start), "{message}");
    }

    #[test]
    fn a_bad_flag_names_the_flag() {
        let overrides = Overrides { log_format: Some("yaml".into()), ..Overrides::default() };
        let message = error_of(Config::load(&overrides, &no_env));
        assert_eq!(message, "--log-format: `yaml` is not `pretty` or `json`");
        let overrides = Overrides { listen: Some(String::new()), ..Overrides::default() };
        let message = error_of(Config::load(&overrides, &no_env));
        assert!(message.starts_with("--listen: is empty; expected an address"), "{message}");
    }

    #[test]
    fn a_value_of_the_wrong_toml_type_is_an_error_naming_the_key() {
        let file = file_with("[metrics]\nlisten = true\n");
        let message = error_of(Config::load(&with_file(&file), &no_env));
        assert!(message.starts_with("metrics.listen in "), "{message}");
        assert!(message.ends_with("must be a string or a whole number, not a boolean"), "{message}");
    }

    #[test]
    fn tls_with_only_a_cert_is_an_error_naming_tls_key() {
        let env = env_of(&[("IBLUEPRINT_TLS_CERT", "/etc/cert.pem")]);
        let message = error_of(Config::load(&Overrides::default(), &env));
        assert!(message.starts_with("tls.key is not set but IBLUEPRINT_TLS_CERT is"), "{message}");

        let file = file_with("[tls]\nkey = \"/k.pem\"\n");
        let message = error_of(Config::load(&with_file(&file), &no_env));
        assert!(message.starts_with("tls.cert is not set but tls.key in "), "{message}");
    }

    #[test]
    fn tls_with_both_files_is_enabled_even_from_different_sources() {
        let file = file_with("[tls]\ncert = \"/c.pem\"\n");
        let env = env_of(&[("IBLUEPRINT_TLS_KEY", "/k.pem")]);
        let tls = Config::load(&with_file(&file), &env).unwrap().tls.unwrap();
        assert_eq!(tls.cert, PathBuf::from("/c.pem"));
        assert_eq!(tls.key, PathBuf::from("/k.pem"));
    }

    #[test]
    fn integers_and_strings_are_both_accepted_for_numeric_settings() {
        let file = file_with(
            "flush_interval_ms = \"250\"\nmax_keys_per_user = 7\n\
             [default_rate_limit]\nper_hour = 100\nper_day = \"2000\"\n",
        );
        let config = Config::load(&with_file(&file), &no_env).unwrap();
        assert_eq!(config.flush_interval, Duration::from_millis(250));
        assert_eq!(config.max_keys_per_user, 7);
        assert_eq!(config.default_rate_limit.per_hour(), Some(100));
        assert_eq!(config.default_rate_limit.per_day(), Some(2000));
    }

    #[test]
    fn numbers_outside_their_range_are_rejected() {
        for (var, value) in [
            ("IBLUEPRINT_FLUSH_INTERVAL_MS", "9"),
            ("IBLUEPRINT_FLUSH_INTERVAL_MS", "60001"),
            ("IBLUEPRINT_MAX_KEYS_PER_USER", "0"),
            ("IBLUEPRINT_MAX_KEYS_PER_USER", "+5"),
            ("IBLUEPRINT_DEFAULT_RATE_LIMIT_PER_HOUR", "0"),
            ("IBLUEPRINT_DEFAULT_RATE_LIMIT_PER_DAY", "1000000001"),
            ("IBLUEPRINT_SESSION_TTL", "31d"),
        ] {
            let message = error_of(Config::load(&Overrides::default(), &env_of(&[(var, value)])));
            assert!(message.starts_with(&format!("{var}: `{value}` is not ")), "{message}");
        }
        let file = file_with("max_keys_per_user = -1\n");
        let message = error_of(Config::load(&with_file(&file), &no_env));
        assert!(message.contains("max_keys_per_user in "), "{message}");
        assert!(message.contains("`-1` is not a whole number from 1 to 100000"), "{message}");
    }

    #[test]
    fn public_url_needs_a_scheme_and_loses_one_trailing_slash() {
        let load = |url: &str| Config::load(&Overrides::default(), &env_of(&[("IBLUEPRINT_PUBLIC_URL", url)]));
        assert_eq!(load("https://keys.example.com/").unwrap().public_url.as_deref(), Some("https://keys.example.com"));
        assert_eq!(load("http://10.0.0.1:8080").unwrap().public_url.as_deref(), Some("http://10.0.0.1:8080"));
        for bad in ["keys.example.com", "ftp://x", "https://", "https:///path", "https://a b"] {
            let message = error_of(load(bad));
            assert!(message.starts_with("IBLUEPRINT_PUBLIC_URL: "), "{message}");
        }
    }

    #[test]
    fn an_empty_string_in_the_file_means_an_optional_setting_is_absent() {
        let file = file_with("public_url = \"\"\n[metrics]\nlisten = \"\"\n");
        let config = Config::load(&with_file(&file), &no_env).unwrap();
        assert_eq!(config.public_url, None);
        assert_eq!(config.metrics_listen, None);
        let file = file_with("data = \"\"\n");
        let message = error_of(Config::load(&with_file(&file), &no_env));
        assert!(message.contains("is empty; expected a file path"), "{message}");
    }

    #[test]
    fn echoed_values_stay_on_one_line() {
        let env = env_of(&[("IBLUEPRINT_LISTEN", "0.0.0.0:80\n")]);
        let message = error_of(Config::load(&Overrides::default(), &env));
        assert!(message.starts_with("IBLUEPRINT_LISTEN: `0.0.0.0:80\\n` is not"), "{message}");
    }

    #[test]
    fn log_format_parses_its_two_names_and_explains_otherwise() {
        assert_eq!("pretty".parse::<LogFormat>(), Ok(LogFormat::Pretty));
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        let error = "JSON".parse::<LogFormat>().unwrap_err();
        assert_eq!(error.to_string(), "`JSON` is not a log format; expected `pretty` or `json`");
        assert_eq!(LogFormat::Json.to_string(), "json");
    }

    #[test]
    fn every_env_variable_is_the_key_in_capitals_with_underscores() {
        for setting in SETTINGS {
            let derived = format!("IBLUEPRINT_{}", setting.key.to_uppercase().replace('.', "_"));
            assert_eq!(setting.env, derived);
        }
    }

    #[test]
    fn every_default_is_itself_a_valid_value() {
        // Feeding each default back in through the environment must give the defaults.
        let pairs: Vec<(&str, &str)> = SETTINGS.iter().filter_map(|s| s.default.map(|d| (s.env, d))).collect();
        let from_env = Config::load(&Overrides::default(), &env_of(&pairs)).unwrap();
        let plain = Config::load(&Overrides::default(), &no_env).unwrap();
        assert_eq!(format!("{from_env:?}"), format!("{plain:?}"));
    }

    /// The sample with every commented-out setting and table header switched on.
    fn uncommented(sample: &str) -> String {
        let is_setting_line = |s: &str| {
            let s = s.trim();
            let header = s.starts_with('[') && s.ends_with(']');
            let assignment = s
                .split_once(" = ")
                .is_some_and(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            header || assignment
        };
        sample
            .lines()
            .map(|line| match line.strip_prefix('#') {
                Some(rest) if is_setting_line(rest) => rest.trim_start(),
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_sample_config_documents_every_setting() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/iblueprint.toml");
        let sample = std::fs::read_to_string(&path).expect("config/iblueprint.toml is readable");

        // As shipped, it loads and changes nothing.
        let overrides = Overrides { config_file: Some(path.clone()), ..Overrides::default() };
        let shipped = Config::load(&overrides, &no_env).unwrap();
        let defaults = Config::load(&Overrides::default(), &no_env).unwrap();
        assert_eq!(format!("{shipped:?}"), format!("{defaults:?}"));

        for setting in SETTINGS {
            assert!(sample.contains(setting.help), "the sample lacks the help line for {}", setting.key);
        }

        // With everything switched on it names exactly the known settings, shows each
        // default as it is, and its example values are valid.
        let full = uncommented(&sample);
        let table = toml::from_str::<toml::Table>(&full).expect("uncommented sample is TOML");
        let mut flat = Vec::new();
        flatten("", table, &mut flat);
        let mut keys: Vec<&str> = flat.iter().map(|(k, _)| k.as_str()).collect();
        let mut known: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
        keys.sort_unstable();
        known.sort_unstable();
        assert_eq!(keys, known);
        for (key, value) in &flat {
            if let Some(default) = setting(key).default {
                let shown = match value {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                assert_eq!(shown, default, "the sample shows a different default for {key}");
            }
        }
        let file = file_with(&full);
        let example = Config::load(&with_file(&file), &no_env).unwrap();
        assert!(example.tls.is_some());
        assert!(example.metrics_listen.is_some());
        assert!(example.public_url.is_some());
        assert!(!example.default_rate_limit.is_unlimited());
    }
}
