//! The HTTP service (`examples/http`), probed from the host with curl and raw sockets
//! through QEMU's user-mode networking.
//!
//! Needs `build/http.elf` (`make images`) and curl (`make setup` installs it). Each test
//! boots the image with `app.idle=2` (a two-second idle limit, so the slow-client step
//! need not wait long), forwards a free host port to 8080 and runs these steps in
//! order:
//!
//! 1. every route with curl, and their errors: 404, 405 with `Allow`;
//! 2. malformed requests (a request line that does not parse, a bad Content-Length,
//!    both Content-Length and chunked) answered 400 and closed;
//! 3. keep-alive: one curl run fetching three URLs opens one connection;
//! 4. pipelining: five requests in one write on a raw socket, answered in order;
//! 5. a header block over 4 KiB answered 431;
//! 6. bodies over 1 KiB answered 413 (declared, and chunked);
//! 7. a client that stops mid-request gets 408 and the end of the stream, one that
//!    sends nothing gets the end of the stream, each after the idle limit;
//! 8. 50 clients at once, each with 8 requests on one connection, 4 of them POSTs to
//!    the counter: every answer right, and the counter up by exactly 200;
//! 9. `GET /stats` counted each refusal above exactly once.
//!
//! `powerdown_*`: QEMU's `system_powerdown` (the ACPI power button, through QMP) while
//! clients send requests on keep-alive connections: every answer to a request sent
//! before the stop arrives whole, the service says `http: stopped cleanly` and the VM
//! exits 0.
//!
//! Deadlines only bound how long a broken guest can hang the run; nothing asserts a
//! timing (the idle steps only check that the close comes, within a generous bound).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Barrier;
use std::time::Duration;

use torito_qemu_tests::powerdown_under_load as powerdown_under_load_of;
use torito_qemu_tests::{
    Failure, Guest, LoadClient, Qmp, RunOptions, expect_graceful_stop, failed_connections,
    run_clients,
};

const GUEST_PORT: u16 = 8080;
const LISTENING: &str = "http: listening on port 8080";
/// Bound for boot plus DHCP to reach the listening line.
const BOOT: Duration = Duration::from_secs(60);
/// Bound for one read from the service.
const READ: Duration = Duration::from_secs(60);
/// Clients at once, requests each, POSTs among them (step 8).
const CLIENTS: usize = 50;
const REQUESTS_PER_CLIENT: usize = 8;
const POSTS_PER_CLIENT: usize = 4;
/// Between two clients' connects (see `concurrent`).
const CONNECT_SPACING: Duration = Duration::from_millis(20);

type Step = (&'static str, fn(u16) -> Result<(), String>);

const STEPS: [Step; 9] = [
    ("routes and their errors", routes),
    ("malformed requests", malformed),
    ("keep-alive", keep_alive),
    ("pipelining", pipelining),
    ("oversized header block", oversized_headers),
    ("oversized bodies", oversized_bodies),
    ("idle clients", idle_clients),
    ("50 concurrent clients", concurrent),
    ("refusals counted", counted),
];

fn http_service(options: RunOptions) -> Result<(), Failure> {
    let options = options.append("app.idle=2");
    let (guest, port) = Guest::start_forwarded("http", &options, GUEST_PORT, LISTENING, BOOT)?;
    for (number, (name, step)) in STEPS.iter().enumerate() {
        step(port).map_err(|error| {
            guest.failure(format!(
                "step {} ({name}) against host port {port}: {error}",
                number + 1
            ))
        })?;
    }
    if let Some(line) = guest.console().lines().find(|line| line.contains("!!!")) {
        return Err(guest.failure(format!("the guest reported a fault: `{line}`")));
    }
    Ok(())
}

#[test]
fn http_microvm() -> Result<(), Failure> {
    http_service(RunOptions::default())
}

#[test]
fn http_smp2_q35() -> Result<(), Failure> {
    http_service(RunOptions::default().machine("q35").smp(2))
}

#[test]
fn http_smp4_microvm() -> Result<(), Failure> {
    http_service(RunOptions::default().smp(4))
}

/// A bad `app.idle` stops the service at start with a message naming the key.
#[test]
fn bad_idle_key_is_refused() -> Result<(), Failure> {
    let mut guest = Guest::start("http", &RunOptions::default().append("app.idle=soon"));
    let outcome = guest.expect_exit(1, BOOT)?;
    if outcome.line("app.idle=soon").is_none() {
        return Err(guest.failure("no console line names the bad app.idle value"));
    }
    Ok(())
}

/// curl (`-s -S`, bounded in time) on `path` with `method` and `extra` arguments,
/// expecting `status`; returns what curl printed (the body, unless `extra` says
/// otherwise).
fn expect(
    port: u16,
    method: &str,
    path: &str,
    extra: &[&str],
    status: u16,
) -> Result<String, String> {
    let url = format!("http://127.0.0.1:{port}{path}");
    let mut args = vec!["-X", method, url.as_str()];
    args.extend_from_slice(extra);
    let output = Command::new("curl")
        .args(["-s", "-S", "--max-time", "60", "-w", "\n%{http_code}"])
        .args(&args)
        .output()
        .map_err(|error| format!("running curl (make setup installs it): {error}"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    let code: u16 = code.trim().parse().map_err(|_| {
        format!(
            "{method} {path}: no status code in {text:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    if code != status {
        return Err(format!(
            "{method} {path}: status {code}, expected {status}; body {body:?}; curl: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(body.to_string())
}

fn counter_value(port: u16) -> Result<u64, String> {
    let body = expect(port, "GET", "/api/counter", &[], 200)?;
    json_number(&body, "counter")
}

/// The number after `"key":` in `json`.
fn json_number(json: &str, key: &str) -> Result<u64, String> {
    let pattern = format!("\"{key}\":");
    let start = json
        .find(&pattern)
        .ok_or_else(|| format!("no {key} in {json:?}"))?
        + pattern.len();
    let digits: String = json[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits
        .parse()
        .map_err(|_| format!("no number for {key} in {json:?}"))
}

fn routes(port: u16) -> Result<(), String> {
    let page = expect(port, "GET", "/", &[], 200)?;
    if page.len() != 612 || !page.contains("Torito") {
        return Err(format!(
            "GET / gave {} bytes, expected the 612-byte page",
            page.len()
        ));
    }
    let health = expect(port, "GET", "/health", &[], 200)?;
    if !health.contains("\"status\":\"ok\"") {
        return Err(format!("GET /health: {health:?}"));
    }
    let before = counter_value(port)?;
    let posted = expect(port, "POST", "/api/counter", &[], 200)?;
    if json_number(&posted, "counter")? != before + 1 {
        return Err(format!("POST /api/counter from {before}: {posted:?}"));
    }
    if counter_value(port)? != before + 1 {
        return Err("GET /api/counter after a POST: not one more".into());
    }
    expect(port, "GET", "/no/such/page", &[], 404)?;
    expect(port, "POST", "/nope", &[], 404)?;
    for (method, path, allow) in [
        ("DELETE", "/", "GET"),
        ("POST", "/health", "GET"),
        ("PUT", "/api/counter", "GET, POST"),
    ] {
        let headers = expect(port, method, path, &["-D", "-", "-o", "/dev/null"], 405)?;
        if !headers.contains(&format!("Allow: {allow}")) {
            return Err(format!(
                "{method} {path}: 405 without `Allow: {allow}`: {headers:?}"
            ));
        }
    }
    Ok(())
}

/// A connection to the service with read and write timeouts.
fn connect(port: u16) -> Result<TcpStream, String> {
    torito_qemu_tests::connect(port, READ)
}

/// One response read from `stream`: status, header block, body (by Content-Length).
fn read_response(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
) -> Result<(u16, String, Vec<u8>), String> {
    let head_end = loop {
        if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream
            .read(&mut chunk)
            .map_err(|error| format!("reading a response: {error}"))?;
        if n == 0 {
            return Err(format!(
                "end of stream before a response; got {:?}",
                String::from_utf8_lossy(pending)
            ));
        }
        pending.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| format!("no Content-Length in {head:?}"))?;
    while pending.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = stream
            .read(&mut chunk)
            .map_err(|error| format!("reading a body: {error}"))?;
        if n == 0 {
            return Err("end of stream inside a body".into());
        }
        pending.extend_from_slice(&chunk[..n]);
    }
    let body = pending[head_end..head_end + length].to_vec();
    pending.drain(..head_end + length);
    Ok((status, head, body))
}

/// Reads until the end of the stream; what came.
fn read_to_end(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut all = Vec::new();
    stream.read_to_end(&mut all).map_err(|error| {
        format!(
            "waiting for the close: {error} (after {:?})",
            String::from_utf8_lossy(&all)
        )
    })?;
    Ok(all)
}

/// Sends `request` on a fresh connection; expects one response with `status`, then the
/// end of the stream.
fn refused(port: u16, request: &[u8], status: u16) -> Result<(), String> {
    let mut stream = connect(port)?;
    stream
        .write_all(request)
        .map_err(|error| format!("sending: {error}"))?;
    let answer = String::from_utf8_lossy(&read_to_end(&mut stream)?).into_owned();
    let expected = format!("HTTP/1.1 {status} ");
    if !answer.starts_with(&expected) || !answer.contains("Connection: close") {
        return Err(format!("expected {status} and a close, got {answer:?}"));
    }
    Ok(())
}

fn malformed(port: u16) -> Result<(), String> {
    refused(port, b"GARBAGE\r\n\r\n", 400)?;
    refused(
        port,
        b"POST /api/counter HTTP/1.1\r\nContent-Length: 12abc\r\n\r\n",
        400,
    )?;
    refused(
        port,
        b"POST /api/counter HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello",
        400,
    )
}

fn keep_alive(port: u16) -> Result<(), String> {
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let output = Command::new("curl")
        .args([
            "-s",
            "-S",
            "--max-time",
            "60",
            "-w",
            "%{http_code} %{num_connects}\n",
        ])
        // `-o` applies to one URL: one each.
        .args(["-o", "/dev/null", &url("/")])
        .args(["-o", "/dev/null", &url("/health")])
        .args(["-o", "/dev/null", &url("/api/counter")])
        .output()
        .map_err(|error| format!("running curl: {error}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = text.lines().collect();
    if lines != ["200 1", "200 0", "200 0"] {
        return Err(format!(
            "three URLs in one curl run: expected one connection for all (`200 1`, `200 0`, `200 0`), got {lines:?}"
        ));
    }
    Ok(())
}

fn pipelining(port: u16) -> Result<(), String> {
    let before = counter_value(port)?;
    let mut stream = connect(port)?;
    let requests = b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n\
        POST /api/counter HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}\
        GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n\
        POST /api/counter HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n\
        GET / HTTP/1.1\r\nHost: t\r\n\r\n";
    stream
        .write_all(requests)
        .map_err(|error| format!("sending: {error}"))?;
    let mut pending = Vec::new();
    let expected: [(u16, &str); 5] = [
        (200, "\"status\":\"ok\""),
        (200, &format!("{{\"counter\":{}}}", before + 1)),
        (404, "Not Found"),
        (200, &format!("{{\"counter\":{}}}", before + 2)),
        (200, "<title>Torito</title>"),
    ];
    for (index, (status, contains)) in expected.iter().enumerate() {
        let (got, head, body) = read_response(&mut stream, &mut pending)?;
        let body = String::from_utf8_lossy(&body);
        if got != *status || !body.contains(contains) {
            return Err(format!(
                "response {} of 5: expected {status} with {contains:?}, got {head:?} {body:?}",
                index + 1
            ));
        }
    }
    Ok(())
}

fn oversized_headers(port: u16) -> Result<(), String> {
    let big = format!("X-Filler: {}", "a".repeat(5000));
    expect(port, "GET", "/", &["-H", &big], 431)?;
    Ok(())
}

fn oversized_bodies(port: u16) -> Result<(), String> {
    let body = "b".repeat(2000);
    expect(port, "POST", "/api/counter", &["--data-binary", &body], 413)?;
    expect(
        port,
        "POST",
        "/api/counter",
        &["-H", "Transfer-Encoding: chunked", "--data-binary", &body],
        413,
    )?;
    Ok(())
}

fn idle_clients(port: u16) -> Result<(), String> {
    let mut slow = connect(port)?;
    slow.write_all(b"GET / HTTP/1.1\r\nHost: slow\r\n")
        .map_err(|error| format!("sending: {error}"))?;
    let mut silent = connect(port)?;
    let answer = String::from_utf8_lossy(&read_to_end(&mut slow)?).into_owned();
    if !answer.starts_with("HTTP/1.1 408 ") {
        return Err(format!(
            "a request left unfinished: expected 408 and a close, got {answer:?}"
        ));
    }
    let nothing = read_to_end(&mut silent)?;
    if !nothing.is_empty() {
        return Err(format!(
            "a connection with no request: expected a close without an answer, got {:?}",
            String::from_utf8_lossy(&nothing)
        ));
    }
    Ok(())
}

/// 50 clients, each on its own connection. They connect 20 ms apart: QEMU's port
/// forward listens with a backlog of one, so a burst of 50 connects overflows the host
/// kernel's accept queue and the dropped handshakes are retried only after seconds
/// (1, 3, 7, ... s), which measures the forward, not the guest. Once every client has
/// its first answer (a barrier), all 50 connections are open at once and the other
/// seven requests of each go out together.
fn concurrent(port: u16) -> Result<(), String> {
    let before = counter_value(port)?;
    let all_connected = Barrier::new(CLIENTS);
    let results = run_clients((0..CLIENTS).collect(), |_, client: usize| {
        std::thread::sleep(CONNECT_SPACING * client as u32);
        let connected = connect(port);
        let mut pending = Vec::new();
        let mut outcome = Ok(());
        if let Ok(mut stream) = connected {
            for request in 0..REQUESTS_PER_CLIENT {
                if request == 1 {
                    all_connected.wait();
                }
                if outcome.is_ok() {
                    outcome = one_request(&mut stream, &mut pending, client, request);
                }
            }
        } else {
            all_connected.wait();
            outcome = connected.map(drop);
        }
        outcome
    });
    failed_connections(&results)?;
    let after = counter_value(port)?;
    let expected = before + (CLIENTS * POSTS_PER_CLIENT) as u64;
    if after != expected {
        return Err(format!(
            "counter {after} after {} concurrent POSTs from {before}: expected {expected}",
            CLIENTS * POSTS_PER_CLIENT
        ));
    }
    Ok(())
}

/// Request number `request` of `client` (odd ones POST to the counter), and its answer.
fn one_request(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    client: usize,
    request: usize,
) -> Result<(), String> {
    let (bytes, contains): (Vec<u8>, &str) = if request % 2 == 1 {
        (
            b"POST /api/counter HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n".to_vec(),
            "\"counter\":",
        )
    } else if request.is_multiple_of(4) {
        (
            b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(),
            "<title>Torito</title>",
        )
    } else {
        (
            format!("GET /health?client={client} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes(),
            "\"status\":\"ok\"",
        )
    };
    stream
        .write_all(&bytes)
        .map_err(|error| format!("request {request}: sending: {error}"))?;
    let (status, head, body) =
        read_response(stream, pending).map_err(|error| format!("request {request}: {error}"))?;
    let body = String::from_utf8_lossy(&body);
    if status != 200 || !body.contains(contains) {
        return Err(format!("request {request}: {head:?} {body:?}"));
    }
    Ok(())
}

fn counted(port: u16) -> Result<(), String> {
    let stats = expect(port, "GET", "/stats", &[], 200)?;
    // Steps 2, 5, 6 and 7 made exactly these refusals, and nothing else refused.
    for (key, expected) in [
        ("bad_request", 3),
        ("headers_too_large", 1),
        ("body_too_large", 2),
        ("request_timeout", 1),
    ] {
        let got = json_number(&stats, key)?;
        if got != expected {
            return Err(format!("{key} is {got}, expected {expected}: {stats}"));
        }
    }
    if json_number(&stats, "idle_closed")? < 1 {
        return Err(format!("the silent connection was not counted: {stats}"));
    }
    Ok(())
}

/// The steps' helpers agree with themselves: the counter parser and the response
/// reader on known input (no guest needed).
#[test]
fn json_number_reads_the_value() {
    assert_eq!(json_number("{\"counter\":42}\n", "counter"), Ok(42));
    assert!(json_number("{}", "counter").is_err());
}

/// What the service prints once every connection has closed after a stop request.
const STOPPED: &str = "http: stopped cleanly";
/// Clients sending requests when the stop comes, and answers each has before it.
const LOAD_CLIENTS: usize = 8;
const ROUNDS_BEFORE_STOP: usize = 5;

/// Requests on one keep-alive connection until the stop (none after that), each answer
/// read whole. A request sent before the stop must be answered; after it, the
/// connection may close before the next answer (Ok), never in the middle of one.
fn until_stopped(port: u16, load: &LoadClient) -> Result<(), String> {
    let mut stream = connect(port)?;
    let mut pending = Vec::new();
    let mut request = 0;
    let mut stop_seen = None;
    loop {
        let before_stop = !load.stopped();
        let bytes: &[u8] = if request % 2 == 0 {
            b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
        } else {
            b"POST /api/counter HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
        };
        if let Err(error) = stream.write_all(bytes) {
            return if before_stop {
                Err(format!("request {request}: sending: {error}"))
            } else {
                Ok(())
            };
        }
        match read_response(&mut stream, &mut pending) {
            Ok((200, head, _)) => {
                if head.contains("Connection: close") {
                    // The answer after the stop says so, and the stream ends next.
                    return if read_to_end(&mut stream)?.is_empty() {
                        Ok(())
                    } else {
                        Err("bytes after the last answer".into())
                    };
                }
            }
            Ok((status, head, _)) => return Err(format!("request {request}: {status} {head:?}")),
            // Closed before answering a request sent after the stop: allowed, if no
            // byte of an answer had come.
            Err(_) if !before_stop && pending.is_empty() => return Ok(()),
            Err(error) => {
                return Err(format!(
                    "request {request} (sent {} the stop): {error}",
                    if before_stop { "before" } else { "after" }
                ));
            }
        }
        request += 1;
        load.round_done();
        // The stop reaches the guest some time after `stopped` is set; meanwhile it
        // answers on. Bounded only so that a service that never stops fails the test.
        if load.stopped() {
            let since = *stop_seen.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() > BOOT {
                return Err("still answering keep-alive a minute after the stop".into());
            }
        }
    }
}

fn powerdown_under_load(name: &str, options: RunOptions) -> Result<(), Failure> {
    let path = std::env::temp_dir().join(format!(
        "torito-qmp-http-{name}-{}.sock",
        std::process::id()
    ));
    let options = options.qmp(&path);
    let (mut guest, port) = Guest::start_forwarded("http", &options, GUEST_PORT, LISTENING, BOOT)?;
    let mut qmp = Qmp::connect(&path, BOOT).map_err(|error| guest.failure(error))?;
    // A connection open and idle across the stop: closed without an answer.
    let mut idle = connect(port).map_err(|error| guest.failure(error))?;
    let run = powerdown_under_load_of(
        &mut qmp,
        vec![(); LOAD_CLIENTS],
        ROUNDS_BEFORE_STOP,
        BOOT,
        |_, (), load| until_stopped(port, load),
    );
    run.powerdown
        .clone()
        .map_err(|error| guest.failure(error))?;
    failed_connections(&run.results).map_err(|error| guest.failure(error))?;
    run.check_load(ROUNDS_BEFORE_STOP)
        .map_err(|error| guest.failure(error))?;
    let rest = read_to_end(&mut idle).map_err(|error| guest.failure(error))?;
    if !rest.is_empty() {
        return Err(guest.failure(format!("the idle connection got {rest:?}")));
    }
    expect_graceful_stop(&mut guest, STOPPED, BOOT)?;
    Ok(())
}

#[test]
fn powerdown_under_load_on_microvm() -> Result<(), Failure> {
    powerdown_under_load("microvm", RunOptions::default())
}

#[test]
fn powerdown_under_load_on_q35_smp4() -> Result<(), Failure> {
    powerdown_under_load("q35-smp4", RunOptions::default().machine("q35").smp(4))
}
