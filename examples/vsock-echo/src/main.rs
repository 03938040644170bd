//! vsock-echo: an async echo service on vsock port 5555, one task per connection, the
//! connections spread over every core in turn. No network device needed.
//!
//! Try it: `qemu/run.sh build/vsock-echo.elf --vsock 3 --vsock-socket /tmp/v.sock`,
//! then `socat - UNIX-CONNECT:/tmp/v.sock`, type `CONNECT 5555`, and the lines after
//! the backend's `OK ...` come back.
//!
//! `app.blocking` on the command line serves the same way with the blocking sockets
//! (`torito::vsock::blocking`), one blocking task (fiber) per connection.
//!
//! `app.connect=PORT[,PORT...]` also connects out to each of those host ports
//! (`VsockStream::connect`; with vhost-device-vsock the host program listens on the Unix
//! socket `<uds-path>_PORT`) and echoes there too, printing how each ended:
//! `vsock-echo: host port 7000 connected`, then `vsock-echo: host port 7000 done, 4096
//! bytes echoed`, or `vsock-echo: host port 7001: <why it failed>`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use torito::vsock::{self, HOST_CID, VsockListener, VsockStream};

const PORT: u32 = 5555;
/// Connections waiting to be accepted before new ones are refused.
const BACKLOG: usize = 64;

#[torito::main]
async fn main() -> Result<(), vsock::Error> {
    let blocking = torito::boot::arg("app.blocking").is_some();
    for port in host_ports() {
        match blocking {
            true => torito::task::spawn_blocking(move || connect_blocking(port)).detach(),
            false => torito::task::spawn(connect(port)).detach(),
        }
    }
    if blocking {
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

/// The host ports of `app.connect=PORT[,PORT...]` (a word that is no port is skipped,
/// with a warning).
fn host_ports() -> impl Iterator<Item = u32> {
    let list = torito::boot::arg("app.connect").unwrap_or_default();
    list.split(',')
        .filter(|word| !word.is_empty())
        .filter_map(|word| {
            word.parse()
                .map_err(|_| torito::log::warn!("vsock-echo: app.connect: `{}` is no port", word))
                .ok()
        })
}

/// `app.connect`: connects to the host's `port` and echoes what comes until the host
/// closes.
async fn connect(port: u32) {
    match VsockStream::connect(HOST_CID, port).await {
        Ok(stream) => {
            torito::println!("vsock-echo: host port {} connected", port);
            let echoed = echo(stream).await;
            torito::println!(
                "vsock-echo: host port {} done, {} bytes echoed",
                port,
                echoed
            );
        }
        Err(error) => torito::println!("vsock-echo: host port {}: {}", port, error),
    }
}

/// Echoes until the peer closes its side (or resets), then closes ours; the bytes
/// echoed.
async fn echo(mut stream: VsockStream) -> usize {
    let mut buffer = [0u8; 4096];
    let mut echoed = 0;
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(received) => {
                if stream.write_all(&buffer[..received]).await.is_err() {
                    break;
                }
                echoed += received;
            }
        }
    }
    let _ = stream.close().await;
    echoed
}

/// As [`connect`], with the blocking calls (`app.blocking`).
fn connect_blocking(port: u32) {
    match vsock::blocking::VsockStream::connect(HOST_CID, port) {
        Ok(stream) => {
            torito::println!("vsock-echo: host port {} connected (blocking)", port);
            let echoed = echo_blocking(stream);
            torito::println!(
                "vsock-echo: host port {} done, {} bytes echoed",
                port,
                echoed
            );
        }
        Err(error) => torito::println!("vsock-echo: host port {}: {}", port, error),
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
fn serve_blocking(stream: vsock::blocking::VsockStream) {
    echo_blocking(stream);
}

/// As [`echo`], with blocking calls.
fn echo_blocking(mut stream: vsock::blocking::VsockStream) -> usize {
    let mut buffer = [0u8; 2048];
    let mut echoed = 0;
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(received) => {
                if stream.write_all(&buffer[..received]).is_err() {
                    break;
                }
                echoed += received;
            }
        }
    }
    let _ = stream.close();
    echoed
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
