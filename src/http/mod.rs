//! The HTTP layer: the only module that knows actix-web.
//!
//! Handlers are thin: they parse the request into domain values, call [`Service`], and turn
//! the outcome into JSON or an RFC 9457 problem ([`api`], under `/v1`) or an HTML page
//! ([`pages`], the settings page). Writes (which fsync) and password hashing run on actix's
//! blocking pool so a slow disk or argon2 never stalls the async workers.

pub mod api;
pub mod auth;
pub mod body;
pub mod error;
mod finish;
pub mod limits;
pub mod metrics;
pub mod pages;
mod rate_headers;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use actix_web::rt::signal::unix::{SignalKind, signal};
use actix_web::{App, HttpServer, web};

use crate::service::Service;

pub struct ServerOptions {
    pub listen: SocketAddr,
    /// Worker threads; `None` means one per core. (`http.workers` is not read here: the
    /// caller decides, as `serve` does from the same setting.)
    pub workers: Option<usize>,
    /// What the settings pages need from the configuration.
    pub pages: pages::PagesConfig,
    /// Serve HTTPS with this configuration (see [`tls::load`]); `None` serves plain HTTP.
    pub tls: Option<tls::TlsConfig>,
    /// Also serve Prometheus metrics on a separate address; `None`: no metrics listener.
    pub metrics: Option<metrics::MetricsOptions>,
    /// Connections and timeouts (see [`limits`]).
    pub http: crate::config::HttpSettings,
}

/// The addresses actually bound (port 0 becomes the port the system chose).
pub struct Bound {
    pub api: Vec<SocketAddr>,
    pub metrics: Option<SocketAddr>,
    /// Stops the server as SIGTERM would, from any thread (for embedding, and tests).
    pub handle: actix_web::dev::ServerHandle,
}

/// Stops `server` gracefully (requests in flight finish) on SIGTERM or Ctrl-C.
///
/// Both handlers are registered before this returns, so call it before announcing the
/// address: actix installs its own handlers only once the server runs, and a SIGTERM in
/// between would kill the process. Build the server with `disable_signals()`, and call this
/// inside its actix runtime. The hello-world baseline of the benchmarks uses it too, so both
/// shut down alike.
pub fn stop_on_signal(server: &actix_web::dev::Server) -> std::io::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        std::future::poll_fn(|cx| match (terminate.poll_recv(cx), interrupt.poll_recv(cx)) {
            (Poll::Pending, Poll::Pending) => Poll::Pending,
            _ => Poll::Ready(()),
        })
        .await;
        tracing::info!("shutdown requested: finishing requests in flight");
        handle.stop(true).await;
    });
    Ok(())
}

/// Runs the server on its own actix runtime on this thread until it stops; see [`serve`].
pub fn run(service: Arc<Service>, options: ServerOptions, on_bound: impl FnOnce(&Bound)) -> std::io::Result<()> {
    actix_web::rt::System::new().block_on(serve(service, options, on_bound))
}

/// Binds, calls `on_bound` with the real addresses, and serves until SIGTERM or Ctrl-C,
/// then finishes requests in flight and returns.
pub async fn serve(
    service: Arc<Service>,
    options: ServerOptions,
    on_bound: impl FnOnce(&Bound),
) -> std::io::Result<()> {
    // Bound first, so a taken metrics port stops start-up before the API is announced.
    let metrics_listener = options.metrics.map(|m| metrics::bind(Arc::clone(&service), m)).transpose()?;
    let request_metrics = Arc::clone(service.metrics());
    let data = web::Data::from(service);
    // One for all workers: it holds new secrets between the POST that makes and the GET that shows them.
    let pages = web::Data::new(pages::Pages::new(options.pages));
    let over_tls = options.tls.is_some();
    let workers = options.workers.unwrap_or_else(limits::default_workers);
    let body_deadline = limits::BodyDeadline(options.http.request_timeout);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(pages.clone())
            .app_data(body::payload_config())
            .app_data(body_deadline)
            .wrap(finish::Finish::new(Arc::clone(&request_metrics), over_tls))
            .configure(api::configure)
            .configure(pages::configure)
            .default_service(web::to(api::not_found))
    })
    .shutdown_timeout(30)
    // The hardening knobs, all explicit; what each means for a client is in `limits`.
    .workers(workers)
    .max_connections(limits::per_worker(options.http.max_connections, workers))
    .max_connection_rate(limits::MAX_TLS_HANDSHAKES_PER_WORKER)
    .backlog(limits::BACKLOG)
    .client_request_timeout(options.http.request_timeout)
    .keep_alive(options.http.keep_alive)
    .client_disconnect_timeout(limits::CLIENT_DISCONNECT_TIMEOUT)
    .tls_handshake_timeout(limits::TLS_HANDSHAKE_TIMEOUT)
    // Our own handlers instead (see `stop_on_signal`), registered before the address is announced.
    .disable_signals();
    let server = match options.tls {
        Some(tls) => server.bind_rustls_0_23(options.listen, tls.server),
        None => server.bind(options.listen),
    }
    // Named like the metrics listener's, so either says which address failed.
    .map_err(|e| std::io::Error::new(e.kind(), format!("API listener on {}: {e}", options.listen)))?;
    let api = server.addrs();
    let running = server.run();
    stop_on_signal(&running)?;
    let metrics_listener = metrics_listener.map(|(server, addr)| {
        let handle = server.handle();
        actix_web::rt::spawn(server);
        (handle, addr)
    });
    on_bound(&Bound { api, metrics: metrics_listener.as_ref().map(|(_, addr)| *addr), handle: running.handle() });
    let served = running.await;
    if let Some((handle, _)) = metrics_listener {
        handle.stop(true).await;
    }
    served
}
