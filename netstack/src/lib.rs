//! Torito's network stack: smoltcp behind a [`Stack`] handle and a [`Runner`] task, with
//! async and blocking sockets.
//!
//! # Promises
//!
//! - **Sleeps when idle.** The [`Runner`] polls the interface only when the driver wakes
//!   it (frame received, transmit descriptor freed), a socket operation changed socket
//!   state, or a deadline (smoltcp's `poll_at`, a close linger) comes due. It never
//!   wakes itself while nothing changed.
//! - **One timer system.** The runner's deadlines and socket timeouts are
//!   `torito_executor` timers; the stack keeps no timer list of its own. Time reaches
//!   smoltcp only as an explicit argument ([`Runner::poll`]), so host tests drive it.
//! - **No copies, backpressure not loss.** smoltcp reads received frames in the
//!   driver's buffers and writes frames straight into free transmit buffers
//!   ([`Driver`]'s tokens). With no free transmit descriptor it gets no token: what it
//!   would send stays in the socket's buffer until the driver's wake
//!   ([`Counters::tx_backpressure`]).
//! - **Memory in proportion to use.** One listening socket per listener, one socket per
//!   pending or open connection, each with [`TcpConfig`]'s buffers, allocated
//!   fallibly: running out refuses a connection ([`Counters::refused_no_memory`]),
//!   never panics. A full backlog refuses SYNs with RST ([`Counters::refused_backlog`]).
//!   Each connection also reserves, from its SYN until `accept`, the heap its serving
//!   task will need ([`TcpConfig::reserve`]).
//! - **No peer holds a socket for ever.** Half-open connections time out and give way
//!   to new SYNs in a full backlog; established ones have keep-alive and a dead-peer
//!   abort, a zero-window abort, and a bounded close ([`TcpTimeouts`]). A SYN carrying
//!   an existing connection's addresses and ports is dropped
//!   ([`Counters::duplicate_syn`]), never made into a second socket.
//! - **No leaks.** Dropped connections close gracefully in the background and their
//!   sockets are freed when closed (or reset after [`TcpTimeouts::close`]);
//!   [`Stack::socket_count`] shows it.
//! - **Bad input is dropped and counted, never a panic.**
//! - **No unsafe, no architecture code.** Tested on the host with a fake driver.
//!
//! # Shape
//!
//! The device implements [`Driver`]. [`new`] returns a [`Stack`] (cheap to clone, used
//! by sockets from any task or core) and a [`Runner`] to spawn: `runner.run()`.
//! Sockets: [`TcpListener`], [`TcpStream`] (also `embedded_io_async::{Read, Write}`
//! 0.7, and [`TcpStream::split`] into a [`TcpReadHalf`] and a [`TcpWriteHalf`] usable at
//! once), [`UdpSocket`]; [`blocking`] wraps them for callers that park instead of await.
//! The edge-nal 0.7 traits are implemented for them (`Stack` is `TcpBind`, `TcpConnect`
//! and `UdpBind`; the `edge` module), so edge-net's servers and clients run on the stack.
//! Configuration comes from [`Config`] (see [`Config::from_cmdline`]).
//!
//! All state sits behind one spin lock, taken briefly by socket calls and for one
//! interface poll by the runner, and never held across an `.await`.
//!
//! Modules: `state` (the shared state: socket table, listeners' backlogs, the `Stack`
//! handle) sits below its two users, `runner` and the sockets (`tcp`, `udp`, then
//! `blocking` and `edge` over them), which never import each other; `device` adapts the [`Driver`] to
//! smoltcp for the runner.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod blocking;
mod config;
mod counters;
mod device;
mod driver;
mod edge;
mod error;
mod runner;
mod state;
mod tcp;
mod udp;

pub use config::{
    CONFIG_KEYS, CONFIGURABLE_NICS, Config, ConfigError, Ipv4Address, Ipv4Cidr, Ipv4Config,
    StaticConfig, TcpConfig, TcpTimeouts,
};
pub use counters::Counters;
pub use driver::{Driver, RxToken, TxToken};
pub use edge::{EDGE_BACKLOG, UdpHalf};
pub use error::Error;
pub use runner::{CLOSE_LINGER, Runner, new};
pub use state::shared::{DHCP_FIRST_WARNING, DHCP_WARNING_EVERY, Stack};
pub use tcp::{TcpListener, TcpReadHalf, TcpStream, TcpWriteHalf};
pub use torito_executor::{Duration, Instant};
pub use udp::UdpSocket;
