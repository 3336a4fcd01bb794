//! The HTTP baseline for `benches/http/run.sh`: actix-web answering `GET /v1/auth` with
//! 200 and an empty body, and nothing else.
//!
//! ```text
//! cargo run --release --example hello -- --listen 127.0.0.1:8081
//! ```
//!
//! Built from the same workspace as `iblueprint` (same actix-web version, features and
//! release profile) and run with the same worker count (actix's default, one per core,
//! which is what `iblueprint serve` uses), no middleware and no logging: what the
//! framework costs on this machine, to compare `iblueprint serve` against. It prints
//! `hello listening on http://ADDR` on stdout once bound, as `iblueprint serve` does.

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::{Context, bail};

const USAGE: &str = "usage: hello --listen ADDR";

fn parse_listen() -> anyhow::Result<SocketAddr> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next(), args.next()) {
        (Some("--listen"), Some(addr), None) => {
            addr.parse().with_context(|| format!("--listen: {addr:?} is not an address like 127.0.0.1:8081"))
        }
        _ => bail!("{USAGE}"),
    }
}

async fn auth() -> HttpResponse {
    HttpResponse::Ok().finish()
}

fn main() -> anyhow::Result<()> {
    let listen = parse_listen()?;
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(|| App::new().service(web::resource("/v1/auth").route(web::get().to(auth))))
            // The same timeouts as `iblueprint serve`; the worker count is left at the default.
            .shutdown_timeout(30)
            .client_request_timeout(Duration::from_secs(10))
            // As in `iblueprint serve` (and through the same function): SIGTERM/SIGINT handlers
            // registered before the address is announced, so a SIGTERM right after the
            // "listening" line (the start-up measurement sends one) is a clean stop.
            .disable_signals()
            .bind(listen)
            .with_context(|| format!("binding {listen}"))?;
        let addrs = server.addrs();
        let running = server.run();
        iblueprint::http::stop_on_signal(&running)?;
        for addr in addrs {
            println!("hello listening on http://{addr}");
        }
        running.await.context("serving")
    })
}
