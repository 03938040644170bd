//! Echo, blocking style: the same service as `echo`, written with blocking sockets.
//!
//! Each connection is served by a blocking task (`spawn_blocking`: a task with its own
//! stack), whose blocking calls park it until its socket is ready while the other
//! connections keep being served on the same core.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use torito::net::blocking::TcpStream;
use torito::net::{self, Error};

const PORT: u16 = 5555;
const BACKLOG: usize = 64;

#[torito::main]
async fn main() -> Result<(), Error> {
    torito::task::spawn_blocking(listen).await
}

fn listen() -> Result<(), Error> {
    let stack = net::blocking::stack()?;
    let mut listener = net::blocking::listen(&stack, PORT, BACKLOG)?;
    torito::println!("echo: listening on port {}", PORT);
    loop {
        match listener.accept() {
            Ok(stream) => torito::task::spawn_blocking(move || serve(stream)).detach(),
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
