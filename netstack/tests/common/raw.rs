//! A raw peer: the test itself on the wire's other side, crafting Ethernet/ARP/IPv4/TCP
//! frames with smoltcp's wire module and reading the stack's replies. For what a real
//! stack would never send: SYNs whose handshake never completes, a SYN with an
//! established connection's ports.

use std::sync::{Arc, Mutex};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket,
    TcpRepr, TcpSeqNumber,
};
use torito_netstack::{Config, Duration, Instant, Runner, Stack};

use super::{FakeDriver, Faults, IP_B, Wire};

/// The stack's MAC on side 1 of the wire.
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

/// One host the test plays: its addresses.
#[derive(Clone, Copy)]
pub struct Host {
    pub mac: [u8; 6],
    pub ip: Ipv4Address,
}

pub const PEER: Host = Host {
    mac: [0x02, 0, 0, 0, 0, 0x33],
    ip: Ipv4Address::new(10, 0, 0, 3),
};

/// A TCP segment the stack sent, as the test sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub src_port: u16,
    pub dst_port: u16,
    pub dst: Ipv4Address,
    pub control: TcpControl,
    pub seq: u32,
    pub ack: Option<u32>,
    pub window: u16,
    pub payload: usize,
}

/// A stack on side 1 of a wire whose side 0 is the test.
pub struct RawNet {
    pub wire: Arc<Mutex<Wire>>,
    pub stack: Stack,
    pub runner: Runner<FakeDriver>,
    pub now: Instant,
}

impl RawNet {
    pub fn new(config: Config) -> RawNet {
        let wire = Wire::new(Faults::none());
        let driver = FakeDriver {
            side: 1,
            wire: wire.clone(),
        };
        let (stack, runner) = torito_netstack::new(driver, config, 2, Instant::ZERO);
        RawNet {
            wire,
            stack,
            runner,
            now: Instant::ZERO,
        }
    }

    /// Queues `frame` for the stack.
    pub fn send(&mut self, frame: Vec<u8>) {
        self.wire.lock().unwrap().inject(1, frame);
    }

    /// Polls the stack at the current time until it has nothing more to do now, and
    /// returns the TCP segments it sent (other frames are dropped).
    pub fn poll(&mut self) -> Vec<Segment> {
        let mut segments = Vec::new();
        for _ in 0..100 {
            let next = self.runner.poll(self.now);
            let frames = self.wire.lock().unwrap().take(0);
            let idle = frames.is_empty() && next.is_none_or(|at| at > self.now);
            segments.extend(frames.iter().filter_map(|frame| parse_tcp(frame)));
            if idle {
                break;
            }
        }
        segments
    }

    /// Moves time forward by `by` in steps of at most 100 ms, polling at each (so
    /// retransmissions and timers fire), and returns every segment sent meanwhile.
    pub fn advance(&mut self, by: Duration) -> Vec<Segment> {
        let end = self.now + by;
        let mut segments = Vec::new();
        while self.now < end {
            self.now = (self.now + Duration::from_millis(100)).min(end);
            let now = self.now;
            self.wire.lock().unwrap().set_now(now);
            segments.extend(self.poll());
        }
        segments
    }
}

/// An ARP request from `host` for `target`: the stack learns `host`'s MAC from it.
pub fn arp_request(host: Host, target: Ipv4Address) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(host.mac),
        source_protocol_addr: host.ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: target,
    };
    let ethernet = EthernetRepr {
        src_addr: EthernetAddress(host.mac),
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let mut frame = vec![0; ethernet.buffer_len() + arp.buffer_len()];
    let mut packet = EthernetFrame::new_unchecked(&mut frame[..]);
    ethernet.emit(&mut packet);
    arp.emit(&mut ArpPacket::new_unchecked(packet.payload_mut()));
    frame
}

/// A TCP segment from `host` to the stack (at `IP_B`), with checksums.
pub fn tcp(
    host: Host,
    src_port: u16,
    dst_port: u16,
    control: TcpControl,
    seq: u32,
    ack: Option<u32>,
    payload: &[u8],
) -> Vec<u8> {
    let destination = IP_B;
    let tcp = TcpRepr {
        src_port,
        dst_port,
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|ack| TcpSeqNumber(ack as i32)),
        window_len: 64_000,
        window_scale: None,
        max_seg_size: (control == TcpControl::Syn).then_some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    };
    let ip = Ipv4Repr {
        src_addr: host.ip,
        dst_addr: destination,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let ethernet = EthernetRepr {
        src_addr: EthernetAddress(host.mac),
        dst_addr: EthernetAddress(MAC_B),
        ethertype: EthernetProtocol::Ipv4,
    };
    let checksums = ChecksumCapabilities::default();
    let mut frame = vec![0; ethernet.buffer_len() + ip.buffer_len() + tcp.buffer_len()];
    let mut packet = EthernetFrame::new_unchecked(&mut frame[..]);
    ethernet.emit(&mut packet);
    let mut ip_packet = Ipv4Packet::new_unchecked(packet.payload_mut());
    ip.emit(&mut ip_packet, &checksums);
    tcp.emit(
        &mut TcpPacket::new_unchecked(ip_packet.payload_mut()),
        &IpAddress::Ipv4(host.ip),
        &IpAddress::Ipv4(destination),
        &checksums,
    );
    frame
}

/// The TCP segment in `frame`, if it holds one.
pub fn parse_tcp(frame: &[u8]) -> Option<Segment> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    if ethernet.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(ethernet.payload()).ok()?;
    if ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let (source, destination) = (ip.src_addr(), ip.dst_addr());
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    let repr = TcpRepr::parse(
        &tcp,
        &IpAddress::Ipv4(source),
        &IpAddress::Ipv4(destination),
        &ChecksumCapabilities::default(),
    )
    .ok()?;
    Some(Segment {
        src_port: repr.src_port,
        dst_port: repr.dst_port,
        dst: destination,
        control: repr.control,
        seq: repr.seq_number.0 as u32,
        ack: repr.ack_number.map(|ack| ack.0 as u32),
        window: repr.window_len,
        payload: repr.payload.len(),
    })
}
