//! `/assets/{name}`: the stylesheet, the copy-button script and the icon, compiled into the
//! binary (the page works air-gapped). Only the names in [`ASSETS`] exist.

use actix_web::{HttpResponse, web};

/// Name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.css", "text/css; charset=utf-8", include_str!("assets/app.css")),
    ("copy.js", "text/javascript; charset=utf-8", include_str!("assets/copy.js")),
    ("favicon.svg", "image/svg+xml", include_str!("assets/favicon.svg")),
];

pub async fn serve(name: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|(n, _, _)| *n == name.as_str()) {
        Some((_, content_type, body)) => HttpResponse::Ok()
            .content_type(*content_type)
            .insert_header(("Cache-Control", "public, max-age=3600"))
            .insert_header(("X-Content-Type-Options", "nosniff"))
            .body(*body),
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .insert_header(("X-Content-Type-Options", "nosniff"))
            .body("no such asset"),
    }
}
