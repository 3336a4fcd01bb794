//! `iblueprint serve`: resolve the configuration, open the store, run the HTTP server until
//! SIGTERM or Ctrl-C, and shut down cleanly.

use std::sync::Arc;

use anyhow::Context;

use crate::cli::{CliError, ServeArgs};
use crate::config::{Config, Overrides};
use crate::domain::Timestamp;
use crate::http::pages::PagesConfig;
use crate::http::{self, ServerOptions};
use crate::service::{SETUP_LINK_SECONDS, Service, ServiceSettings};
use crate::store::{Reads, Store};
use crate::telemetry;

pub fn run(args: ServeArgs) -> Result<(), CliError> {
    let overrides =
        Overrides { config_file: args.config, listen: args.listen, data: args.data, log_format: args.log_format };
    let config = Config::from_process_env(&overrides).map_err(CliError::usage)?;
    telemetry::init(config.log_format, "info");
    if let Some(tls) = &config.tls {
        return Err(CliError::usage(format!(
            "tls.cert ({}) is set, but this build does not serve TLS yet; unset tls.cert and tls.key, or terminate TLS in a proxy",
            tls.cert.display()
        )));
    }
    if config.metrics_listen.is_some() {
        tracing::warn!("metrics.listen is set, but this build has no metrics listener yet; ignoring it");
    }

    let store = Store::open(&config.data).map_err(|e| CliError::Runtime(e.into()))?;
    let users = store.read().and_then(|r| r.user_count()).map_err(|e| CliError::Runtime(e.into()))?;
    let settings = ServiceSettings {
        max_keys_per_user: config.max_keys_per_user,
        default_rate_limit: config.default_rate_limit,
        session_ttl_seconds: config.session_ttl.as_secs(),
    };
    let service = Arc::new(Service::new(store, settings));
    let flusher = service.limiter().start_flusher(config.flush_interval).context("starting the flush thread")?;
    tracing::info!(data = %config.data.display(), users, "data file open");
    let setup_link = service.open_setup_link(Timestamp::now()).map_err(|e| CliError::Runtime(e.into()))?;
    if setup_link.is_some() {
        // The link itself holds a secret and goes to stdout only, never to the log.
        tracing::warn!(
            "no users yet: open the setup link printed on standard output, or run `iblueprint users add NAME --admin`"
        );
    }

    let options = ServerOptions {
        listen: config.listen,
        workers: None,
        pages: PagesConfig { public_url: config.public_url.clone() },
    };
    let public_url = config.public_url.clone();
    actix_web::rt::System::new()
        .block_on(http::serve(service, options, |addrs| {
            for addr in addrs {
                // On stdout, unlike the logs, so scripts and tests can read the bound port.
                println!("iblueprint listening on http://{addr}");
            }
            if let (Some(secret), Some(addr)) = (&setup_link, addrs.first()) {
                // The one place the setup secret is shown: the operator's terminal.
                let base = public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
                println!(
                    "no users yet: open {base}/setup/{} within {} minutes to create the first admin (or run `iblueprint users add NAME --admin`)",
                    secret.expose(),
                    SETUP_LINK_SECONDS / 60
                );
            }
        }))
        .with_context(|| format!("serving on {}", config.listen))?;
    // Requests in flight have finished; write the last rate-limit levels and usage.
    flusher.stop();
    tracing::info!("stopped cleanly");
    Ok(())
}
