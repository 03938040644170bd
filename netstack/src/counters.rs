//! Counters: what the stack did and what it dropped, readable from any core.
//!
//! Plain relaxed atomics: each counter is exact on its own, a snapshot is not one
//! instant across counters.

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of the stack's counters (see [`Stack::counters`](crate::Stack::counters)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames received from the driver (including dropped ones).
    pub frames_in: u64,
    /// Frames handed to the driver.
    pub frames_out: u64,
    /// Bytes of received frames.
    pub bytes_in: u64,
    /// Bytes of sent frames.
    pub bytes_out: u64,
    /// Received frames dropped before smoltcp saw them: shorter than an Ethernet header
    /// or longer than the MTU allows.
    pub rx_malformed: u64,
    /// Times the driver had no free transmit descriptor: the frame was kept and the
    /// stack waited for the next transmit completion (nothing is lost).
    pub tx_backpressure: u64,
    /// Incoming connection attempts (SYNs) refused with RST because a listener's
    /// backlog was full.
    pub refused_backlog: u64,
    /// Incoming connection attempts refused because no memory was left for the
    /// connection's buffers, plus outgoing connects that failed for that reason.
    pub refused_no_memory: u64,
    /// Connections handed out by `accept`.
    pub accepted: u64,
    /// Connections established by `connect`.
    pub connected: u64,
    /// TCP connections alive now: accepted or connected and not yet reaped.
    pub active: u64,
}

/// The live counters behind [`Counters`].
#[derive(Default)]
pub(crate) struct CounterCells {
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub rx_malformed: AtomicU64,
    pub tx_backpressure: AtomicU64,
    pub refused_backlog: AtomicU64,
    pub refused_no_memory: AtomicU64,
    pub accepted: AtomicU64,
    pub connected: AtomicU64,
    pub active: AtomicU64,
}

/// Adds `n` to `cell`.
pub(crate) fn add(cell: &AtomicU64, n: u64) {
    cell.fetch_add(n, Relaxed);
}

impl CounterCells {
    pub fn snapshot(&self) -> Counters {
        let get = |cell: &AtomicU64| cell.load(Relaxed);
        Counters {
            frames_in: get(&self.frames_in),
            frames_out: get(&self.frames_out),
            bytes_in: get(&self.bytes_in),
            bytes_out: get(&self.bytes_out),
            rx_malformed: get(&self.rx_malformed),
            tx_backpressure: get(&self.tx_backpressure),
            refused_backlog: get(&self.refused_backlog),
            refused_no_memory: get(&self.refused_no_memory),
            accepted: get(&self.accepted),
            connected: get(&self.connected),
            active: get(&self.active),
        }
    }

    /// One TCP connection was reaped.
    pub fn connection_gone(&self) {
        self.active.fetch_sub(1, Relaxed);
    }
}
