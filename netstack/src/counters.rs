//! Counters: what the stack did and what it dropped, readable from any core.
//!
//! Plain relaxed atomics: each counter is exact on its own, a snapshot is not one
//! instant across counters.

use core::fmt;
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
    /// Times the driver had no free transmit descriptor: the stack kept what it would
    /// send and waited for the next transmit completion (nothing is lost).
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
    /// Half-open connections (SYN received, final ACK never came) dropped: their
    /// handshake timed out, or they gave way to a new SYN in a full backlog.
    pub half_open_dropped: u64,
    /// SYNs dropped because they carried the addresses and ports of a connection
    /// that exists: a listener must not make a second socket for it.
    pub duplicate_syn: u64,
    /// Connections aborted because the peer acknowledged none of their queued data for
    /// the zero-window timeout ([`TcpTimeouts::zero_window`](crate::TcpTimeouts)).
    pub zero_window_aborted: u64,
}

impl Counters {
    /// Each counter with its name, in declaration order.
    pub fn named(&self) -> [(&'static str, u64); 14] {
        // Destructured without `..`: a counter added to the struct and not here is a
        // compile error, not a silently missing entry.
        let Self {
            frames_in,
            frames_out,
            bytes_in,
            bytes_out,
            rx_malformed,
            tx_backpressure,
            refused_backlog,
            refused_no_memory,
            accepted,
            connected,
            active,
            half_open_dropped,
            duplicate_syn,
            zero_window_aborted,
        } = *self;
        [
            ("frames_in", frames_in),
            ("frames_out", frames_out),
            ("bytes_in", bytes_in),
            ("bytes_out", bytes_out),
            ("rx_malformed", rx_malformed),
            ("tx_backpressure", tx_backpressure),
            ("refused_backlog", refused_backlog),
            ("refused_no_memory", refused_no_memory),
            ("accepted", accepted),
            ("connected", connected),
            ("active", active),
            ("half_open_dropped", half_open_dropped),
            ("duplicate_syn", duplicate_syn),
            ("zero_window_aborted", zero_window_aborted),
        ]
    }
}

/// `name: value` pairs separated by `, `: one line for a log, and a table loop rather
/// than the `Debug` builders, which cost every image a few KiB of formatting code.
impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value)) in self.named().iter().enumerate() {
            let separator = if i == 0 { "" } else { ", " };
            write!(f, "{separator}{name}: {value}")?;
        }
        Ok(())
    }
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
    pub half_open_dropped: AtomicU64,
    pub duplicate_syn: AtomicU64,
    pub zero_window_aborted: AtomicU64,
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
            half_open_dropped: get(&self.half_open_dropped),
            duplicate_syn: get(&self.duplicate_syn),
            zero_window_aborted: get(&self.zero_window_aborted),
        }
    }

    /// One TCP connection was reaped.
    pub fn connection_gone(&self) {
        self.active.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn display_names_every_counter_once_in_order() {
        let counters = Counters {
            frames_in: 1,
            refused_no_memory: 7,
            active: 11,
            ..Counters::default()
        };
        let text = counters.to_string();
        assert!(text.starts_with("frames_in: 1, frames_out: 0, "), "{text}");
        assert!(
            text.contains(", refused_no_memory: 7, accepted: 0,"),
            "{text}"
        );
        assert!(
            text.ends_with(
                ", active: 11, half_open_dropped: 0, duplicate_syn: 0, zero_window_aborted: 0"
            ),
            "{text}"
        );
        assert_eq!(text.matches(": ").count(), counters.named().len());
    }
}
