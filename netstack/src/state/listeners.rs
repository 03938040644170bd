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

use super::sockets::{Sockets, new_tcp_socket};
use crate::config::TcpConfig;
use crate::device::Refusal;

/// A listener's state, owned by the stack.
pub(crate) struct Listener {
    pub port: u16,
    pub backlog: usize,
    pub listening: Option<SocketHandle>,
    /// Connections that left LISTEN, oldest first, not yet accepted.
    pub pending: VecDeque<SocketHandle>,
    pub acceptor: Option<Waker>,
}

/// A connection `accept` may hand out: established (or already past it).
pub(crate) fn acceptable(state: State) -> bool {
    !matches!(
        state,
        State::Listen | State::SynReceived | State::SynSent | State::Closed
    )
}

/// Moves listening sockets that received a SYN to their listener's pending queue,
/// drops pending ones that failed (reset during the handshake), creates listening
/// sockets where the backlog has room, wakes acceptors, and lists the ports whose SYNs
/// are refused now (in `refusing`, for the device adapter to count).
pub(crate) fn refresh(
    listeners: &mut [Option<Listener>],
    sockets: &mut Sockets,
    config: TcpConfig,
    refusing: &mut Vec<(u16, Refusal)>,
) {
    refusing.clear();
    for listener in listeners.iter_mut().flatten() {
        if let Some(handle) = listener.listening
            && sockets.get::<tcp::Socket>(handle).state() != State::Listen
        {
            listener.pending.push_back(handle);
            listener.listening = None;
        }
        listener.pending.retain(|&handle| {
            let failed = matches!(
                sockets.get::<tcp::Socket>(handle).state(),
                State::Listen | State::Closed
            );
            if failed {
                sockets.remove(handle);
            }
            !failed
        });
        if listener.listening.is_none() {
            if listener.pending.len() >= listener.backlog {
                refusing.push((listener.port, Refusal::Backlog));
            } else {
                let added = new_tcp_socket(config).and_then(|mut socket| {
                    // Cannot fail: the port is non-zero and the socket is fresh.
                    let _ = socket.listen(listener.port);
                    sockets.add(socket).ok()
                });
                match added {
                    Some(handle) => listener.listening = Some(handle),
                    None => refusing.push((listener.port, Refusal::NoMemory)),
                }
            }
        }
        let ready = listener
            .pending
            .iter()
            .any(|&handle| acceptable(sockets.get::<tcp::Socket>(handle).state()));
        if ready && let Some(acceptor) = listener.acceptor.take() {
            acceptor.wake();
        }
    }
}
