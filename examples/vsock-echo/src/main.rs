//! vsock-echo: an async echo service on vsock port 5555, one task per connection, the
//! connections spread over every core in turn. No network device needed.
//!
//! Try it: `qemu/run.sh build/vsock-echo.elf --vsock 3 --vsock-socket /tmp/v.sock`,
//! then `socat - UNIX-CONNECT:/tmp/v.sock`, type `CONNECT 5555`, and the lines after
//! the backend's `OK ...` come back.
//!
//! `app.blocking` on the command line serves the same way with the blocking sockets
//! (`torito::vsock::blocking`), one blocking task (fiber) per connection.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use torito::vsock::{self, VsockListener, VsockStream};

const PORT: u32 = 5555;
/// Connections waiting to be accepted before new ones are refused.
const BACKLOG: usize = 64;

#[torito::main]
async fn main() -> Result<(), vsock::Error> {
    if torito::boot::arg("app.blocking").is_some() {
        return torito::task::spawn_blocking(listen_blocking).await;
    }
    let mut listener = VsockListener::bind(PORT, BACKLOG)?;
    torito::println!("vsock-echo: listening on port {}", PORT);
    if torito::boot::arg("app.stats").is_some() {
        torito::task::spawn(report()).detach();
    }
    let mut next_core = 0;
    loop {
        match listener.accept().await {
            Ok(stream) => {
                next_core = (next_core + 1) % torito::task::cores();
                // The core exists (it is below `cores()`), so spawn_on cannot refuse.
                let _ = torito::task::spawn_on(next_core, serve(stream));
            }
            Err(error) => torito::log::warn!("vsock-echo: accept failed: {}", error),
        }
    }
}

/// Echoes until the peer closes its side (or resets), then closes ours.
async fn serve(mut stream: VsockStream) {
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(received) => {
                if stream.write_all(&buffer[..received]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = stream.close().await;
}

/// `app.blocking`: accepts with the blocking listener, one blocking task per connection.
fn listen_blocking() -> Result<(), vsock::Error> {
    let mut listener = vsock::blocking::VsockListener::bind(PORT, BACKLOG)?;
    torito::println!("vsock-echo: listening on port {} (blocking)", PORT);
    loop {
        match listener.accept() {
            Ok(stream) => torito::task::spawn_blocking(move || serve_blocking(stream)).detach(),
            Err(error) => torito::log::warn!("vsock-echo: accept failed: {}", error),
        }
    }
}

/// As [`serve`], with blocking calls.
fn serve_blocking(mut stream: vsock::blocking::VsockStream) {
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

/// `app.stats`: prints the vsock counters every second.
async fn report() {
    let mut tick = torito::time::interval(torito::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        if let Ok(counters) = vsock::counters() {
            torito::println!(
                "vsock-echo: {:?} interrupts {}",
                counters,
                vsock::device_interrupts()
            );
        }
    }
}
