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
//!
//! With `--auth-headers` it answers with the six headers that `iblueprint` sends on a
//! passed forward-auth check (identity, `RateLimit-Policy`, `RateLimit`, `Cache-Control`),
//! as fixed strings of the same length as a benchmark key's: what the response the
//! contract asks for costs the framework (and the client) with no work behind it.

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::{Context, bail};

const USAGE: &str = "usage: hello --listen ADDR [--auth-headers]";

/// The address to listen on, and whether to send the forward-auth headers.
fn parse_args() -> anyhow::Result<(SocketAddr, bool)> {
    let mut args = std::env::args().skip(1);
    let (listen, headers) = match (args.next().as_deref(), args.next(), args.next().as_deref(), args.next()) {
        (Some("--listen"), Some(addr), None, None) => (addr, false),
        (Some("--listen"), Some(addr), Some("--auth-headers"), None) => (addr, true),
        _ => bail!("{USAGE}"),
    };
    let listen =
        listen.parse().with_context(|| format!("--listen: {listen:?} is not an address like 127.0.0.1:8081"))?;
    Ok((listen, headers))
}

async fn auth() -> HttpResponse {
    HttpResponse::Ok().finish()
}

/// What `iblueprint` answers a benchmark key (limits of 10⁹ per hour and per day).
async fn auth_with_headers() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("x-iblueprint-key-id", "key_0123456789abcdef"))
        .insert_header(("x-iblueprint-user", "bench"))
        .insert_header(("x-iblueprint-scopes", ""))
        .insert_header(("ratelimit-policy", "\"hour\";q=1000000000;w=3600, \"day\";q=1000000000;w=86400"))
        .insert_header(("ratelimit", "\"hour\";r=999999999;t=1, \"day\";r=999999999;t=1"))
        .insert_header(("cache-control", "no-store"))
        .finish()
}

fn main() -> anyhow::Result<()> {
    let (listen, headers) = parse_args()?;
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            let route = if headers { web::get().to(auth_with_headers) } else { web::get().to(auth) };
            App::new().service(web::resource("/v1/auth").route(route))
        })
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
