//! What every response gets on its way out: the `RateLimit` headers of the key it was for,
//! `Cache-Control: no-store` under `/v1` (unless the handler chose otherwise),
//! `Strict-Transport-Security` when served over TLS, a count in the request metrics, and one
//! line in the request log.
//!
//! One hand-written middleware rather than one `from_fn` per job: this wraps every request,
//! `from_fn` boxes a future per request and per layer, and the verification route is
//! measured against a bare hello-world. The log line carries the method, the route *name*
//! (never the raw path, so a token pasted into a URL by mistake never reaches the log),
//! the status, the latency and the presented key's public id.

// `Rc<Arc<Metrics>>` on purpose: every request clones it, and an `Rc` clone stays on the
// worker's thread where an `Arc` clone would write a counter all workers share.
#![allow(clippy::redundant_allocation)]

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{CACHE_CONTROL, HeaderValue, STRICT_TRANSPORT_SECURITY};
use actix_web::{Error, HttpMessage};

use super::auth::PresentedKey;
use super::{api, rate_headers, tls};
use crate::metrics::Metrics;

/// The middleware factory; wrap the whole app in it.
pub struct Finish {
    metrics: Arc<Metrics>,
    over_tls: bool,
}

impl Finish {
    /// `over_tls`: every response then carries HSTS, errors included.
    pub fn new(metrics: Arc<Metrics>, over_tls: bool) -> Self {
        Finish { metrics, over_tls }
    }
}

impl<S, B> Transform<S, ServiceRequest> for Finish
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = FinishService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, inner: S) -> Self::Future {
        ready(Ok(FinishService { inner, metrics: Rc::new(Arc::clone(&self.metrics)), over_tls: self.over_tls }))
    }
}

pub struct FinishService<S> {
    inner: S,
    /// Per worker: each request's future takes an `Rc` clone, which unlike an `Arc` clone
    /// writes nothing that other workers share.
    metrics: Rc<Arc<Metrics>>,
    over_tls: bool,
}

impl<S, B> Service<ServiceRequest> for FinishService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = Finishing<S::Future>;

    forward_ready!(inner);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        // The clock is read only when the log line will be written.
        let started = logs_requests().then(Instant::now);
        Finishing { inner: self.inner.call(req), metrics: Rc::clone(&self.metrics), over_tls: self.over_tls, started }
    }
}

pin_project_lite::pin_project! {
    /// The inner service's future, finished off when it completes.
    pub struct Finishing<F> {
        #[pin]
        inner: F,
        metrics: Rc<Arc<Metrics>>,
        over_tls: bool,
        started: Option<Instant>,
    }
}

impl<F, B> Future for Finishing<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match ready!(this.inner.poll(cx)) {
            Ok(mut response) => {
                finish(&mut response, this.metrics, *this.over_tls, *this.started);
                Poll::Ready(Ok(response))
            }
            Err(err) => {
                // actix turns the error into a response after this layer; count it here
                // anyway, under no route (the request is gone with the error).
                this.metrics.record_request("unmatched", err.as_response_error().status_code().as_u16());
                Poll::Ready(Err(err))
            }
        }
    }
}

const LOG_TARGET: &str = "iblueprint::request";

/// Whether each request gets a line in the log.
pub fn logs_requests() -> bool {
    tracing::enabled!(target: LOG_TARGET, tracing::Level::INFO)
}
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const HSTS: HeaderValue = HeaderValue::from_static(tls::HSTS);

fn finish<B>(response: &mut ServiceResponse<B>, metrics: &Metrics, over_tls: bool, started: Option<Instant>) {
    let status = response.status().as_u16();
    let rate = response.request().extensions().get::<PresentedKey>().and_then(|k| k.rate);
    if let Some(decision) = rate {
        rate_headers::insert(response.headers_mut(), &decision);
    }
    if api::is_api_path(response.request().path()) && !response.headers().contains_key(CACHE_CONTROL) {
        response.headers_mut().insert(CACHE_CONTROL, NO_STORE);
    }
    if over_tls && !response.headers().contains_key(STRICT_TRANSPORT_SECURITY) {
        response.headers_mut().insert(STRICT_TRANSPORT_SECURITY, HSTS);
    }
    let request = response.request();
    let route = request.match_name().unwrap_or("unmatched");
    metrics.record_request(route, status);
    let Some(started) = started else { return };
    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    // Borrowed, not copied: the key's id goes straight into the line.
    let extensions = request.extensions();
    let key_id = extensions.get::<PresentedKey>().map_or("-", |k| k.identity.key_id());
    tracing::info!(
        target: LOG_TARGET,
        method = %request.method(),
        route,
        status,
        latency_us,
        key_id,
        "request"
    );
}
