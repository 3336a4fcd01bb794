//! The JSON API under `/v1`: one file per resource, routes declared here.
//!
//! Each resource has a name, which the request log and metrics use instead of the raw path
//! (low cardinality, and a token pasted into a URL by mistake never reaches a log line).
//!
//! [`ENDPOINTS`] is the one list of routes. Each entry pairs a handler with the
//! `#[utoipa::path]` annotation that documents it, and both the actix route (path, methods, the
//! `Allow` header of a 405) and the OpenAPI document ([`openapi`]) are built from that
//! annotation, so the server cannot serve a route the document lacks, or the other way round.

mod keys;
mod me;
pub mod openapi;
pub mod views;

use std::sync::LazyLock;

use actix_web::dev::Handler;
use actix_web::http::Method;
use actix_web::{FromRequest, HttpResponse, Responder, Route, web};
use utoipa::openapi::HttpMethod;

use super::error::ApiError;

/// The prefix of every route's path; the paths in the annotations include it.
pub const PREFIX: &str = "/v1";

/// Whether `path` is the API's: its responses describe keys, so none is for a shared cache.
pub fn is_api_path(path: &str) -> bool {
    path.strip_prefix(PREFIX).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The OpenAPI tags, which group operations in the document (described in [`openapi`]).
const KEYS: &str = "keys";
const VERIFICATION: &str = "verification";
const SERVICE: &str = "service";

/// Every route under `/v1`: a resource name, its tag, and the operations served at its path.
/// The router tries them in this order, so the forward-auth check, which a proxy sends for
/// every request it guards, comes first.
static ENDPOINTS: LazyLock<Vec<Endpoint>> = LazyLock::new(|| {
    vec![
        Endpoint::new("auth", VERIFICATION, vec![operation(me::forward_auth, me::__path_forward_auth)]),
        Endpoint::new("health", SERVICE, vec![operation(me::health, me::__path_health)]),
        Endpoint::new("openapi", SERVICE, vec![operation(openapi::openapi_json, openapi::__path_openapi_json)]),
        Endpoint::new("me", KEYS, vec![operation(me::me, me::__path_me)]),
        Endpoint::new(
            "keys",
            KEYS,
            vec![operation(keys::list, keys::__path_list), operation(keys::create, keys::__path_create)],
        ),
        Endpoint::new(
            "key",
            KEYS,
            vec![operation(keys::show, keys::__path_show), operation(keys::update, keys::__path_update)],
        ),
        Endpoint::new("key_revoke", KEYS, vec![operation(keys::revoke, keys::__path_revoke)]),
        Endpoint::new("key_rotate", KEYS, vec![operation(keys::rotate, keys::__path_rotate)]),
    ]
});

/// Registers every endpoint at its full path. Not in a `/v1` scope: a scope is one more
/// router and service layer on every request, and everything it would add is done already
/// (`Cache-Control: no-store` on the way out, by `finish`; a 404 problem for an unknown path,
/// by the app's default service).
pub fn configure(cfg: &mut web::ServiceConfig) {
    for endpoint in ENDPOINTS.iter() {
        cfg.service(endpoint.resource());
    }
}

/// One resource: its name, its path (under [`PREFIX`]), and what it serves.
struct Endpoint {
    name: &'static str,
    tag: &'static str,
    path: String,
    operations: Vec<Operation>,
    /// The `Allow` header of a 405, e.g. `GET, POST`; `None` when every method is served.
    allow: Option<String>,
}

/// A handler and its documentation, with the methods and path the documentation names.
struct Operation {
    path: String,
    methods: Vec<HttpMethod>,
    doc: fn() -> utoipa::openapi::path::Operation,
    /// A route to the handler: for one method, or for any method when given `None`.
    route: Box<dyn Fn(Option<Method>) -> Route + Send + Sync>,
}

/// Pairs `handler` with the type `#[utoipa::path]` generated for it (`__path_<handler>`).
fn operation<P, F, Args>(handler: F, _documented_by: P) -> Operation
where
    P: utoipa::Path,
    F: Handler<Args> + Copy + Send + Sync,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    Operation {
        path: P::path(),
        methods: P::methods(),
        doc: P::operation,
        route: Box::new(move |method| match method {
            Some(method) => web::method(method).to(handler),
            None => web::route().to(handler),
        }),
    }
}

impl Endpoint {
    /// Panics on a table that contradicts itself: a programming error every test would hit.
    fn new(name: &'static str, tag: &'static str, operations: Vec<Operation>) -> Self {
        let path = operations.first().map(|op| op.path.clone()).unwrap_or_default();
        assert!(
            operations.iter().all(|op| op.path == path),
            "the operations of endpoint {name} are documented at different paths"
        );
        assert!(is_api_path(&path), "endpoint {name}: documented path {path} is not under {PREFIX}");
        let methods: Vec<&HttpMethod> = operations.iter().flat_map(|op| &op.methods).collect();
        let any = ALL_METHODS.iter().all(|m| methods.contains(&m));
        let allow = (!any).then(|| methods.iter().map(|m| method_of(m).to_string()).collect::<Vec<_>>().join(", "));
        Endpoint { name, tag, path, operations, allow }
    }

    fn resource(&'static self) -> actix_web::Resource {
        let mut resource = web::resource(self.path.as_str()).name(self.name);
        match &self.allow {
            None => {
                // Every OpenAPI method is documented: serve any method at all (forward-auth).
                for op in &self.operations {
                    resource = resource.route((op.route)(None));
                }
            }
            Some(allow) => {
                for op in &self.operations {
                    for method in &op.methods {
                        resource = resource.route((op.route)(Some(method_of(method))));
                    }
                }
                // Other methods answer 405 with an `Allow` header.
                let allow: &'static str = allow.as_str();
                resource = resource.default_service(web::to(move || method_not_allowed(allow)));
            }
        }
        resource
    }
}

/// The methods OpenAPI can describe.
const ALL_METHODS: [HttpMethod; 8] = [
    HttpMethod::Get,
    HttpMethod::Head,
    HttpMethod::Post,
    HttpMethod::Put,
    HttpMethod::Patch,
    HttpMethod::Delete,
    HttpMethod::Options,
    HttpMethod::Trace,
];

fn method_of(method: &HttpMethod) -> Method {
    match method {
        HttpMethod::Get => Method::GET,
        HttpMethod::Head => Method::HEAD,
        HttpMethod::Post => Method::POST,
        HttpMethod::Put => Method::PUT,
        HttpMethod::Patch => Method::PATCH,
        HttpMethod::Delete => Method::DELETE,
        HttpMethod::Options => Method::OPTIONS,
        HttpMethod::Trace => Method::TRACE,
    }
}

/// Every documented operation as (full path, methods, documentation), in table order.
fn documented() -> impl Iterator<Item = (&'static str, &'static [HttpMethod], utoipa::openapi::path::Operation)> {
    ENDPOINTS.iter().flat_map(|endpoint| {
        endpoint.operations.iter().map(|op| {
            let mut doc = (op.doc)();
            doc.tags = Some(vec![endpoint.tag.to_owned()]);
            (op.path.as_str(), &op.methods[..], doc)
        })
    })
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

async fn method_not_allowed(allowed: &'static str) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(allowed))
}

#[cfg(test)]
mod tests {
    use super::is_api_path;

    #[test]
    fn api_paths_are_v1_and_below_only() {
        for path in ["/v1", "/v1/", "/v1/auth", "/v1/keys/key_x/revoke"] {
            assert!(is_api_path(path), "{path}");
        }
        for path in ["/", "/v10", "/v1x/auth", "/settings", "/login", "/assets/app.css"] {
            assert!(!is_api_path(path), "{path}");
        }
    }
}
