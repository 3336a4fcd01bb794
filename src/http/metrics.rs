//! The metrics listener: `GET /metrics` in Prometheus text on its own address
//! (`metrics.listen`), so it can stay on a private interface while the API is public, and a
//! scraper never competes with API clients for a connection slot.
//!
//! One worker is plenty for a scrape every few seconds. It answers nothing but `/metrics`,
//! and never plain text for a browser's guesses: anything else is a 404.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{App, HttpResponse, HttpServer, web};

use crate::service::Service;

/// Where the metrics listener binds, and the data file whose size it reports.
#[derive(Debug, Clone)]
pub struct MetricsOptions {
    pub listen: SocketAddr,
    pub data_file: PathBuf,
}

/// The exposition format's media type (text format 0.0.4).
const CONTENT_TYPE_PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds the metrics listener; the caller runs the returned server and stops it with the API.
pub fn bind(service: Arc<Service>, options: MetricsOptions) -> std::io::Result<(actix_web::dev::Server, SocketAddr)> {
    let data = web::Data::from(service);
    let data_file = web::Data::new(options.data_file);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(data_file.clone())
            .route("/metrics", web::get().to(scrape))
            .default_service(web::to(HttpResponse::NotFound))
    })
    .workers(1)
    .disable_signals()
    .bind(options.listen)
    .map_err(|e| std::io::Error::new(e.kind(), format!("metrics listener on {}: {e}", options.listen)))?;
    let addr = server.addrs().first().copied().unwrap_or(options.listen);
    Ok((server.run(), addr))
}

async fn scrape(service: web::Data<Service>, data_file: web::Data<PathBuf>) -> HttpResponse {
    // A stat, not a read: cheap enough to do per scrape, and always current.
    let size = std::fs::metadata(data_file.as_ref()).ok().map(|m| m.len());
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, CONTENT_TYPE_PROMETHEUS))
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(service.metrics().render(size))
}
