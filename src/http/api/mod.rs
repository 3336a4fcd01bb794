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
            .service(resource("/health", "health").route(web::get().to(me::health)))
            .service(resource("/me", "me").route(web::get().to(me::me)))
            .service(resource("/auth", "auth").route(web::route().to(me::forward_auth)))
            .service(resource("/keys", "keys").route(web::get().to(keys::list)).route(web::post().to(keys::create)))
            .service(
                resource("/keys/{id}", "key").route(web::get().to(keys::show)).route(web::patch().to(keys::update)),
            )
            .service(resource("/keys/{id}/revoke", "key_revoke").route(web::post().to(keys::revoke)))
            .service(resource("/keys/{id}/rotate", "key_rotate").route(web::post().to(keys::rotate)))
            .default_service(web::to(not_found)),
    );
}

fn resource(path: &str, name: &str) -> actix_web::Resource {
    web::resource(path).name(name).default_service(web::to(method_not_allowed))
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}
