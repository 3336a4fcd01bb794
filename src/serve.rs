//! `iblueprint serve`: resolve the configuration, open the store, run the HTTP server until
//! SIGTERM or Ctrl-C, and shut down cleanly.

use std::sync::Arc;

use anyhow::Context;

use crate::cli::{CliError, ServeArgs};
use crate::config::{Config, Overrides};
use crate::http::{self, ServerOptions};
use crate::service::{Service, ServiceSettings};
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
    if users == 0 {
        tracing::warn!(
            "no users yet: stop the server and run `iblueprint users add NAME --admin` to create the first one"
        );
    }

    let options = ServerOptions { listen: config.listen, workers: None };
    actix_web::rt::System::new()
        .block_on(http::serve(service, options, |addrs| {
            for addr in addrs {
                // On stdout, unlike the logs, so scripts and tests can read the bound port.
                println!("iblueprint listening on http://{addr}");
            }
        }))
        .with_context(|| format!("serving on {}", config.listen))?;
    // Requests in flight have finished; write the last rate-limit levels and usage.
    flusher.stop();
    tracing::info!("stopped cleanly");
    Ok(())
}
