//! What the service counts: requests by outcome, refusals by limit, connections.
//! Shared by every core (relaxed atomics: each is a tally, not a synchronisation) and
//! shown by `GET /stats`.

use core::fmt;
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::Relaxed;

/// The counters (see [`STATS`]).
pub struct Stats {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    /// 400: a request line or header that does not parse, a bad Content-Length.
    pub bad_request: AtomicU64,
    pub not_found: AtomicU64,
    pub method_not_allowed: AtomicU64,
    /// 408: a request begun and not finished within the idle limit.
    pub request_timeout: AtomicU64,
    /// 413: a body longer than `BODY_LIMIT`.
    pub body_too_large: AtomicU64,
    /// 431: a header block longer than `HEADER_LIMIT`, or more than `MAX_HEADERS`.
    pub headers_too_large: AtomicU64,
    /// Connections closed after the idle limit with no request begun (no answer).
    pub idle_closed: AtomicU64,
}

/// The service's counters.
pub static STATS: Stats = Stats {
    connections: AtomicU64::new(0),
    requests: AtomicU64::new(0),
    bad_request: AtomicU64::new(0),
    not_found: AtomicU64::new(0),
    method_not_allowed: AtomicU64::new(0),
    request_timeout: AtomicU64::new(0),
    body_too_large: AtomicU64::new(0),
    headers_too_large: AtomicU64::new(0),
    idle_closed: AtomicU64::new(0),
};

/// Adds one to `counter`.
pub fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

impl fmt::Display for Stats {
    /// One JSON object.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{{\"connections\":{},\"requests\":{},\"bad_request\":{},\"not_found\":{},\
             \"method_not_allowed\":{},\"request_timeout\":{},\"body_too_large\":{},\
             \"headers_too_large\":{},\"idle_closed\":{}}}",
            self.connections.load(Relaxed),
            self.requests.load(Relaxed),
            self.bad_request.load(Relaxed),
            self.not_found.load(Relaxed),
            self.method_not_allowed.load(Relaxed),
            self.request_timeout.load(Relaxed),
            self.body_too_large.load(Relaxed),
            self.headers_too_large.load(Relaxed),
            self.idle_closed.load(Relaxed),
        )
    }
}
