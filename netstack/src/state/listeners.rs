//! Listeners' backlogs: one listening socket each, and the connections not yet accepted.
//!
//! smoltcp has no `accept`: a listening socket *becomes* the connection. So a listener
//! keeps exactly one listening smoltcp socket (with its buffers). When a SYN moves it
//! out of LISTEN, the runner queues it as pending and creates a fresh listening socket,
//! but only while fewer than `backlog` connections are pending. With the backlog full
//! no listening socket exists, so smoltcp answers further SYNs with RST (counted as
//! [`Counters::refused_backlog`](crate::Counters::refused_backlog)) while established
//! connections keep working. Memory is thus in proportion to use: one socket's buffers
//! per pending or accepted connection plus one per listener.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::task::Waker;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{self, State};
use torito_executor::Instant;

use super::sockets::{Reserve, Sockets, new_tcp_socket};
use crate::config::{TcpConfig, TcpTimeouts};
use crate::counters::{CounterCells, add};
use crate::device::Refusal;

/// A listener's state, owned by the stack.
pub(crate) struct Listener {
    pub port: u16,
    pub backlog: usize,
    /// The listening socket and the reserve that comes with it.
    pub listening: Option<(SocketHandle, Reserve)>,
    /// Connections that left LISTEN, oldest first, not yet accepted.
    pub pending: VecDeque<Pending>,
    /// The tasks waiting in `accept` (several may accept on one listener at once).
    pub acceptors: Vec<Waker>,
    /// Bytes each connection reserves until accepted ([`TcpConfig::reserve`]).
    pub reserve: usize,
    pub timeouts: TcpTimeouts,
}

impl Listener {
    /// Registers `waker` to be woken when a connection is ready to accept. Without
    /// memory for one more waker, the oldest is woken now to make room: it polls again
    /// and re-registers, so no acceptor is lost, at the cost of a spurious poll.
    pub fn wait_accept(&mut self, waker: &Waker) {
        if self.acceptors.iter().any(|w| w.will_wake(waker)) {
            return;
        }
        if self.acceptors.try_reserve(1).is_err() && !self.acceptors.is_empty() {
            self.acceptors.remove(0).wake();
        }
        if self.acceptors.len() < self.acceptors.capacity() {
            self.acceptors.push(waker.clone());
        } else {
            // Not even room for one: wake the caller again rather than forget it.
            waker.wake_by_ref();
        }
    }
}

/// A connection that left LISTEN and was not accepted yet.
pub(crate) struct Pending {
    pub handle: SocketHandle,
    /// Held, never read: dropped by `accept`, which gives the memory back to the heap
    /// for the task that will serve the connection.
    #[allow(dead_code)]
    pub reserve: Reserve,
    /// When it left LISTEN: the handshake timeout counts from here.
    pub since: Instant,
    /// Whether its established-state timeouts (keep-alive, dead peer) are set.
    pub armed: bool,
}

/// A connection `accept` may hand out: established (or already past it).
pub(crate) fn acceptable(state: State) -> bool {
    !matches!(
        state,
        State::Listen | State::SynReceived | State::SynSent | State::Closed
    )
}

/// Sets the timeouts smoltcp enforces itself on an established connection: keep-alive
/// probes, and the abort of a peer not heard from for `dead_peer`.
pub(crate) fn arm(socket: &mut tcp::Socket<'_>, timeouts: &TcpTimeouts) {
    socket.set_keep_alive(timeouts.keep_alive.map(Into::into));
    socket.set_timeout(Some(timeouts.dead_peer.into()));
}

/// Moves listening sockets that received a SYN to their listener's pending queue,
/// drops pending ones that failed (reset during the handshake) or whose handshake took
/// longer than [`TcpTimeouts::handshake`], creates listening sockets where the backlog
/// has room,
/// arms the timeouts of newly established ones, wakes acceptors, and lists the ports
/// whose SYNs are refused now (in `refusing`, for the device adapter to count).
///
/// Half-open connections must not hold the backlog: a SYN flood (SYNs whose final ACK
/// never comes) would otherwise fill it and lock out every real client for good. With
/// the timeout they leave after `handshake`; and a SYN that finds the backlog full with
/// a half-open connection in it takes that connection's place ([`evict_half_open`],
/// [`Refusal::HalfOpen`]), so a real client's handshake completes as long as it is
/// faster than `backlog` flood SYNs.
pub(crate) fn refresh(
    listeners: &mut [Option<Listener>],
    sockets: &mut Sockets,
    config: TcpConfig,
    refusing: &mut Vec<(u16, Refusal)>,
    now: Instant,
    counters: &CounterCells,
) {
    refusing.clear();
    for listener in listeners.iter_mut().flatten() {
        if let Some((handle, _)) = &listener.listening
            && sockets.get::<tcp::Socket>(*handle).state() != State::Listen
            && let Some((handle, reserve)) = listener.listening.take()
        {
            // The backlog had room when the listening socket was made: no growth.
            listener.pending.push_back(Pending {
                handle,
                reserve,
                since: now,
                armed: false,
            });
        }
        let timeouts = listener.timeouts;
        listener.pending.retain_mut(|pending| {
            let socket = sockets.get_mut::<tcp::Socket>(pending.handle);
            let state = socket.state();
            let failed = matches!(state, State::Listen | State::Closed);
            let expired = state == State::SynReceived && now >= pending.since + timeouts.handshake;
            if failed || expired {
                // An expired peer's late ACK finds no socket and gets a reset.
                sockets.remove(pending.handle);
                if expired {
                    add(&counters.half_open_dropped, 1);
                }
                return false;
            }
            if !pending.armed && acceptable(state) {
                arm(socket, &timeouts);
                pending.armed = true;
            }
            true
        });
        if listener.listening.is_none() {
            if listener.pending.len() >= listener.backlog {
                let half_open = listener.pending.iter().any(|pending| {
                    sockets.get::<tcp::Socket>(pending.handle).state() == State::SynReceived
                });
                let why = if half_open {
                    Refusal::HalfOpen
                } else {
                    Refusal::Backlog
                };
                refusing.push((listener.port, why));
            } else {
                match listening_socket(sockets, config, listener.port, listener.reserve) {
                    Some(listening) => listener.listening = Some(listening),
                    None => refusing.push((listener.port, Refusal::NoMemory)),
                }
            }
        }
        let ready = listener
            .pending
            .iter()
            .any(|pending| acceptable(sockets.get::<tcp::Socket>(pending.handle).state()));
        if ready {
            // Every waiting acceptor looks; the one that takes the connection wins, the
            // others register again.
            for acceptor in listener.acceptors.drain(..) {
                acceptor.wake();
            }
        }
    }
}

/// Drops the oldest half-open connection of `port`'s listener, to make room for a new
/// SYN in its full backlog (the device adapter holds that SYN meanwhile, then hands it
/// to the listening socket `refresh` makes).
pub(crate) fn evict_half_open(
    listeners: &mut [Option<Listener>],
    sockets: &mut Sockets,
    port: u16,
    counters: &CounterCells,
) {
    let Some(listener) = listeners.iter_mut().flatten().find(|l| l.port == port) else {
        return;
    };
    let oldest = listener.pending.iter().position(|pending| {
        sockets.get::<tcp::Socket>(pending.handle).state() == State::SynReceived
    });
    if let Some(evicted) = oldest.and_then(|oldest| listener.pending.remove(oldest)) {
        sockets.remove(evicted.handle);
        add(&counters.half_open_dropped, 1);
    }
}

/// A socket listening on `port`, in the table, with its reserve; `None` without memory.
pub(crate) fn listening_socket(
    sockets: &mut Sockets,
    config: TcpConfig,
    port: u16,
    reserve: usize,
) -> Option<(SocketHandle, Reserve)> {
    let (mut socket, reserve) = new_tcp_socket(config, reserve)?;
    // Cannot fail: the port is non-zero and the socket is fresh.
    let _ = socket.listen(port);
    let handle = sockets.add(socket).ok()?;
    Some((handle, reserve))
}
