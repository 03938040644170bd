//! kv: an in-memory key-value store speaking the Redis protocol (RESP2) on port 6379,
//! one task per connection, the connections spread over every core, one store shared by
//! all of them (the library in src/lib.rs: framing, commands, store).
//!
//! Try it: `make run-kv`, then `redis-cli -p 6379 set greeting hello` and
//! `redis-cli get greeting`; `redis-benchmark -t set,get` measures it.
//!
//! It stops cleanly when the platform asks (`torito::shutdown()`: the ACPI power button,
//! Ctrl+Alt+Del): it stops accepting, each connection answers every request it has
//! received and those that arrive until the line has been quiet for [`QUIET`], then
//! closes; once every connection is closed, or after [`DRAIN_LIMIT`], `main` returns and
//! the VM exits 0. A reply is always written whole.
//!
//! Command-line keys: `kv.maxmemory=SIZE` (e.g. `kv.maxmemory=64mb`): writes that would
//! take the heap's bytes in use past SIZE are answered `-OOM`; the default is the heap
//! less an eighth.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::boxed::Box;
use core::fmt;
use core::future::Future;
use core::pin::{Pin, pin};
use core::task::Poll;
use kv::{Connection, Flow, PORT, Store};
use torito::net::{self, TcpListener, TcpStream, TcpTimeouts};
use torito::shutdown::Shutdown;
use torito::task::Spread;
use torito::time::Duration;

/// Connections waiting to be accepted before new ones are refused (redis-benchmark's
/// default is 50 clients connecting at once).
const BACKLOG: usize = 128;
/// How often the sweep task removes expired keys from one shard (the whole store every
/// `SHARDS` periods).
const SWEEP_PERIOD: Duration = Duration::from_millis(100);

/// After a stop request, a connection closes once no bytes arrived for this long: a
/// request the client sent just before the stop is still on its way and gets its reply.
const QUIET: Duration = Duration::from_millis(500);
/// After a stop request, `main` waits this long at most for the connections to close.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Why the service could not start.
#[derive(Debug)]
enum Error {
    /// No network, or the port could not be bound.
    Net(net::Error),
    /// `kv.maxmemory=` is not a size.
    Config(kv::BadSize<'static>),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Net(error) => write!(f, "kv: {error}"),
            Error::Config(error) => write!(f, "kv: {error}"),
        }
    }
}

/// The stack's defaults plus an idle limit: a client silent for this long (or one that
/// stops reading its replies) frees its task and its buffers.
fn timeouts() -> TcpTimeouts {
    TcpTimeouts {
        idle: Some(Duration::from_secs(300)),
        ..TcpTimeouts::default()
    }
}

/// Milliseconds on the kernel's clock: the store's time for deadlines.
fn now() -> u64 {
    torito::time::since_boot().as_millis() as u64
}

/// The heap's bytes in use: what the memory limit is checked against.
fn heap_used() -> usize {
    torito::memory::heap_stats().used
}

#[torito::main]
async fn main() -> Result<(), Error> {
    let heap = torito::memory::heap_stats().size;
    let limit = match torito::boot::arg("kv.maxmemory") {
        Some(text) => kv::parse_size(text).map_err(Error::Config)?,
        None => kv::default_limit(heap),
    };
    // The hash seed: random, so that clients cannot pick keys that all collide.
    let mut seed = [0u8; 8];
    if let Err(error) = torito::random::fill(&mut seed).await {
        torito::log::warn!("kv: {}; the hash seed comes from the clock", error);
        seed = torito::time::now().as_nanos().to_le_bytes();
    }
    let store: &'static Store = Box::leak(Box::new(Store::new(
        u64::from_le_bytes(seed),
        limit,
        heap_used,
    )));
    let stack = net::stack().await.map_err(Error::Net)?;
    let mut listener = TcpListener::bind(&stack, PORT, BACKLOG).map_err(Error::Net)?;
    listener.set_timeouts(timeouts());
    torito::task::spawn(sweep(store)).detach();
    torito::println!(
        "kv: memory limit {} bytes (heap {} bytes)",
        store.limit(),
        heap
    );
    torito::println!("kv: listening on port {}", PORT);
    let spread = Spread::new();
    accept_loop(listener, store, spread.clone()).await;
    // Asked to stop: no more connections; let those in flight finish.
    match spread.wait(DRAIN_LIMIT).await {
        0 => torito::println!("kv: stopped cleanly"),
        left => torito::println!("kv: stopping with {} connections still open", left),
    }
    Ok(())
}

/// Accepts connections until a stop request, serving each on the next core in turn;
/// then drops the listener (new connections are refused).
async fn accept_loop(listener: TcpListener, store: &'static Store, mut spread: Spread) {
    while let Some(accepted) = torito::until_shutdown(listener.accept()).await {
        match accepted {
            Ok(stream) => spread.spawn(serve(stream, store)),
            Err(error) => torito::log::warn!("kv: accept failed: {}", error),
        }
    }
}

/// Serves one client until it closes, quits, breaks the framing or stays idle too long,
/// or, after a stop request, until no bytes arrived for [`QUIET`]. Every request read is
/// answered, whole, before the next read: a stop never cuts a reply.
async fn serve(mut stream: TcpStream, store: &'static Store) {
    let mut connection = Connection::new();
    // One stop future for the connection's life: it registers its waker once, not once
    // per read as `torito::until_shutdown` around each read would.
    let mut stop = pin!(torito::shutdown());
    'connection: loop {
        // Answer everything buffered, sending the replies as they pile up.
        loop {
            let flow = connection.process(store, now());
            if !connection.output().is_empty() {
                if stream.write_all(connection.output()).await.is_err() {
                    break 'connection;
                }
                connection.sent();
            }
            match flow {
                Flow::Read => break,
                Flow::More => continue,
                Flow::Close => break 'connection,
            }
        }
        let buffer = match connection.buffer() {
            Ok(buffer) => buffer,
            Err(_) => {
                // No room for the request being received: say so, and close (where the
                // next request starts is unknown).
                let _ = stream.write_all(kv::connection::oom_reply()).await;
                break;
            }
        };
        let read = if torito::shutdown_requested() {
            torito::time::timeout(QUIET, stream.read(buffer)).await.ok()
        } else {
            match unless_stopped(stop.as_mut(), stream.read(buffer)).await {
                Some(read) => Some(read),
                // Asked to stop while waiting: read on with the quiet limit.
                None => continue,
            }
        };
        match read {
            None | Some(Ok(0)) | Some(Err(_)) => break,
            Some(Ok(received)) => connection.received(received),
        }
    }
    drop(connection);
    let _ = stream.close().await;
}

/// `future`'s output, or `None` if `stop` resolves first (`future` is polled first, so
/// bytes already there are still read).
async fn unless_stopped<F: Future>(mut stop: Pin<&mut Shutdown>, future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    core::future::poll_fn(|context| {
        if let Poll::Ready(output) = future.as_mut().poll(context) {
            return Poll::Ready(Some(output));
        }
        stop.as_mut().poll(context).map(|()| None)
    })
    .await
}

/// Removes expired keys nobody asks for: one shard every [`SWEEP_PERIOD`].
async fn sweep(store: &'static Store) {
    let mut tick = torito::time::interval(SWEEP_PERIOD);
    loop {
        tick.tick().await;
        store.sweep(now());
    }
}
