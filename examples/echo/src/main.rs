//! Echo: an async TCP echo service on port 5555, one task per connection, the
//! connections spread over every core in turn. With several NICs it serves on each (one
//! stack and one listener per NIC).
//!
//! Try it: `make run-echo`, then `nc 127.0.0.1 5555`. Two NICs:
//! `qemu/run.sh build/echo.elf --forward 5555:5555 --nic2 --forward2 5556:5555`.
//!
//! It stops cleanly when the platform asks (`torito::shutdown()`: the ACPI power button,
//! Ctrl+Alt+Del): it stops accepting, each connection answers what it has received and
//! what arrives until the line has been quiet for [`QUIET`], then closes; once every
//! connection is closed, or after [`DRAIN_LIMIT`], `main` returns and the VM exits 0.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use torito::net::{self, TcpListener, TcpStream, TcpTimeouts};
use torito::task::Spread;
use torito::time::Duration;

/// After a stop request, a connection closes once no bytes arrived for this long: a
/// request the client sent just before the stop is still on its way (through the host's
/// network and the device) and gets its answer.
const QUIET: Duration = Duration::from_millis(500);
/// After a stop request, `main` waits this long at most for the connections to close.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

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
        torito::task::spawn(report()).detach();
    }
    // Every other NIC: its own stack (DHCP), its own listener and accept loop; all of
    // them count their connections together.
    let spread = Spread::new();
    for nic in 1..net::nic_count() {
        let spread = spread.clone();
        torito::task::spawn(async move {
            match net::stack_of(nic).await.and_then(|stack| listen(&stack)) {
                Ok(listener) => {
                    torito::println!("echo: NIC {} listening on port {}", nic, PORT);
                    accept_loop(listener, spread).await;
                }
                Err(error) => torito::log::error!("echo: NIC {}: {}", nic, error),
            }
        })
        .detach();
    }
    accept_loop(listener, spread.clone()).await;
    // Asked to stop: the accept loops have ended; let the connections finish.
    match spread.wait(DRAIN_LIMIT).await {
        0 => torito::println!("echo: stopped cleanly"),
        left => torito::println!("echo: stopping with {} connections still open", left),
    }
    if torito::boot::arg("app.stats").is_some() {
        print_stats(); // the final counters, whenever the last tick was
    }
    Ok(())
}

/// A listener on `stack`'s port [`PORT`], with [`timeouts`].
fn listen(stack: &net::Stack) -> Result<TcpListener, net::Error> {
    let mut listener = TcpListener::bind(stack, PORT, BACKLOG)?;
    listener.set_timeouts(timeouts());
    Ok(listener)
}

/// Accepts connections until a stop request, serving each on the next core in turn;
/// then drops the listener (new connections are refused).
async fn accept_loop(listener: TcpListener, mut spread: Spread) {
    while let Some(accepted) = torito::until_shutdown(listener.accept()).await {
        match accepted {
            Ok(stream) => spread.spawn(serve(stream)),
            Err(error) => torito::log::warn!("echo: accept failed: {}", error),
        }
    }
}

/// Echoes until the peer closes its side (or resets, or stays idle past the timeout) or,
/// after a stop request, until no bytes arrived for [`QUIET`]; then closes ours (bounded
/// by the same timeout; the stack finishes or resets the close in the background).
/// Whatever was read is written back whole before the next read: a stop never cuts an
/// answer in half.
async fn serve(mut stream: TcpStream) {
    let mut buffer = [0u8; 2048];
    loop {
        let read = if torito::shutdown_requested() {
            torito::time::timeout(QUIET, stream.read(&mut buffer))
                .await
                .ok()
        } else {
            match torito::until_shutdown(stream.read(&mut buffer)).await {
                Some(read) => Some(read),
                // Asked to stop while waiting: read on with the quiet limit.
                None => continue,
            }
        };
        match read {
            None | Some(Ok(0)) | Some(Err(_)) => break,
            Some(Ok(received)) => {
                if stream.write_all(&buffer[..received]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = stream.close().await;
}

/// `app.stats`: prints each NIC's counters (its stack's, then its driver's) and each
/// core's every second (and once more when echo stops).
async fn report() {
    let mut tick = torito::time::interval(torito::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        print_stats();
    }
}

/// Prints each NIC's counters and each core's.
fn print_stats() {
    use core::sync::atomic::Ordering::Relaxed;
    for nic in 0..net::nic_count() {
        if let Some(stack) = net::stack_of_now(nic) {
            torito::println!("echo: net{} {}", nic, stack.counters());
        }
        if let Some(device) = net::device_stats_of(nic) {
            torito::println!(
                "echo: net{} device rx_frames: {}, tx_frames: {}, notifications: {}, \
                     interrupts: {}",
                nic,
                device.rx_frames.load(Relaxed),
                device.tx_frames.load(Relaxed),
                device.notifications.load(Relaxed),
                net::device_interrupts_of(nic)
            );
        }
        if let Some(vif) = net::xen_vif_stats_of(nic) {
            torito::println!(
                "echo: net{} xen vif {}, interrupts: {}",
                nic,
                vif,
                net::device_interrupts_of(nic)
            );
        }
    }
    for core in 0..torito::task::cores() {
        torito::println!("echo: core {} {}", core, torito::task::core_stats(core));
    }
}
