//! The JSON API under `/v1`: one file per resource, routes declared here.
//!
//! Each resource has a name, which the request log and metrics use instead of the raw path
//! (low cardinality, and a token pasted into a URL by mistake never reaches a log line).

mod keys;
mod me;
pub mod views;

use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpResponse, web};

use super::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1")
            // API responses describe keys; nothing here is for a shared cache.
            .wrap(DefaultHeaders::new().add(("Cache-Control", "no-store")))
            .service(resource("/health", "health", "GET").route(web::get().to(me::health)))
            .service(resource("/me", "me", "GET").route(web::get().to(me::me)))
            .service(web::resource("/auth").name("auth").route(web::route().to(me::forward_auth)))
            .service(
                resource("/keys", "keys", "GET, POST")
                    .route(web::get().to(keys::list))
                    .route(web::post().to(keys::create)),
            )
            .service(
                resource("/keys/{id}", "key", "GET, PATCH")
                    .route(web::get().to(keys::show))
                    .route(web::patch().to(keys::update)),
            )
            .service(resource("/keys/{id}/revoke", "key_revoke", "POST").route(web::post().to(keys::revoke)))
            .service(resource("/keys/{id}/rotate", "key_rotate", "POST").route(web::post().to(keys::rotate)))
            .default_service(web::to(not_found)),
    );
}

/// A named resource whose other methods answer 405 with an `Allow` header.
fn resource(path: &str, name: &str, allowed: &'static str) -> actix_web::Resource {
    web::resource(path).name(name).default_service(web::to(move || method_not_allowed(allowed)))
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

async fn method_not_allowed(allowed: &'static str) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(allowed))
}
