//! The routes: edge-http's `Connection` parses the request and frames its body (by
//! length or chunked); the response is written here (see [`respond`]).

use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering::Relaxed;

use alloc::string::String;
use edge_http::Method;
use edge_http::io::server::Connection;
use embedded_io_async::Read;
use torito::net::{self, TcpStream};
use torito::time::Duration;

use crate::io::Io;
use crate::request::Refusal;
use crate::stats::{STATS, count};
use crate::{BODY_LIMIT, MAX_HEADERS, Next};

/// The page `GET /` serves: 612 bytes, the size of nginx's default page.
const PAGE: &[u8] = include_bytes!("index.html");
const _: () = assert!(PAGE.len() == 612);

/// The one counter of `/api/counter`, shared by every core.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A response body.
enum Body {
    Static(&'static [u8]),
    Owned(String),
}

impl Body {
    fn bytes(&self) -> &[u8] {
        match self {
            Body::Static(bytes) => bytes,
            Body::Owned(text) => text.as_bytes(),
        }
    }
}

/// One response: status, reason, content type, body, and the methods allowed (405).
struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: Body,
    allow: Option<&'static str>,
}

impl Response {
    fn ok(content_type: &'static str, body: Body) -> Response {
        Response {
            status: 200,
            reason: "OK",
            content_type,
            body,
            allow: None,
        }
    }

    fn text(status: u16, reason: &'static str, text: &'static str) -> Response {
        Response {
            status,
            reason,
            content_type: "text/plain",
            body: Body::Static(text.as_bytes()),
            allow: None,
        }
    }
}

/// The answer to `method` on `path` (without its query), once its body was read.
fn route(method: Method, path: &str) -> Response {
    let allowed = match path {
        "/" | "/health" | "/stats" => "GET",
        "/api/counter" => "GET, POST",
        _ => {
            count(&STATS.not_found);
            return Response::text(404, "Not Found", "404 Not Found\n");
        }
    };
    match (method, path) {
        (Method::Get, "/") => Response::ok("text/html", Body::Static(PAGE)),
        (Method::Get, "/health") => {
            Response::ok("application/json", Body::Static(b"{\"status\":\"ok\"}\n"))
        }
        (Method::Get, "/stats") => Response::ok(
            "application/json",
            Body::Owned(alloc::format!("{}\n", STATS)),
        ),
        (Method::Get, "/api/counter") => counter(COUNTER.load(Relaxed)),
        (Method::Post, "/api/counter") => counter(COUNTER.fetch_add(1, Relaxed) + 1),
        _ => {
            count(&STATS.method_not_allowed);
            let mut response =
                Response::text(405, "Method Not Allowed", "405 Method Not Allowed\n");
            response.allow = Some(allowed);
            response
        }
    }
}

fn counter(value: u64) -> Response {
    Response::ok(
        "application/json",
        Body::Owned(alloc::format!("{{\"counter\":{value}}}\n")),
    )
}

/// Parses the request at the start of `io`'s input (already checked: see
/// `request::check`), reads its body (within [`BODY_LIMIT`] and the idle limit) and
/// answers it. `head` is edge-http's room for the header block, which is
/// `head_length` bytes long.
///
/// # Errors
///
/// The [`Refusal`] to answer instead (a body too long, or too slow).
pub async fn answer(
    io: &mut Io<TcpStream>,
    head: &mut [u8],
    head_length: usize,
    idle: Duration,
) -> Result<Next, Refusal> {
    // edge-http's chunked-body decoder reads ahead into what is left of this buffer
    // after the header block, and that read-ahead is lost when the `Connection` goes:
    // a pipelined request after a chunked body would vanish. One byte of room makes it
    // read one byte at a time (from `io`'s memory, not the socket), never past the body.
    let room = (head_length + 1).min(head.len());
    let mut connection = match Connection::<_, MAX_HEADERS>::new(&mut head[..room], &mut *io).await
    {
        Ok(connection) => connection,
        // A broken socket: no one to answer.
        Err(edge_http::io::Error::Io(_)) => return Ok(Next::Close),
        // The block passed the same parser already, so this is not expected; should
        // edge-http still find fault with it, the client hears why.
        Err(_) => return Err(Refusal::BadRequest),
    };
    let Ok(headers) = connection.headers() else {
        return Ok(Next::Close);
    };
    let method = headers.method;
    let http11 = headers.http11;
    let path = String::from(headers.path.split('?').next().unwrap_or(""));
    let connection_field = headers.headers.get("Connection").map(String::from);
    let mut read = 0;
    let mut chunk = [0u8; 256];
    loop {
        match torito::time::timeout(idle, connection.read(&mut chunk)).await {
            Err(_) => return Err(Refusal::Timeout),
            // A malformed chunked body, or the end of the stream inside the body.
            Ok(Err(_)) => return Err(Refusal::BadRequest),
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => {
                read += n;
                if read > BODY_LIMIT {
                    return Err(Refusal::BodyTooLarge);
                }
            }
        }
    }
    // Done with edge-http (its borrow of `io` ends here): the body is read, so the
    // input is at the next request.
    let response = route(method, &path);
    // Once a stop is requested, every answer is the connection's last.
    let keep_alive =
        keep_alive(http11, connection_field.as_deref()) && !torito::shutdown_requested();
    match respond(io, &response, keep_alive).await {
        Ok(()) if keep_alive => Ok(Next::KeepAlive),
        // Asked to close, or the socket failed (then there is no one to answer).
        _ => Ok(Next::Close),
    }
}

/// Whether the connection stays open after the response: HTTP/1.1 unless the client
/// sent `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
fn keep_alive(http11: bool, connection: Option<&str>) -> bool {
    let has = |token: &str| {
        connection.is_some_and(|value| {
            value
                .split(',')
                .any(|option| option.trim().eq_ignore_ascii_case(token))
        })
    };
    if http11 {
        !has("close")
    } else {
        has("keep-alive")
    }
}

/// Queues `response` on `io` (the status line, the fields, the body). It goes out when
/// the connection next waits for input or closes, together with the answers to
/// pipelined requests read with it.
///
/// edge-http's own response writer is not used: rustc cannot prove its future `Send`
/// (its generic header iterator over borrowed `&str` trips the higher-ranked auto-trait
/// check), and a task's future must be.
async fn respond(
    io: &mut Io<TcpStream>,
    response: &Response,
    keep_alive: bool,
) -> Result<(), net::Error> {
    let body = response.body.bytes();
    let mut status = Decimal::new();
    let mut length = Decimal::new();
    let parts: [&[u8]; 9] = [
        b"HTTP/1.1 ",
        status.of(usize::from(response.status)).as_bytes(),
        b" ",
        response.reason.as_bytes(),
        b"\r\nContent-Type: ",
        response.content_type.as_bytes(),
        b"\r\nContent-Length: ",
        length.of(body.len()).as_bytes(),
        b"\r\n",
    ];
    for part in parts {
        io.queue(part).await?;
    }
    if let Some(allow) = response.allow {
        io.queue(b"Allow: ").await?;
        io.queue(allow.as_bytes()).await?;
        io.queue(b"\r\n").await?;
    }
    io.queue(if keep_alive {
        &b"Connection: keep-alive\r\n\r\n"[..]
    } else {
        &b"Connection: close\r\n\r\n"[..]
    })
    .await?;
    io.queue(body).await
}

/// A number written in decimal without allocating.
pub struct Decimal([u8; 20]);

impl Decimal {
    pub fn new() -> Decimal {
        Decimal([0; 20])
    }

    /// `value` in decimal.
    pub fn of(&mut self, mut value: usize) -> &str {
        let mut at = self.0.len();
        loop {
            at -= 1;
            self.0[at] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        core::str::from_utf8(&self.0[at..]).unwrap_or("0")
    }
}
