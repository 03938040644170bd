//! Echo: an async TCP echo service on port 5555, one task per connection, the
//! connections spread over every core in turn. With several NICs it serves on each (one
//! stack and one listener per NIC).
//!
//! Try it: `make run-echo`, then `nc 127.0.0.1 5555`. Two NICs:
//! `qemu/run.sh build/echo.elf --forward 5555:5555 --nic2 --forward2 5556:5555`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use torito::net::{self, TcpListener, TcpStream, TcpTimeouts};
use torito::time::Duration;

const PORT: u16 = 5555;
/// Connections waiting to be accepted before new ones are refused.
const BACKLOG: usize = 64;

/// The stack's defaults (keep-alive, dead peer, zero window, a bounded close), plus an
/// idle limit: a read, write or close that waits longer than this gives up, so a
/// silent client, one that stops reading, or one that sends FIN and vanishes frees
/// its task too, not only its socket.
fn timeouts() -> TcpTimeouts {
    TcpTimeouts {
        idle: Some(Duration::from_secs(60)),
        ..TcpTimeouts::default()
    }
}

#[torito::main]
async fn main() -> Result<(), net::Error> {
    let stack = net::stack().await?;
    let listener = listen(&stack)?;
    torito::println!("echo: listening on port {}", PORT);
    if torito::boot::arg("app.stats").is_some() {
        torito::task::spawn(report(stack.clone())).detach();
    }
    // Every other NIC: its own stack (DHCP), its own listener and accept loop.
    for nic in 1..net::nic_count() {
        torito::task::spawn(async move {
            match net::stack_of(nic).await.and_then(|stack| listen(&stack)) {
                Ok(listener) => {
                    torito::println!("echo: NIC {} listening on port {}", nic, PORT);
                    accept_loop(listener).await;
                }
                Err(error) => torito::log::error!("echo: NIC {}: {}", nic, error),
            }
        })
        .detach();
    }
    accept_loop(listener).await
}

/// A listener on `stack`'s port [`PORT`], with [`timeouts`].
fn listen(stack: &net::Stack) -> Result<TcpListener, net::Error> {
    let mut listener = TcpListener::bind(stack, PORT, BACKLOG)?;
    listener.set_timeouts(timeouts());
    Ok(listener)
}

/// Accepts connections for ever, serving each on the next core in turn.
async fn accept_loop(listener: TcpListener) -> ! {
    let mut next_core = 0;
    loop {
        match listener.accept().await {
            Ok(stream) => {
                next_core = (next_core + 1) % torito::task::cores();
                // The core exists (it is below `cores()`), so spawn_on cannot refuse.
                let _ = torito::task::spawn_on(next_core, serve(stream));
            }
            Err(error) => torito::log::warn!("echo: accept failed: {}", error),
        }
    }
}

/// Echoes until the peer closes its side (or resets, or stays idle past the timeout),
/// then closes ours (bounded by the same timeout; the stack finishes or resets the close
/// in the background).
async fn serve(mut stream: TcpStream) {
    let mut buffer = [0u8; 2048];
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

/// `app.stats`: prints the network and per-core counters every second.
async fn report(stack: net::Stack) {
    let mut tick = torito::time::interval(torito::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let counters = stack.counters();
        torito::println!("echo: net {}", counters);
        for core in 0..torito::task::cores() {
            torito::println!("echo: core {} {}", core, torito::task::core_stats(core));
        }
    }
}
