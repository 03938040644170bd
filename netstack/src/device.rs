//! The adapter from the [`Driver`]'s tokens to smoltcp's `phy::Device`.
//!
//! No frame is copied on the way: smoltcp reads a received frame in the device's
//! buffer and writes a frame to send straight into a free transmit buffer, since the
//! driver hands out a transmit token only for a free descriptor. With none free,
//! smoltcp gets no token and keeps what it would send (TCP data in the socket's send
//! buffer, UDP datagrams in the socket's queue) until the driver's completion wakes the
//! runner: backpressure delays frames but never drops them.
//!
//! The adapter also counts frames and looks at each received one before smoltcp does:
//! it drops malformed frames and SYNs for connections that exist, and spots SYNs to
//! ports whose listener has no listening socket (backlog full, or no memory), which
//! smoltcp answers with RST. A frame the adapter drops ends that `receive` call with
//! `None` and [`Phy::skipped`] set, so the runner asks again.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::task::Waker;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant as SmolInstant;

use crate::counters::{CounterCells, add};
use crate::driver::{Driver, RxToken as _, TxToken as _};

/// Bytes of an Ethernet header (no VLAN tag, no FCS).
pub(crate) const ETHERNET_HEADER: usize = 14;

/// Why a port's listener has no listening socket right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `backlog` connections wait for `accept`.
    Backlog,
    /// The buffers for the next connection could not be allocated.
    NoMemory,
    /// `backlog` connections wait, and at least one of them is half-open: a new SYN
    /// takes the oldest half-open one's place. The adapter holds the SYN and asks the
    /// runner for the room ([`Phy::evict`]), then hands it over.
    HalfOpen,
}

/// The addresses and ports of a TCP connection, as a SYN carries them (IPv4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tuple {
    pub remote: [u8; 4],
    pub remote_port: u16,
    pub local_port: u16,
}

/// The runner's side of the device: the driver plus what the adapter checks frames
/// against.
pub(crate) struct Phy<D> {
    pub driver: D,
    pub waker: Waker,
    pub counters: Arc<CounterCells>,
    /// Ports whose SYNs are refused, kept current by the runner between frames.
    pub refusing: Vec<(u16, Refusal)>,
    /// Every TCP connection's tuple, kept current by the runner between frames: a SYN
    /// for one of them is dropped (see `runner::note_connections`).
    pub connections: Vec<Tuple>,
    /// A SYN to this port is held (copied into `held`: the one copy, and only on this
    /// rare path, since the device's buffer must go back) until the runner has dropped
    /// the port's oldest half-open connection and made a listening socket.
    pub evict: Option<u16>,
    held: Vec<u8>,
    /// `held` holds a SYN to hand to smoltcp.
    holding: bool,
    /// Set when `receive` dropped a frame and returned `None`: more may be pending.
    pub skipped: bool,
    /// Set when the driver had no transmit token during this poll.
    pub tx_blocked: bool,
    frame_max: usize,
}

impl<D: Driver> Phy<D> {
    pub fn new(driver: D, waker: Waker, counters: Arc<CounterCells>) -> Self {
        let frame_max = driver.mtu() + ETHERNET_HEADER;
        Phy {
            driver,
            waker,
            counters,
            refusing: Vec::new(),
            connections: Vec::new(),
            evict: None,
            held: Vec::new(),
            holding: false,
            skipped: false,
            tx_blocked: false,
            frame_max,
        }
    }

    /// A transmit token from the driver, or `None` (noted as backpressure).
    fn tx<'a>(
        driver: &'a mut D,
        waker: &Waker,
        counters: &CounterCells,
        tx_blocked: &mut bool,
    ) -> Option<D::TxToken<'a>> {
        let token = driver.transmit(waker);
        if token.is_none() {
            add(&counters.tx_backpressure, 1);
            *tx_blocked = true;
        }
        token
    }
}

/// The adapter's decision on a received frame.
enum Verdict {
    /// To smoltcp.
    Pass,
    /// Dropped (counted).
    Drop,
    /// A SYN to this port, copied into `held`, for smoltcp once the runner made room.
    Held(Option<u16>),
}

/// What to do with a received frame before smoltcp sees it: counts it, and copies a
/// SYN that must wait into `held`.
fn judge(
    frame: &[u8],
    counters: &CounterCells,
    refusing: &[(u16, Refusal)],
    connections: &[Tuple],
    frame_max: usize,
    held: &mut Vec<u8>,
) -> Verdict {
    let length = frame.len();
    add(&counters.frames_in, 1);
    add(&counters.bytes_in, length as u64);
    if !(ETHERNET_HEADER..=frame_max).contains(&length) {
        add(&counters.rx_malformed, 1);
        return Verdict::Drop;
    }
    let syn = syn_tuple(frame);
    if syn.is_some_and(|tuple| connections.contains(&tuple)) {
        add(&counters.duplicate_syn, 1);
        return Verdict::Drop;
    }
    match refused_syn(frame, refusing) {
        Some(Refusal::Backlog) => add(&counters.refused_backlog, 1),
        Some(Refusal::NoMemory) => add(&counters.refused_no_memory, 1),
        Some(Refusal::HalfOpen) => {
            held.clear();
            if held.try_reserve(length).is_err() {
                // No memory to hold it: as for a connection without buffers.
                add(&counters.refused_no_memory, 1);
                return Verdict::Drop;
            }
            held.extend_from_slice(frame);
            return Verdict::Held(syn.map(|tuple| tuple.local_port));
        }
        None => {}
    }
    Verdict::Pass
}

impl<D: Driver> phy::Device for Phy<D> {
    type RxToken<'a>
        = RxToken<'a, D>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, D>
    where
        Self: 'a;

    fn receive(&mut self, _now: SmolInstant) -> Option<(RxToken<'_, D>, TxToken<'_, D>)> {
        if self.evict.is_some() {
            // The runner has not made room yet: hold on to the SYN.
            return None;
        }
        if self.holding {
            // The held SYN, now that its port has room (or, if the room went, for
            // smoltcp to refuse).
            let tx = Self::tx(
                &mut self.driver,
                &self.waker,
                &self.counters,
                &mut self.tx_blocked,
            )?;
            self.holding = false;
            let rx = RxToken::Held(&self.held);
            return Some((rx, TxToken::new(tx, &self.counters)));
        }
        // A frame comes only with a transmit token (the driver waits for both): a reply
        // never lacks room.
        let (rx, tx) = self.driver.receive(&self.waker)?;
        let verdict = judge(
            rx.frame(),
            &self.counters,
            &self.refusing,
            &self.connections,
            self.frame_max,
            &mut self.held,
        );
        match verdict {
            Verdict::Pass => Some((RxToken::Lent(rx), TxToken::new(tx, &self.counters))),
            Verdict::Drop => {
                self.skipped = true;
                None
            }
            Verdict::Held(port) => {
                self.holding = true;
                self.evict = port;
                None
            }
        }
    }

    fn transmit(&mut self, _now: SmolInstant) -> Option<TxToken<'_, D>> {
        let tx = Self::tx(
            &mut self.driver,
            &self.waker,
            &self.counters,
            &mut self.tx_blocked,
        )?;
        Some(TxToken::new(tx, &self.counters))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.frame_max;
        caps
    }
}

/// The refusal that applies to `frame` if it is a TCP SYN (without ACK) over IPv4 to a
/// port in `refusing`. Anything unparsable is left for smoltcp to judge.
fn refused_syn(frame: &[u8], refusing: &[(u16, Refusal)]) -> Option<Refusal> {
    if refusing.is_empty() || frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[ETHERNET_HEADER..];
    let header = usize::from(ip.first()? & 0x0f) * 4;
    if *ip.get(9)? != 6 {
        return None;
    }
    let tcp = ip.get(header..)?;
    let port = u16::from_be_bytes([*tcp.get(2)?, *tcp.get(3)?]);
    let flags = *tcp.get(13)?;
    let (syn, ack) = (0x02, 0x10);
    if flags & (syn | ack) != syn {
        return None;
    }
    refusing
        .iter()
        .find(|(refused, _)| *refused == port)
        .map(|(_, why)| *why)
}

/// The tuple a TCP SYN (without ACK) over IPv4 carries, seen from our side; `None` for
/// anything else, unparsable frames included (smoltcp judges those).
fn syn_tuple(frame: &[u8]) -> Option<Tuple> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[ETHERNET_HEADER..];
    let header = usize::from(ip.first()? & 0x0f) * 4;
    if *ip.get(9)? != 6 {
        return None;
    }
    let source = ip.get(12..16)?;
    let tcp = ip.get(header..)?;
    let flags = *tcp.get(13)?;
    let (syn, ack) = (0x02, 0x10);
    if flags & (syn | ack) != syn {
        return None;
    }
    Some(Tuple {
        remote: [source[0], source[1], source[2], source[3]],
        remote_port: u16::from_be_bytes([*tcp.first()?, *tcp.get(1)?]),
        local_port: u16::from_be_bytes([*tcp.get(2)?, *tcp.get(3)?]),
    })
}

/// A received frame for smoltcp: in the device's buffer, or the held SYN.
pub(crate) enum RxToken<'a, D: Driver + 'a> {
    Lent(D::RxToken<'a>),
    Held(&'a [u8]),
}

impl<D: Driver> phy::RxToken for RxToken<'_, D> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        // A lent buffer goes back to the device when the driver's token drops, here.
        match self {
            RxToken::Lent(token) => f(token.frame()),
            RxToken::Held(frame) => f(frame),
        }
    }
}

/// Room for one frame in a free transmit descriptor. smoltcp keeps frames within
/// `capabilities`, so `len` is within the driver's contract.
pub(crate) struct TxToken<'a, D: Driver + 'a> {
    token: D::TxToken<'a>,
    counters: &'a CounterCells,
}

impl<'a, D: Driver> TxToken<'a, D> {
    fn new(token: D::TxToken<'a>, counters: &'a CounterCells) -> Self {
        TxToken { token, counters }
    }
}

impl<D: Driver> phy::TxToken for TxToken<'_, D> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        add(&self.counters.frames_out, 1);
        add(&self.counters.bytes_out, len as u64);
        self.token.consume(len, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn_frame(port: u16, flags: u8) -> Vec<u8> {
        let mut frame = vec![0u8; 14 + 20 + 20];
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        frame[14] = 0x45;
        frame[14 + 9] = 6;
        frame[34 + 2..34 + 4].copy_from_slice(&port.to_be_bytes());
        frame[34 + 13] = flags;
        frame
    }

    #[test]
    fn spots_syns_to_refusing_ports_only() {
        let refusing = [(80, Refusal::Backlog), (81, Refusal::NoMemory)];
        assert_eq!(
            refused_syn(&syn_frame(80, 0x02), &refusing),
            Some(Refusal::Backlog)
        );
        assert_eq!(
            refused_syn(&syn_frame(81, 0x02), &refusing),
            Some(Refusal::NoMemory)
        );
        assert_eq!(refused_syn(&syn_frame(82, 0x02), &refusing), None);
        assert_eq!(
            refused_syn(&syn_frame(80, 0x12), &refusing),
            None,
            "SYN-ACK"
        );
        assert_eq!(refused_syn(&syn_frame(80, 0x10), &refusing), None, "ACK");
        assert_eq!(
            refused_syn(&syn_frame(80, 0x02)[..40], &refusing),
            None,
            "cut"
        );
    }
}
