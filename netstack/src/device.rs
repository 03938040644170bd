//! The adapter from the callback-shaped [`Driver`] to smoltcp's token-based `phy::Device`.
//!
//! Two small buffers make the shapes meet without losing a frame:
//!
//! - **Receive**: smoltcp asks for a token before it reads, the driver lends a frame
//!   only during a callback, so the frame is copied once into `rx`.
//! - **Transmit**: smoltcp fills a frame after taking a token, and only the driver knows
//!   whether a descriptor is free. A token is handed out while no frame is stashed; if
//!   the driver then refuses (it has registered the runner's waker), smoltcp's frame is
//!   written to `stash` instead and sent first, before any new token, once the driver
//!   has room. So backpressure delays frames but never drops them.
//!
//! The adapter also counts frames and spots SYNs to ports whose listener has no
//! listening socket (backlog full, or no memory), which smoltcp answers with RST.

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::task::Waker;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant as SmolInstant;

use crate::counters::{CounterCells, add};
use crate::driver::Driver;

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

/// The runner's side of the device: the driver plus the two buffers described above.
pub(crate) struct Phy<D> {
    pub driver: D,
    pub waker: Waker,
    pub counters: Arc<CounterCells>,
    /// Ports whose SYNs are refused, kept current by the runner between frames.
    pub refusing: Vec<(u16, Refusal)>,
    /// Every TCP connection's tuple, kept current by the runner between frames: a SYN
    /// for one of them is dropped (see `runner::note_connections`).
    pub connections: Vec<Tuple>,
    /// A SYN to this port is held (in `rx`, [`held`](Self::held) bytes) until the runner
    /// has dropped the port's oldest half-open connection and made a listening socket.
    pub evict: Option<u16>,
    held: Option<usize>,
    /// Set when the driver refused a frame during this poll.
    pub tx_blocked: bool,
    rx: Vec<u8>,
    stash: Vec<u8>,
    stashed: Option<usize>,
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
            held: None,
            tx_blocked: false,
            rx: vec![0; frame_max],
            stash: vec![0; frame_max],
            stashed: None,
            frame_max,
        }
    }

    /// Sends the stashed frame, if any. `false`: the driver is still full.
    fn flush_stash(&mut self) -> bool {
        let Some(len) = self.stashed else {
            return true;
        };
        let stash = &self.stash[..len];
        let sent = self.driver.transmit(&self.waker, len, &mut |buffer| {
            let n = buffer.len().min(len);
            buffer[..n].copy_from_slice(&stash[..n]);
        });
        if sent {
            self.stashed = None;
            add(&self.counters.frames_out, 1);
            add(&self.counters.bytes_out, len as u64);
        } else {
            self.tx_blocked = true;
        }
        sent
    }

    /// The tokens for the frame in `rx[..length]`.
    fn tokens(&mut self, length: usize) -> (RxToken<'_>, TxToken<'_, D>) {
        let rx = RxToken {
            frame: &self.rx[..length],
        };
        let tx = TxToken {
            driver: &mut self.driver,
            waker: &self.waker,
            counters: &self.counters,
            stash: &mut self.stash,
            stashed: &mut self.stashed,
            tx_blocked: &mut self.tx_blocked,
        };
        (rx, tx)
    }

    fn tx_token(&mut self) -> TxToken<'_, D> {
        TxToken {
            driver: &mut self.driver,
            waker: &self.waker,
            counters: &self.counters,
            stash: &mut self.stash,
            stashed: &mut self.stashed,
            tx_blocked: &mut self.tx_blocked,
        }
    }
}

impl<D: Driver> phy::Device for Phy<D> {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, D>
    where
        Self: 'a;

    fn receive(&mut self, _now: SmolInstant) -> Option<(RxToken<'_>, TxToken<'_, D>)> {
        // A reply may need the transmit side: wait for the driver to drain first (its
        // completion wakes the runner, which then receives).
        if !self.flush_stash() {
            return None;
        }
        if self.evict.is_some() {
            // The runner has not made room yet: hold on to the SYN.
            return None;
        }
        loop {
            if let Some(length) = self.held.take() {
                // The held SYN, now that its port has room (or, if the room went, for
                // smoltcp to refuse).
                return Some(self.tokens(length));
            }
            let mut length = None;
            let rx = &mut self.rx;
            let ready = self.driver.receive(&self.waker, &mut |frame| {
                length = Some(frame.len());
                if (ETHERNET_HEADER..=rx.len()).contains(&frame.len()) {
                    rx[..frame.len()].copy_from_slice(frame);
                }
            });
            if !ready {
                return None;
            }
            // A driver that says "ready" without calling back broke the contract: wait
            // for its next wake rather than spin.
            let length = length?;
            add(&self.counters.frames_in, 1);
            add(&self.counters.bytes_in, length as u64);
            if !(ETHERNET_HEADER..=self.frame_max).contains(&length) {
                add(&self.counters.rx_malformed, 1);
                continue;
            }
            let syn = syn_tuple(&self.rx[..length]);
            if syn.is_some_and(|tuple| self.connections.contains(&tuple)) {
                add(&self.counters.duplicate_syn, 1);
                continue;
            }
            if let Some(why) = refused_syn(&self.rx[..length], &self.refusing) {
                let cell = match why {
                    Refusal::Backlog => &self.counters.refused_backlog,
                    Refusal::NoMemory => &self.counters.refused_no_memory,
                    Refusal::HalfOpen => {
                        self.held = Some(length);
                        self.evict = syn_tuple(&self.rx[..length]).map(|tuple| tuple.local_port);
                        return None;
                    }
                };
                add(cell, 1);
            }
            return Some(self.tokens(length));
        }
    }

    fn transmit(&mut self, _now: SmolInstant) -> Option<TxToken<'_, D>> {
        if self.flush_stash() {
            Some(self.tx_token())
        } else {
            None
        }
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

/// A received frame, copied out of the driver.
pub(crate) struct RxToken<'a> {
    frame: &'a [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

/// Room for one frame: in a driver descriptor, or else in the stash.
pub(crate) struct TxToken<'a, D> {
    driver: &'a mut D,
    waker: &'a Waker,
    counters: &'a CounterCells,
    stash: &'a mut Vec<u8>,
    stashed: &'a mut Option<usize>,
    tx_blocked: &'a mut bool,
}

impl<D: Driver> phy::TxToken for TxToken<'_, D> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut f = Some(f);
        let mut result = None;
        let sent = self.driver.transmit(self.waker, len, &mut |buffer| {
            if let Some(f) = f.take() {
                result = Some(f(buffer));
            }
        });
        match (sent, result) {
            (true, Some(result)) => {
                add(&self.counters.frames_out, 1);
                add(&self.counters.bytes_out, len as u64);
                result
            }
            (_, result) => {
                // Refused (the driver registered the waker): keep the frame for later.
                // `f` is still here unless the driver broke the contract by calling it
                // and refusing; then the frame is lost, as if dropped on the wire.
                add(&self.counters.tx_backpressure, 1);
                *self.tx_blocked = true;
                match (f.take(), result) {
                    (Some(f), _) => {
                        if self.stash.len() < len {
                            self.stash.resize(len, 0);
                        }
                        *self.stashed = Some(len);
                        f(&mut self.stash[..len])
                    }
                    (None, Some(result)) => result,
                    (None, None) => unreachable!("the closure ran or is still here"),
                }
            }
        }
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
