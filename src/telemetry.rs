//! Logging through tracing-subscriber: human-readable or JSON lines on stderr, filtered by
//! `RUST_LOG` (default `info`). Nothing logged anywhere in the crate carries a secret: the
//! request log records key ids, and `Token` has no `Display`. The black-box suite holds
//! every crate to that at debug level: its servers run with `RUST_LOG=debug` and their logs
//! are scanned for secrets (`tests/api/helpers.rs`). `log`-crate records (actix-web, mio)
//! reach the same filter through tracing-subscriber's `tracing-log` bridge.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // A second init (tests calling into the library twice) is harmless: keep the first.
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
}
