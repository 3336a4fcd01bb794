//! The HTTP layer: the only module that knows actix-web.
//!
//! Handlers are thin: they parse the request into domain values, call [`Service`], and turn
//! the outcome into JSON or an RFC 9457 problem. Writes (which fsync) run on actix's
//! blocking pool so a slow disk never stalls the async workers.

pub mod api;
pub mod auth;
pub mod body;
pub mod error;
mod rate_headers;
mod request_log;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};

use crate::service::Service;

pub struct ServerOptions {
    pub listen: SocketAddr,
    /// Worker threads; `None` means one per core.
    pub workers: Option<usize>,
}

/// Binds, calls `on_bound` with the real address (port 0 becomes the chosen port), and
/// serves until SIGTERM or Ctrl-C, then finishes requests in flight and returns.
pub async fn serve(
    service: Arc<Service>,
    options: ServerOptions,
    on_bound: impl FnOnce(&[SocketAddr]),
) -> std::io::Result<()> {
    let data = web::Data::from(service);
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(body::payload_config())
            .wrap(actix_web::middleware::from_fn(rate_headers::add))
            .wrap(actix_web::middleware::from_fn(request_log::log))
            .configure(api::configure)
            .default_service(web::to(api::not_found))
    })
    .shutdown_timeout(30)
    .client_request_timeout(Duration::from_secs(10));
    if let Some(workers) = options.workers {
        server = server.workers(workers);
    }
    let server = server.bind(options.listen)?;
    on_bound(&server.addrs());
    server.run().await
}
