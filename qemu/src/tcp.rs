//! TCP clients of a guest's forwarded port: connecting, and reading an answer that a
//! stopping service may cut off.

use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Connects to `127.0.0.1:port` (a guest's `--forward`) within `timeout`, with `timeout`
/// as the read and write timeout too (a guest that stops answering fails the test after
/// it instead of hanging it) and Nagle off (a small request goes out at once, not after
/// the previous answer's ACK).
///
/// # Errors
/// `connecting to 127.0.0.1:PORT: ...` or `socket options: ...`.
pub fn connect(port: u16, timeout: Duration) -> Result<TcpStream, String> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream = TcpStream::connect_timeout(&address, timeout)
        .map_err(|error| format!("connecting to {address}: {error}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .and_then(|()| stream.set_nodelay(true))
        .map_err(|error| format!("socket options: {error}"))?;
    Ok(stream)
}

/// Reads until `length` bytes have come or the stream ends, and returns what came (so
/// fewer than `length` bytes means the answer was cut short: the caller says how that
/// matters). With `may_close`, a read error before the first byte counts as the end of
/// the stream too: a service that stops may reset a connection whose request came after
/// the stop.
///
/// # Errors
/// `reading after N bytes: ...` for any other read error (a timeout included).
pub fn read_up_to(
    stream: &mut impl Read,
    length: usize,
    may_close: bool,
) -> Result<Vec<u8>, String> {
    let mut bytes = vec![0u8; length];
    let mut got = 0;
    while got < length {
        match stream.read(&mut bytes[got..]) {
            Ok(0) => break,
            Ok(count) => got += count,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(_) if got == 0 && may_close => break,
            Err(error) => return Err(format!("reading after {got} bytes: {error}")),
        }
    }
    bytes.truncate(got);
    Ok(bytes)
}

/// Reads `stream` to its end and checks that it ended cleanly with nothing more: what a
/// client that sent its last request sees from a service that stops gracefully.
///
/// # Errors
/// `N bytes after the last answer`, `the connection was reset instead of closed` or
/// `reading to the end: ...`.
pub fn expect_end(stream: &mut impl Read) -> Result<(), String> {
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) if rest.is_empty() => Ok(()),
        Ok(_) => Err(format!("{} bytes after the last answer", rest.len())),
        Err(error) if error.kind() == ErrorKind::ConnectionReset => {
            Err("the connection was reset instead of closed".into())
        }
        Err(error) => Err(format!("reading to the end: {error}")),
    }
}
