//! HTTP: an HTTP/1.1 service on port 8080, written with edge-http over `TcpStream`'s
//! embedded-io-async traits.
//!
//! Routes: `GET /` (a 612-byte page, the size of nginx's default one, for
//! benchmarks), `GET /health`, `GET /api/counter` and `POST /api/counter` (JSON; one
//! counter shared by every core; a POST adds one), and `GET /stats` (the service's
//! counters, JSON). Anything else: 404, or 405 with `Allow` for a known path.
//!
//! Keep-alive (HTTP/1.1 by default, HTTP/1.0 on request); pipelined requests are read
//! ahead and answered in order. Connections are accepted on core 0 and each is served
//! by a task on the next core in turn.
//!
//! Limits, each answered and counted (`GET /stats`):
//! - a header block over [`HEADER_LIMIT`] bytes or [`MAX_HEADERS`] fields: 431;
//! - a body over [`BODY_LIMIT`] bytes (declared, or found while reading a chunked one):
//!   413;
//! - a request begun and not finished within the idle limit: 408; a connection with no
//!   request begun within it is closed without an answer (as nginx does);
//! - a request line or header that does not parse, or a bad body length: 400.
//!
//! The connection is closed after each of those answers.
//!
//! It stops cleanly when the platform asks (`torito::shutdown()`: the ACPI power button,
//! Ctrl+Alt+Del): it stops accepting; a request being read or answered is finished and
//! answered with `Connection: close`; a connection waiting between requests closes once
//! no byte arrived for [`QUIET`] (a request sent just before the stop is still on its
//! way); once every connection is closed, or after [`DRAIN_LIMIT`], `main` returns and
//! the VM exits 0, printing `http: stopped cleanly` when none was left.
//!
//! Command line: `app.idle=SECONDS` sets the idle limit (default 30, 1 to 3600);
//! `app.stats` prints the counters (the service's and the network's) every second.
//!
//! Try it: `make run-http`, then `curl -i http://127.0.0.1:8080/api/counter`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod io;
mod request;
mod routes;
mod stats;

use core::fmt;

use torito::net::{self, TcpListener, TcpStream, TcpTimeouts};
use torito::task::Spread;
use torito::time::Duration;

use crate::io::{Head, Io};
use crate::request::Refusal;
use crate::stats::{STATS, count};

const PORT: u16 = 8080;
/// Connections waiting to be accepted before new ones are refused.
const BACKLOG: usize = 128;
/// The largest header block (request line, fields, empty line), in bytes.
pub const HEADER_LIMIT: usize = 4096;
/// The most header fields in one request.
pub const MAX_HEADERS: usize = 32;
/// The largest request body, in bytes.
pub const BODY_LIMIT: usize = 1024;
/// The most a refused client may still send before its connection closes anyway.
const LINGER_BYTES: usize = 1 << 20;
/// The longest a refused client may take to close its side.
const LINGER_TIME: Duration = Duration::from_secs(5);
/// After a stop request, a connection waiting for its next request closes once no byte
/// arrived for this long.
const QUIET: Duration = Duration::from_millis(500);
/// After a stop request, `main` waits this long at most for the connections to close.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// The idle limit without `app.idle`.
const DEFAULT_IDLE_SECONDS: u64 = 30;

/// What stops the service before it starts.
enum StartError {
    /// `app.idle` is not a whole number of seconds from 1 to 3600.
    Idle(&'static str),
    Net(net::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Idle(value) => write!(
                f,
                "app.idle={value}: give the idle limit in whole seconds, 1 to 3600"
            ),
            StartError::Net(error) => write!(f, "network: {error}"),
        }
    }
}

/// The idle limit from `app.idle`.
fn idle_limit() -> Result<Duration, StartError> {
    let Some(value) = torito::boot::arg("app.idle") else {
        return Ok(Duration::from_secs(DEFAULT_IDLE_SECONDS));
    };
    match value.parse::<u64>() {
        Ok(seconds @ 1..=3600) => Ok(Duration::from_secs(seconds)),
        _ => Err(StartError::Idle(value)),
    }
}

#[torito::main]
async fn main() -> Result<(), StartError> {
    let idle = idle_limit()?;
    let stack = net::stack().await.map_err(StartError::Net)?;
    let mut listener = TcpListener::bind(&stack, PORT, BACKLOG).map_err(StartError::Net)?;
    // The stream's own timeout bounds every write and the close: a client that stops
    // reading cannot hold its task for longer than the idle limit.
    listener.set_timeouts(TcpTimeouts {
        idle: Some(idle),
        ..TcpTimeouts::default()
    });
    torito::println!("http: listening on port {}", PORT);
    if torito::boot::arg("app.stats").is_some() {
        torito::task::spawn(report(stack.clone())).detach();
    }
    let spread = Spread::new();
    accept_loop(&listener, idle, spread.clone()).await;
    // Asked to stop: new connections are refused from here on; let the others finish.
    drop(listener);
    match spread.wait(DRAIN_LIMIT).await {
        0 => torito::println!("http: stopped cleanly"),
        left => torito::println!("http: stopping with {} connections still open", left),
    }
    Ok(())
}

/// Accepts connections until the platform asks the VM to stop, serving each on the next
/// core in turn; connections already accepted go on to their end.
async fn accept_loop(listener: &TcpListener, idle: Duration, mut spread: Spread) {
    while let Some(accepted) = torito::until_shutdown(listener.accept()).await {
        match accepted {
            Ok(stream) => spread.spawn(serve(stream, idle)),
            Err(error) => torito::log::warn!("http: accept failed: {}", error),
        }
    }
}

/// `app.stats`: prints the service's and the network's counters every second.
async fn report(stack: net::Stack) {
    let mut tick = torito::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        torito::println!("http: {}", STATS);
        torito::println!("http: net {}", stack.counters());
    }
}

/// What to do after one exchange.
enum Next {
    KeepAlive,
    Close,
}

/// Serves requests on `stream` until the client closes, asks to close, idles past the
/// limit, or is refused; then closes (bounded by the stream's timeout).
async fn serve(stream: TcpStream, idle: Duration) {
    count(&STATS.connections);
    let mut io = Io::new(stream);
    let mut head = [0u8; HEADER_LIMIT + 1];
    let refused = loop {
        match exchange(&mut io, &mut head, idle).await {
            Ok(Next::KeepAlive) => {}
            Ok(Next::Close) => break false,
            Err(refusal) => {
                refuse(&mut io, refusal).await;
                break true;
            }
        }
    };
    let _ = io.push().await;
    let mut stream = io.into_stream();
    if refused {
        linger(&mut stream, idle).await;
    }
    let _ = stream.close().await;
}

/// Reads one request, checks it, answers it.
///
/// # Errors
///
/// The [`Refusal`] to answer before closing.
async fn exchange(
    io: &mut Io<TcpStream>,
    head: &mut [u8],
    idle: Duration,
) -> Result<Next, Refusal> {
    let waited = loop {
        if io.has_input() {
            // A request begun is finished (or refused), stop or not.
            break torito::time::timeout(idle, io.head()).await;
        }
        if torito::shutdown_requested() {
            // Stopping, between requests: only what is already on its way still counts.
            match torito::time::timeout(QUIET, io.head()).await {
                Err(_) => return Ok(Next::Close),
                waited => break waited,
            }
        }
        // `head` may be dropped mid-way: its reads and writes lose nothing (io.rs).
        if let Some(waited) = torito::until_shutdown(torito::time::timeout(idle, io.head())).await {
            break waited;
        }
        // Asked to stop while waiting: go round, to the quiet limit (or, if bytes came
        // meanwhile, to the rest of that request).
    };
    let length = match waited {
        Ok(Ok(Head::Complete(length))) => length,
        Ok(Ok(Head::Closed)) => return Ok(Next::Close),
        Ok(Ok(Head::Truncated)) => return Err(Refusal::BadRequest),
        Ok(Ok(Head::TooLarge)) => return Err(Refusal::HeadersTooLarge),
        Err(_) | Ok(Err(net::Error::TimedOut)) => {
            if io.has_input() {
                return Err(Refusal::Timeout);
            }
            count(&STATS.idle_closed);
            return Ok(Next::Close);
        }
        Ok(Err(_)) => return Ok(Next::Close),
    };
    request::check(&io.input()[..length])?;
    count(&STATS.requests);
    routes::answer(io, head, length, idle).await
}

/// After a refusal the client may still be sending (the rest of a header block or a
/// body the answer came before): closing with its bytes unread would reset the
/// connection, and a reset can reach the client before the answer does and destroy it.
/// So the answer is followed by our FIN, and what the client still sends is read and
/// dropped until it closes too, within [`LINGER_BYTES`] and the idle limit (as nginx's
/// lingering close).
async fn linger(stream: &mut TcpStream, idle: Duration) {
    stream.shutdown();
    let mut scratch = [0u8; 512];
    let mut dropped = 0;
    let drain = async {
        while dropped < LINGER_BYTES {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => dropped += n,
            }
        }
    };
    let _ = torito::time::timeout(idle.min(LINGER_TIME), drain).await;
}

/// Answers `refusal` (and counts it); the caller closes the connection next.
async fn refuse(io: &mut Io<TcpStream>, refusal: Refusal) {
    count(match refusal {
        Refusal::BadRequest => &STATS.bad_request,
        Refusal::Timeout => &STATS.request_timeout,
        Refusal::BodyTooLarge => &STATS.body_too_large,
        Refusal::HeadersTooLarge => &STATS.headers_too_large,
    });
    let (code, reason) = refusal.status();
    let mut length = routes::Decimal::new();
    let text = alloc::format!("{code} {reason}\n");
    let response = alloc::format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{text}",
        length.of(text.len()),
    );
    let _ = io.queue(response.as_bytes()).await;
    let _ = io.push().await;
}
