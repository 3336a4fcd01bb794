//! One log line per request: method, route name, status, latency and the presented key's
//! public id. The raw path and headers are never logged, so a secret cannot reach the log
//! even when a caller pastes one somewhere it does not belong.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};

use super::auth::PresentedKey;

pub async fn log(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let response = next.call(req).await?;
    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    {
        let request = response.request();
        let route = request.match_name().unwrap_or("unmatched");
        // Borrowed, not copied: this line is built for every request, logged or not.
        let extensions = request.extensions();
        let key_id = extensions.get::<PresentedKey>().map_or("-", |k| k.0.id.as_str());
        tracing::info!(
            target: "iblueprint::request",
            method = %method,
            route,
            status = response.status().as_u16(),
            latency_us,
            key_id,
            "request"
        );
    }
    Ok(response)
}
