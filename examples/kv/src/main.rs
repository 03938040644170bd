//! kv: an in-memory key-value store speaking the Redis protocol (RESP2) on port 6379,
//! one task per connection, the connections spread over every core, one store shared by
//! all of them (the library in src/lib.rs: framing, commands, store).
//!
//! Try it: `make run-kv`, then `redis-cli -p 6379 set greeting hello` and
//! `redis-cli get greeting`; `redis-benchmark -t set,get` measures it.
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
use kv::{Connection, Flow, PORT, Store};
use torito::net::{self, TcpListener, TcpStream, TcpTimeouts};
use torito::time::Duration;

/// Connections waiting to be accepted before new ones are refused (redis-benchmark's
/// default is 50 clients connecting at once).
const BACKLOG: usize = 128;
/// How often the sweep task removes expired keys from one shard (the whole store every
/// `SHARDS` periods).
const SWEEP_PERIOD: Duration = Duration::from_millis(100);

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
    accept_loop(listener, store).await
}

/// Accepts connections for ever, serving each on the next core in turn.
///
/// Stopping (once the kernel offers a shutdown future) is one `select` between
/// `listener.accept()` and that future here.
async fn accept_loop(mut listener: TcpListener, store: &'static Store) -> Result<(), Error> {
    let mut next_core = 0;
    loop {
        match listener.accept().await {
            Ok(stream) => {
                next_core = (next_core + 1) % torito::task::cores();
                // The core exists (it is below `cores()`), so spawn_on cannot refuse.
                let _ = torito::task::spawn_on(next_core, serve(stream, store));
            }
            Err(error) => torito::log::warn!("kv: accept failed: {}", error),
        }
    }
}

/// Serves one client until it closes, quits, breaks the framing or stays idle too long.
async fn serve(mut stream: TcpStream, store: &'static Store) {
    let mut connection = Connection::new();
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
        match stream.read(buffer).await {
            Ok(0) | Err(_) => break,
            Ok(received) => connection.received(received),
        }
    }
    drop(connection);
    let _ = stream.close().await;
}

/// Removes expired keys nobody asks for: one shard every [`SWEEP_PERIOD`].
async fn sweep(store: &'static Store) {
    let mut tick = torito::time::interval(SWEEP_PERIOD);
    loop {
        tick.tick().await;
        store.sweep(now());
    }
}
