//! Echo, blocking style: the same service as `echo`, written with blocking sockets.
//!
//! Each connection is served by a blocking task (`spawn_blocking`: a task with its own
//! stack), whose blocking calls park it until its socket is ready while the other
//! connections keep being served on the same core.
//!
//! A blocking task's stack is 32 KiB of heap: the listener reserves that much for each
//! connection from its SYN until `accept` (so the spawn that follows finds it), and
//! the spawn itself is fallible (`try_spawn_blocking`): when memory runs out, the
//! connection is refused, never the service.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use torito::net::blocking::TcpStream;
use torito::net::{self, Error, TcpTimeouts};
use torito::time::Duration;

const PORT: u16 = 5555;
const BACKLOG: usize = 64;

/// As in `echo`: the stack's defaults plus a 60 s idle limit on every blocking call.
fn timeouts() -> TcpTimeouts {
    TcpTimeouts {
        idle: Some(Duration::from_secs(60)),
        ..TcpTimeouts::default()
    }
}

#[torito::main]
async fn main() -> Result<(), Error> {
    torito::task::spawn_blocking(listen).await
}

fn listen() -> Result<(), Error> {
    let stack = net::blocking::stack()?;
    let mut listener = net::blocking::listen(&stack, PORT, BACKLOG)?;
    listener.set_reserve(torito::task::BLOCKING_TASK_BYTES);
    listener.set_timeouts(timeouts());
    torito::println!("echo: listening on port {}", PORT);
    loop {
        match listener.accept() {
            Ok(stream) => match torito::task::try_spawn_blocking(move || serve(stream)) {
                Ok(task) => task.detach(),
                // Dropping the work closes its connection; the service goes on.
                Err(error) => torito::log::warn!("echo: connection refused: {}", error),
            },
            Err(error) => torito::log::warn!("echo: accept failed: {}", error),
        }
    }
}

/// Echoes until the peer closes its side (or resets), then closes ours.
fn serve(mut stream: TcpStream) {
    let mut buffer = [0u8; 2048];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(received) => {
                if stream.write_all(&buffer[..received]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = stream.close();
}
