//! The HTTP server's hardening knobs, each set explicitly rather than left to actix's
//! defaults, so that what a slow, greedy or hostile client meets is written down here and
//! tested (`tests/api/hardening.rs`).
//!
//! Settings an operator may need to fit their machine or proxy are in `[http]` of the config
//! (see [`crate::config::HttpSettings`]): worker threads, total connections, the request
//! head timeout and keep-alive. The rest are fixed, with the reason beside each:
//!
//! | knob | value | a client over it sees |
//! |---|---|---|
//! | request head (`http.request_timeout`) | 10 s | `408`, then the connection is closed |
//! | keep-alive (`http.keep_alive`) | 75 s idle | the connection is closed |
//! | connections (`http.max_connections`) | 10 000 | waits in the listen queue, not refused |
//! | TLS handshakes in progress | 256 per worker | waits in the listen queue |
//! | TLS handshake time | [`TLS_HANDSHAKE_TIMEOUT`] | the connection is closed |
//! | leaving after `connection: close` | [`CLIENT_DISCONNECT_TIMEOUT`] | the connection is dropped |
//! | headers in one request | 96 (actix-http, fixed) | `431`, then closed |
//! | request line + headers | 128 KiB (actix-http, fixed) | `431`, then closed (or a reset while still sending) |
//! | JSON body (`/v1`) | 64 KiB ([`super::body::MAX_BODY_BYTES`]) | `413` problem `payload_too_large` |
//! | form body (pages) | 16 KiB | `400` page |
//! | body arriving (`http.request_timeout` again) | 10 s after the head | `400` with `connection: close` |
//!
//! The head, keep-alive and disconnect times are measured by actix-http from a clock it
//! refreshes every 500 ms, so each may end up to half a second early; the others are exact.
//!
//! actix-http 3 has no setting for the two header limits: its HTTP/1 decoder parses into
//! 96 header slots and gives up on a head that has not ended within its 128 KiB read buffer.
//! Both are far above what a browser or an API client sends (a few KiB), so they stand.

use std::time::Duration;

use actix_web::HttpRequest;

/// Concurrent TLS handshakes per worker (actix's `max_connection_rate`). A handshake costs
/// a signature on the server; this bounds the CPU a burst of new TLS clients can take,
/// while connections past it wait in the listen queue rather than being refused.
pub const MAX_TLS_HANDSHAKES_PER_WORKER: usize = 256;

/// A client has this long to finish the TLS handshake. Real clients need a round trip or
/// two; a silent one would otherwise hold one of the handshake slots above.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// After a response that ends the connection (`connection: close`), the client has this long
/// to read it and go before the connection is dropped: long enough for a slow link to read an
/// error page, short enough that a client which never leaves cannot pin a connection.
pub const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections not yet accepted that the kernel may queue (clamped by `somaxconn`): room
/// for a burst while every worker is at its connection limit.
pub const BACKLOG: u32 = 1024;

/// How long a request body may take to arrive once its head is in. actix-http times only
/// the head; without this a client could trickle a body a byte at a time and hold a
/// connection and a handler for as long as it liked. Installed as app data by `serve`.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub Duration);

impl BodyDeadline {
    /// The server's deadline, or the default request timeout where none is installed.
    pub fn of(req: &HttpRequest) -> Duration {
        req.app_data::<BodyDeadline>().map_or(Duration::from_secs(10), |d| d.0)
    }
}

/// Worker threads when `http.workers` is not set: one per CPU core, as actix would pick.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Each worker's share of `total` connections (actix counts them per worker), at least one.
pub fn per_worker(total: usize, workers: usize) -> usize {
    total.div_ceil(workers.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_shared_out_rounding_up() {
        assert_eq!(per_worker(10_000, 4), 2_500);
        assert_eq!(per_worker(10, 3), 4);
        assert_eq!(per_worker(1, 8), 1);
        assert_eq!(per_worker(5, 0), 5);
    }
}
