//! `iblueprint serve`: resolve the configuration, open the store, run the HTTP server until
//! SIGTERM or Ctrl-C, and shut down cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cli::{CliError, ServeArgs};
use crate::config::{Config, Overrides};
use crate::http::metrics::MetricsOptions;
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
    // Before the data file is opened: a bad certificate or key stops start-up at once.
    let tls = config.tls.as_ref().map(http::tls::load).transpose().map_err(CliError::usage)?;
    let scheme = if tls.is_some() { "https" } else { "http" };

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
    let setup_link = service.open_setup_link(crate::clock::now()).map_err(|e| CliError::Runtime(e.into()))?;
    if setup_link.is_some() {
        // The link itself holds a secret and goes to stdout only, never to the log.
        tracing::warn!(
            "no users yet: open the setup link printed on standard output, or run `iblueprint users add NAME --admin`"
        );
    }

    let options = ServerOptions {
        listen: config.listen,
        workers: config.http.workers,
        pages: PagesConfig { public_url: config.public_url.clone() },
        tls,
        http: config.http,
        metrics: config.metrics_listen.map(|listen| MetricsOptions { listen, data_file: config.data.clone() }),
    };
    let public_url = config.public_url.clone();
    http::run(Arc::clone(&service), options, |bound| {
            for addr in &bound.api {
                // On stdout, unlike the logs, so scripts and tests can read the bound port.
                println!("iblueprint listening on {scheme}://{addr}");
            }
            if let Some(addr) = bound.metrics {
                println!("iblueprint metrics on http://{addr}/metrics");
            }
            if let (Some(secret), Some(addr)) = (&setup_link, bound.api.first()) {
                // The one place the setup secret is shown: the operator's terminal.
                let base = public_url.clone().unwrap_or_else(|| format!("{scheme}://{addr}"));
                println!(
                    "no users yet: open {base}/setup/{} within {} minutes to create the first admin (or run `iblueprint users add NAME --admin`)",
                    secret.expose(),
                    SETUP_LINK_SECONDS / 60
                );
            }
    })
    .map_err(|err| listen_error(err, config.listen))?;
    // Requests in flight have finished; write the last rate-limit levels and usage.
    flusher.stop();
    close(service);
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Why serving stopped with an error. An address someone else holds is the common case at
/// start-up (a second server, a leftover process); the error names the listener and its
/// address, and this adds what to do about it.
fn listen_error(err: std::io::Error, listen: SocketAddr) -> anyhow::Error {
    if err.kind() == std::io::ErrorKind::AddrInUse {
        return anyhow::anyhow!(
            "{err}: another program (another iblueprint?) holds it; stop it, or choose another address with --listen, IBLUEPRINT_LISTEN or `listen` in the config (`metrics.listen` for the metrics listener)"
        );
    }
    anyhow::Error::new(err).context(format!("serving on {listen}"))
}

/// Closes the data file cleanly. The server's worker threads let go of the service a moment
/// after the server future completes; a file dropped by an exiting process instead is left
/// marked "not shut down cleanly", and the next start pays for a repair pass over it.
fn close(mut service: Arc<Service>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Arc::try_unwrap(service) {
            Ok(service) => return drop(service),
            Err(shared) if Instant::now() < deadline => {
                service = shared;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => {
                tracing::warn!("worker threads still hold the data file; it will be repaired at the next start");
                return;
            }
        }
    }
}
