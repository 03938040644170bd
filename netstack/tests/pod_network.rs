//! Pod networks as Kubernetes CNIs build them: a `/32` address whose gateway
//! (Calico's 169.254.1.1) lies outside it, the node's side of the veth answering ARP for
//! every address (proxy ARP). The test plays the node on the wire's other side.
//!
//! What a user relies on: the node can resolve the pod's address (the node asks from an
//! address outside the `/32`), and the pod answers a client far away (its SYN-ACK goes
//! out to the node's MAC after the node answered the pod's ARP request).

mod common;

use common::raw::{Host, MAC_B, RawNet, parse_tcp, tcp};
use common::*;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Ipv4Address, Ipv4Cidr, TcpControl,
};
use torito_netstack::{Config, Ipv4Config, StaticConfig, TcpListener};

/// The node's side of the veth: its own address, and the MAC that answers for all.
const NODE: Host = Host {
    mac: [0xee, 0xee, 0xee, 0xee, 0xee, 0xee],
    ip: Ipv4Address::new(192, 168, 0, 10),
};
/// A client on another node: its frames arrive from the node's MAC.
const FAR: Host = Host {
    mac: NODE.mac,
    ip: Ipv4Address::new(203, 0, 113, 7),
};
const CALICO_GATEWAY: Ipv4Address = Ipv4Address::new(169, 254, 1, 1);

fn pod_config(prefix: u8, gateway: Ipv4Address) -> Config {
    Config {
        ipv4: Ipv4Config::Static(StaticConfig {
            address: Ipv4Cidr::new(IP_B, prefix),
            gateway: Some(gateway),
            dns: None,
        }),
        ..Config::default()
    }
}

/// Polls the stack until it has nothing more to do now; every frame it sent.
fn frames(net: &mut RawNet) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    for _ in 0..100 {
        let next = net.runner.poll(net.now);
        let frames = net.wire.lock().unwrap().take(0);
        let idle = frames.is_empty() && next.is_none_or(|at| at > net.now);
        sent.extend(frames);
        if idle {
            break;
        }
    }
    sent
}

/// The ARP packet in `frame`, if it holds one.
fn arp(frame: &[u8]) -> Option<ArpRepr> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    if ethernet.ethertype() != EthernetProtocol::Arp {
        return None;
    }
    ArpRepr::parse(&ArpPacket::new_checked(ethernet.payload()).ok()?).ok()
}

/// The node's proxy-ARP answer: `asked` is at the node's MAC.
fn proxy_reply(asked: Ipv4Address) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: EthernetAddress(NODE.mac),
        source_protocol_addr: asked,
        target_hardware_addr: EthernetAddress(MAC_B),
        target_protocol_addr: IP_B,
    };
    let ethernet = EthernetRepr {
        src_addr: EthernetAddress(NODE.mac),
        dst_addr: EthernetAddress(MAC_B),
        ethertype: EthernetProtocol::Arp,
    };
    let mut frame = vec![0; ethernet.buffer_len() + arp.buffer_len()];
    let mut packet = EthernetFrame::new_unchecked(&mut frame[..]);
    ethernet.emit(&mut packet);
    arp.emit(&mut ArpPacket::new_unchecked(packet.payload_mut()));
    frame
}

#[test]
fn node_resolves_a_slash_32_pod_from_outside_its_subnet() {
    let mut net = RawNet::new(pod_config(32, CALICO_GATEWAY));
    frames(&mut net);
    net.send(common::raw::arp_request(NODE, IP_B));
    let replies: Vec<_> = frames(&mut net).iter().filter_map(|f| arp(f)).collect();
    assert_eq!(
        replies,
        [ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: EthernetAddress(MAC_B),
            source_protocol_addr: IP_B,
            target_hardware_addr: EthernetAddress(NODE.mac),
            target_protocol_addr: NODE.ip,
        }],
        "the pod must answer the node's ARP request"
    );
    // The application still sees the configuration it was given.
    let config = net.stack.ipv4_config().unwrap();
    assert_eq!(config.address.prefix_len(), 32);
    assert_eq!(config.gateway, Some(CALICO_GATEWAY));
}

#[test]
fn slash_32_pod_answers_a_far_client_through_the_node() {
    let mut net = RawNet::new(pod_config(32, CALICO_GATEWAY));
    let _listener = TcpListener::bind(&net.stack, 80, 4).unwrap();
    frames(&mut net);
    // A SYN from a far client, routed by the node (no ARP from anyone first).
    net.send(tcp(FAR, 40000, 80, TcpControl::Syn, 1000, None, &[]));
    let sent = frames(&mut net);
    let asked: Vec<_> = sent
        .iter()
        .filter_map(|f| arp(f))
        .filter_map(|repr| match repr {
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Request,
                target_protocol_addr,
                ..
            } => Some(target_protocol_addr),
            _ => None,
        })
        .collect();
    assert_eq!(
        asked.len(),
        1,
        "one ARP request before the SYN-ACK: {asked:?}"
    );
    // The node answers it (proxy ARP), whatever address was asked.
    net.send(proxy_reply(asked[0]));
    let sent = frames(&mut net);
    let syn_ack = sent
        .iter()
        .find_map(|frame| {
            let segment = parse_tcp(frame)?;
            let destination = EthernetFrame::new_checked(&frame[..]).ok()?.dst_addr();
            Some((segment, destination))
        })
        .expect("a SYN-ACK after the node answered ARP");
    assert_eq!(syn_ack.0.control, TcpControl::Syn);
    assert_eq!(syn_ack.0.ack, Some(1001));
    assert_eq!(syn_ack.0.dst, FAR.ip);
    assert_eq!(syn_ack.1, EthernetAddress(NODE.mac));
}

#[test]
fn a_gateway_inside_the_subnet_keeps_routing_through_it() {
    // A /24 pod: far addresses go through the gateway, which is resolved, not the peer.
    let gateway = Ipv4Address::new(10, 0, 0, 1);
    let mut net = RawNet::new(pod_config(24, gateway));
    let _listener = TcpListener::bind(&net.stack, 80, 4).unwrap();
    frames(&mut net);
    net.send(tcp(FAR, 40000, 80, TcpControl::Syn, 1000, None, &[]));
    let asked: Vec<_> = frames(&mut net)
        .iter()
        .filter_map(|f| arp(f))
        .map(|repr| match repr {
            ArpRepr::EthernetIpv4 {
                target_protocol_addr,
                ..
            } => target_protocol_addr,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(asked, [gateway]);
}
