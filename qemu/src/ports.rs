//! Host ports for `--forward`: free ones, never the same one twice in a test process.
//!
//! Tests run in parallel threads of one process, and each guest with a forward needs a
//! host port of its own. The OS picks a free port (bind `127.0.0.1:0`); a set remembers
//! every port handed out, so two tests of one run never get the same port even when the
//! OS offers it again after the first test's QEMU has ended. Between the pick and
//! QEMU's own bind another process may still take the port (a client socket's ephemeral
//! port, say): [`Guest::start_forwarded`](crate::Guest::start_forwarded) notices QEMU's
//! refusal and tries another one.

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};

/// How many ports the OS may offer that this process has handed out before.
const PICKS: usize = 1000;

/// Every port [`free_port`] has returned in this process.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A TCP port on 127.0.0.1 that was free a moment ago and that this process has not
/// handed out before.
///
/// # Errors
///
/// The error of binding a socket to `127.0.0.1:0`, or [`io::ErrorKind::AddrInUse`] when
/// the OS keeps offering ports this process has already handed out.
pub fn free_port() -> io::Result<u16> {
    for _ in 0..PICKS {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        // The listener is closed here: QEMU binds the port next.
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
        if handed_out.get_or_insert_with(HashSet::new).insert(port) {
            return Ok(port);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("the OS offered only ports this process already handed out ({PICKS} tries)"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_and_never_repeat() {
        let mut seen = HashSet::new();
        for _ in 0..50 {
            let port = free_port().unwrap();
            assert!(seen.insert(port), "port {port} handed out twice");
            // Still free: nothing holds it after the pick.
            drop(TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap());
        }
    }
}
