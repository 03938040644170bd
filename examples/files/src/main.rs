//! Files: an HTTP/1.1 static file server on port 8080 over `torito::fs`.
//!
//! GET (and HEAD) of a file sends it with its Content-Length and a Content-Type from its
//! extension, honouring a single `Range: bytes=...`; GET of a directory lists its
//! entries as text, one per line, directories with a trailing `/`; PUT writes a file
//! (created or replaced) where the filesystem is writable, its body delimited by
//! Content-Length or sent chunked. 404 for what is not there,
//! 403 for what the host refuses. Connections are kept alive (HTTP/1.1's default).
//!
//! It serves the directory `app.root` (default `/srv`) of the path space; the URL's path
//! is normalized before it is appended, so `..` never leaves that directory.
//!
//! Try it: `make run-files DIR=path`, then `curl http://127.0.0.1:8080/`.
//!
//! With `app.selftest` it first runs the blocking file API (`torito::fs::blocking`) from
//! a blocking task through every call a server does not make (append, seek, rename,
//! directories, removal, sync) in `ROOT/selftest`, and prints whether it passed.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use torito::fs::{self, ErrorKind, File, OpenOptions};
use torito::net::{self, TcpListener, TcpStream, TcpTimeouts};
use torito::time::Duration;

const PORT: u16 = 8080;
const BACKLOG: usize = 64;
/// The most bytes of request head (request line and headers) taken.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 32;
/// Bytes per read from a file (and per write to one).
const CHUNK: usize = 64 * 1024;

#[torito::main]
async fn main() -> Result<(), net::Error> {
    let root = torito::boot::arg("app.root").unwrap_or("/srv");
    // app.selftest: the blocking file API, once, before serving (qemu/tests/files.rs);
    // its first call is the first of torito::fs, so the mounts are set up from a fiber.
    if torito::boot::arg("app.selftest").is_some() {
        let outcome = torito::task::spawn_blocking(move || selftest(root)).await;
        match outcome {
            Ok(()) => torito::println!("files: self-test passed"),
            Err(error) => torito::println!("files: self-test failed: {}", error),
        }
    }
    for (point, what) in fs::mounts().await {
        torito::println!("files: {} at {}", what, point);
    }
    let stack = net::stack().await?;
    let mut listener = TcpListener::bind(&stack, PORT, BACKLOG)?;
    listener.set_timeouts(TcpTimeouts {
        idle: Some(Duration::from_secs(60)),
        ..TcpTimeouts::default()
    });
    torito::println!("files: root {}", root);
    torito::println!("files: serving on port {}", PORT);
    // Each connection on the next core in turn.
    let mut spread = torito::task::Spread::new();
    loop {
        match listener.accept().await {
            Ok(stream) => spread.spawn(serve(stream, root)),
            Err(error) => torito::log::warn!("files: accept failed: {}", error),
        }
    }
}

/// Serves requests on one connection until the client closes it, asks to, or errs.
async fn serve(mut stream: TcpStream, root: &'static str) {
    let mut buffer: Vec<u8> = Vec::with_capacity(4096);
    while let Ok(true) = serve_one(&mut stream, &mut buffer, root).await {}
    let _ = stream.close().await;
}

/// A response's status line and headers, and whether to keep the connection.
struct Head {
    status: &'static str,
    headers: String,
    length: u64,
}

impl Head {
    fn new(status: &'static str, length: u64) -> Self {
        Head {
            status,
            headers: String::new(),
            length,
        }
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push_str(name);
        self.headers.push_str(": ");
        self.headers.push_str(value);
        self.headers.push_str("\r\n");
        self
    }

    async fn send(self, stream: &mut TcpStream, keep_alive: bool) -> Result<(), ()> {
        let head = format!(
            "HTTP/1.1 {}\r\nServer: torito-files\r\nContent-Length: {}\r\nConnection: {}\r\n{}\r\n",
            self.status,
            self.length,
            if keep_alive { "keep-alive" } else { "close" },
            self.headers
        );
        stream.write_all(head.as_bytes()).await.map_err(drop)
    }
}

/// A short text response.
async fn reply(
    stream: &mut TcpStream,
    status: &'static str,
    body: &str,
    keep_alive: bool,
    head_only: bool,
) -> Result<bool, ()> {
    Head::new(status, body.len() as u64)
        .header("Content-Type", "text/plain; charset=utf-8")
        .send(stream, keep_alive)
        .await?;
    if !head_only {
        stream.write_all(body.as_bytes()).await.map_err(drop)?;
    }
    Ok(keep_alive)
}

/// The status for a filesystem error.
fn status_of(error: &fs::Error) -> &'static str {
    match error.kind {
        ErrorKind::NotFound | ErrorKind::NoMount | ErrorKind::NotADirectory => "404 Not Found",
        ErrorKind::PermissionDenied | ErrorKind::ReadOnly => "403 Forbidden",
        ErrorKind::IsADirectory => "405 Method Not Allowed",
        ErrorKind::InvalidPath(_) => "400 Bad Request",
        ErrorKind::NoSpace => "507 Insufficient Storage",
        _ => "500 Internal Server Error",
    }
}

/// Reads and answers one request; `Ok(true)` to keep the connection.
async fn serve_one(stream: &mut TcpStream, buffer: &mut Vec<u8>, root: &str) -> Result<bool, ()> {
    // Read until the head is complete.
    let head_length = loop {
        if let Some(end) = find_head_end(buffer) {
            break end;
        }
        if buffer.len() >= MAX_HEAD {
            reply(
                stream,
                "431 Request Header Fields Too Large",
                "too large\n",
                false,
                false,
            )
            .await?;
            return Err(());
        }
        let mut chunk = [0u8; 2048];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(()),
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let parsed = request.parse(&buffer[..head_length]);
    let (method, target, version) = match parsed {
        Ok(httparse::Status::Complete(_)) => (
            String::from(request.method.unwrap_or("")),
            String::from(request.path.unwrap_or("/")),
            request.version.unwrap_or(1),
        ),
        _ => {
            reply(
                stream,
                "400 Bad Request",
                "malformed request\n",
                false,
                false,
            )
            .await?;
            return Err(());
        }
    };
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .and_then(|header| core::str::from_utf8(header.value).ok())
    };
    let connection = header("connection").unwrap_or("");
    let keep_alive = if version == 0 {
        connection.eq_ignore_ascii_case("keep-alive")
    } else {
        !connection.eq_ignore_ascii_case("close")
    };
    let range = header("range").map(String::from);
    let framing = if header("transfer-encoding")
        .is_some_and(|value| value.to_ascii_lowercase().contains("chunked"))
    {
        Some(Framing::Chunked)
    } else {
        match header("content-length").map(|value| value.trim().parse::<u64>()) {
            Some(Ok(length)) => Some(Framing::Length(length)),
            _ => None,
        }
    };
    // What follows the head is the body's start (or the next request's).
    let rest = buffer.split_off(head_length);
    buffer.clear();
    *buffer = rest;

    let Some(path) = file_path(root, &target) else {
        return reply(stream, "400 Bad Request", "bad path\n", keep_alive, false).await;
    };
    match method.as_str() {
        "GET" | "HEAD" => {
            get(
                stream,
                &path,
                range.as_deref(),
                keep_alive,
                method == "HEAD",
            )
            .await
        }
        "PUT" => {
            let Some(framing) = framing else {
                return reply(
                    stream,
                    "411 Length Required",
                    "PUT needs a Content-Length or a chunked body\n",
                    false,
                    false,
                )
                .await
                .and(Err(()));
            };
            put(stream, buffer, &path, framing, keep_alive).await
        }
        _ => {
            reply(
                stream,
                "405 Method Not Allowed",
                "GET, HEAD or PUT\n",
                keep_alive,
                false,
            )
            .await
        }
    }
}

fn find_head_end(buffer: &[u8]) -> Option<usize> {
    buffer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// The path in the filesystem a request target names: its path part, percent-decoded,
/// normalized (so `..` stays inside), below `root`.
fn file_path(root: &str, target: &str) -> Option<String> {
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let decoded = percent_decode(path)?;
    let normalized = fs::path::normalize(&decoded).ok()?;
    Some(format!("{}{}", root.trim_end_matches('/'), normalized))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = core::str::from_utf8(bytes.get(at + 1..at + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn content_type(path: &str) -> &'static str {
    let extension = path.rsplit_once('.').map_or("", |(_, extension)| extension);
    match extension.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" | "md" => "text/plain; charset=utf-8",
        "css" => "text/css",
        "js" | "mjs" => "text/javascript",
        "json" => "application/json",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "webp" => "image/webp",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

/// A `Range: bytes=...` header against a file of `size` bytes: the inclusive range, or
/// `Err` when it cannot be satisfied. Several ranges, or another unit: `None` (the
/// whole file, as the RFC allows).
fn parse_range(value: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = (start.trim(), end.trim());
    let range = if start.is_empty() {
        let suffix: u64 = end.parse().ok()?;
        if suffix == 0 || size == 0 {
            return Some(Err(()));
        }
        (size.saturating_sub(suffix), size - 1)
    } else {
        let start: u64 = start.parse().ok()?;
        let end = if end.is_empty() {
            size.saturating_sub(1)
        } else {
            end.parse::<u64>().ok()?.min(size.saturating_sub(1))
        };
        if start >= size || end < start {
            return Some(Err(()));
        }
        (start, end)
    };
    Some(Ok(range))
}

async fn get(
    stream: &mut TcpStream,
    path: &str,
    range: Option<&str>,
    keep_alive: bool,
    head_only: bool,
) -> Result<bool, ()> {
    let metadata = match fs::metadata(path).await {
        Ok(metadata) => metadata,
        Err(error) => {
            let body = format!("{}\n", error);
            return reply(stream, status_of(&error), &body, keep_alive, head_only).await;
        }
    };
    if metadata.is_dir() {
        return list(stream, path, keep_alive, head_only).await;
    }
    let file = match File::open(path).await {
        Ok(file) => file,
        Err(error) => {
            let body = format!("{}\n", error);
            return reply(stream, status_of(&error), &body, keep_alive, head_only).await;
        }
    };
    let size = metadata.len;
    let (status, start, end) = match range.and_then(|value| parse_range(value, size)) {
        Some(Ok((start, end))) => ("206 Partial Content", start, end + 1),
        Some(Err(())) => {
            drop(file);
            return Head::new("416 Range Not Satisfiable", 0)
                .header("Content-Range", &format!("bytes */{size}"))
                .send(stream, keep_alive)
                .await
                .map(|()| keep_alive);
        }
        None => ("200 OK", 0, size),
    };
    let mut head = Head::new(status, end - start)
        .header("Content-Type", content_type(path))
        .header("Accept-Ranges", "bytes");
    if status.starts_with("206") {
        head = head.header(
            "Content-Range",
            &format!("bytes {}-{}/{}", start, end - 1, size),
        );
    }
    head.send(stream, keep_alive).await?;
    if head_only {
        let _ = file.close().await;
        return Ok(keep_alive);
    }
    let mut chunk = alloc::vec![0u8; CHUNK];
    let mut offset = start;
    while offset < end {
        let want = ((end - offset) as usize).min(CHUNK);
        let read = match file.read_at(offset, &mut chunk[..want]).await {
            Ok(0) | Err(_) => {
                // The file shrank (or the host failed) after the head went out: the
                // only honest signal left is to close the connection short.
                return Err(());
            }
            Ok(read) => read,
        };
        stream.write_all(&chunk[..read]).await.map_err(drop)?;
        offset += read as u64;
    }
    let _ = file.close().await;
    Ok(keep_alive)
}

async fn list(
    stream: &mut TcpStream,
    path: &str,
    keep_alive: bool,
    head_only: bool,
) -> Result<bool, ()> {
    let entries = match fs::read_dir(path).await {
        Ok(listing) => listing.collect().await,
        Err(error) => Err(error),
    };
    let entries = match entries {
        Ok(entries) => entries,
        Err(error) => {
            let body = format!("{}\n", error);
            return reply(stream, status_of(&error), &body, keep_alive, head_only).await;
        }
    };
    let mut body = String::new();
    for entry in entries {
        body.push_str(&entry.name);
        if entry.file_type == fs::FileType::Directory {
            body.push('/');
        }
        body.push('\n');
    }
    reply(stream, "200 OK", &body, keep_alive, head_only).await
}

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy)]
enum Framing {
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Where a body reader is.
enum BodyState {
    /// Bytes left of a `Content-Length` body.
    Length(u64),
    /// Expecting a chunk-size line.
    ChunkHeader,
    /// Bytes left of the current chunk, then its CRLF.
    ChunkData(u64),
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    Done,
}

/// The longest chunk-size or trailer line taken.
const MAX_LINE: usize = 1024;

/// A request body, piece by piece, from the connection's buffer and then the stream.
struct Body<'a> {
    stream: &'a mut TcpStream,
    buffer: &'a mut Vec<u8>,
    state: BodyState,
}

impl Body<'_> {
    /// Reads more bytes from the stream into the buffer; `Err` at the end of the stream.
    async fn fill(&mut self) -> Result<(), ()> {
        let mut chunk = [0u8; 4096];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => Err(()),
            Ok(read) => {
                self.buffer.extend_from_slice(&chunk[..read]);
                Ok(())
            }
        }
    }

    /// The next line (without its CRLF), reading as needed; `Err` past [`MAX_LINE`].
    async fn line(&mut self) -> Result<Vec<u8>, ()> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\r\n") {
                let line = self.buffer[..end].to_vec();
                self.buffer.drain(..end + 2);
                return Ok(line);
            }
            if self.buffer.len() > MAX_LINE {
                return Err(());
            }
            self.fill().await?;
        }
    }

    /// Up to `left` bytes of data: what the buffer has, or one read's worth.
    async fn data(&mut self, left: u64) -> Result<Vec<u8>, ()> {
        if self.buffer.is_empty() {
            self.fill().await?;
        }
        let take = (left.min(CHUNK as u64) as usize).min(self.buffer.len());
        Ok(self.buffer.drain(..take).collect())
    }

    /// The next piece of the body; `None` at its end. `Err` for a malformed chunked
    /// body or a connection that ends early.
    async fn next(&mut self) -> Result<Option<Vec<u8>>, ()> {
        loop {
            match self.state {
                BodyState::Done | BodyState::Length(0) => {
                    self.state = BodyState::Done;
                    return Ok(None);
                }
                BodyState::Length(left) => {
                    let piece = self.data(left).await?;
                    self.state = BodyState::Length(left - piece.len() as u64);
                    return Ok(Some(piece));
                }
                BodyState::ChunkHeader => {
                    let line = self.line().await?;
                    let line = core::str::from_utf8(&line).map_err(drop)?;
                    let size = line.split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(size, 16).map_err(drop)?;
                    self.state = if size == 0 {
                        BodyState::Trailers
                    } else {
                        BodyState::ChunkData(size)
                    };
                }
                BodyState::ChunkData(0) => {
                    if !self.line().await?.is_empty() {
                        return Err(());
                    }
                    self.state = BodyState::ChunkHeader;
                }
                BodyState::ChunkData(left) => {
                    let piece = self.data(left).await?;
                    self.state = BodyState::ChunkData(left - piece.len() as u64);
                    return Ok(Some(piece));
                }
                BodyState::Trailers => {
                    if self.line().await?.is_empty() {
                        self.state = BodyState::Done;
                    }
                }
            }
        }
    }
}

async fn put(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    path: &str,
    framing: Framing,
    keep_alive: bool,
) -> Result<bool, ()> {
    let opened = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .await;
    let file = match opened {
        Ok(file) => file,
        Err(error) => {
            // The body is not read: close the connection after the answer.
            let body = format!("{}\n", error);
            return reply(stream, status_of(&error), &body, false, false)
                .await
                .and(Err(()));
        }
    };
    let mut body = Body {
        stream,
        buffer,
        state: match framing {
            Framing::Length(length) => BodyState::Length(length),
            Framing::Chunked => BodyState::ChunkHeader,
        },
    };
    let mut offset = 0u64;
    let mut failed = None;
    // The whole body is read even after a failed write, so the connection stays in step.
    while let Some(piece) = body.next().await? {
        if failed.is_none()
            && let Err(error) = file.write_at(offset, &piece).await
        {
            failed = Some(error);
        }
        offset += piece.len() as u64;
    }
    if let Some(error) = failed {
        let body = format!("{}\n", error);
        return reply(stream, status_of(&error), &body, keep_alive, false).await;
    }
    if let Err(error) = file.close().await {
        let body = format!("{}\n", error);
        return reply(stream, status_of(&error), &body, keep_alive, false).await;
    }
    reply(stream, "201 Created", "written\n", keep_alive, false).await
}

/// The blocking API end to end in `root/selftest` (which must not exist yet); leaves
/// `selftest/done.txt` holding "ok" for the host to check.
fn selftest(root: &str) -> Result<(), fs::Error> {
    use torito::fs::blocking;
    let fail = |path: &str, what: &str| {
        torito::println!("files: self-test: {}: {}", path, what);
        fs::Error {
            path: path.into(),
            kind: ErrorKind::Host(0),
        }
    };
    let dir = format!("{}/selftest", root);
    let a = format!("{}/a.txt", dir);
    let b = format!("{}/b.txt", dir);
    let sub = format!("{}/sub", dir);
    blocking::create_dir(&dir)?;
    let mut file = blocking::File::create(&a)?;
    file.write_all(b"hello ")?;
    file.sync()?;
    file.close()?;
    let mut file = blocking::File::open_with(OpenOptions::new().append(true), &a)?;
    file.write_all(b"world")?;
    file.close()?;
    if blocking::read(&a)? != b"hello world" {
        return Err(fail(&a, "append did not append"));
    }
    let mut file = blocking::File::open(&a)?;
    file.seek(fs::SeekFrom::End(-5))?;
    let mut word = [0u8; 16];
    let read = file.read(&mut word)?;
    if &word[..read] != b"world" {
        return Err(fail(&a, "seek from the end read the wrong bytes"));
    }
    file.close()?;
    blocking::rename(&a, &b)?;
    match blocking::metadata(&a) {
        Err(error) if error.kind == ErrorKind::NotFound => {}
        _ => return Err(fail(&a, "still there after the rename")),
    }
    if blocking::metadata(&b)?.len != 11 {
        return Err(fail(&b, "the renamed file has the wrong size"));
    }
    blocking::create_dir(&sub)?;
    match blocking::create_dir(&sub) {
        Err(error) if error.kind == ErrorKind::AlreadyExists => {}
        _ => return Err(fail(&sub, "made twice")),
    }
    match blocking::remove_dir(&dir) {
        Err(error) if error.kind == ErrorKind::DirectoryNotEmpty => {}
        _ => {
            return Err(fail(
                &dir,
                "a full directory was removed, or the wrong error",
            ));
        }
    }
    let mut names: Vec<String> = blocking::read_dir(&dir)?
        .into_iter()
        .map(|entry| entry.name)
        .collect();
    names.sort();
    if names != ["b.txt", "sub"] {
        return Err(fail(&dir, "the listing is wrong"));
    }
    blocking::remove_file(&b)?;
    blocking::remove_dir(&sub)?;
    blocking::write(&format!("{}/done.txt", dir), b"ok")?;
    Ok(())
}
