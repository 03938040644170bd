//! DHCP: a fake server answers the stack's DISCOVER and REQUEST; the interface gets the
//! address, the default route and the DNS server.

mod common;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use common::*;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    DhcpMessageType, DhcpPacket, DhcpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};
use torito_netstack::{Config, Duration, Ipv4Address, Ipv4Cidr, StaticConfig};

const SERVER: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);
const CLIENT: Ipv4Address = Ipv4Address::new(10, 0, 2, 15);
const DNS: Ipv4Address = Ipv4Address::new(10, 0, 2, 3);
const SERVER_MAC: EthernetAddress = EthernetAddress([0x52, 0x55, 0x0a, 0, 2, 2]);

/// The reply (OFFER to DISCOVER, ACK to REQUEST) to a client frame, if it is DHCP.
fn answer(frame: &[u8]) -> Option<(DhcpMessageType, Vec<u8>)> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    if ethernet.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(ethernet.payload()).ok()?;
    if ip.next_header() != IpProtocol::Udp {
        return None;
    }
    let udp = UdpPacket::new_checked(ip.payload()).ok()?;
    if udp.dst_port() != 67 {
        return None;
    }
    let request_packet = DhcpPacket::new_checked(udp.payload()).ok()?;
    let request = DhcpRepr::parse(&request_packet).ok()?;
    let message_type = match request.message_type {
        DhcpMessageType::Discover => DhcpMessageType::Offer,
        DhcpMessageType::Request => DhcpMessageType::Ack,
        _ => return None,
    };
    let mut reply = DhcpRepr {
        message_type,
        transaction_id: request.transaction_id,
        secs: 0,
        client_hardware_address: request.client_hardware_address,
        client_ip: Ipv4Address::UNSPECIFIED,
        your_ip: CLIENT,
        server_ip: SERVER,
        router: Some(SERVER),
        subnet_mask: Some(Ipv4Address::new(255, 255, 255, 0)),
        relay_agent_ip: Ipv4Address::UNSPECIFIED,
        broadcast: false,
        requested_ip: None,
        client_identifier: None,
        server_identifier: Some(SERVER),
        parameter_request_list: None,
        dns_servers: Some(Default::default()),
        max_size: None,
        lease_duration: Some(3600),
        renew_duration: None,
        rebind_duration: None,
        additional_options: &[],
    };
    reply.dns_servers.as_mut()?.push(DNS).ok()?;

    let dhcp_len = reply.buffer_len();
    let udp_len = 8 + dhcp_len;
    let ip_repr = Ipv4Repr {
        src_addr: SERVER,
        dst_addr: Ipv4Address::BROADCAST,
        next_header: IpProtocol::Udp,
        payload_len: udp_len,
        hop_limit: 64,
    };
    let mut out = vec![0u8; 14 + 20 + udp_len];
    let mut ethernet = EthernetFrame::new_unchecked(&mut out[..]);
    EthernetRepr {
        src_addr: SERVER_MAC,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut ethernet);
    let mut ip = Ipv4Packet::new_unchecked(ethernet.payload_mut());
    ip_repr.emit(&mut ip, &ChecksumCapabilities::default());
    let mut udp = UdpPacket::new_unchecked(ip.payload_mut());
    UdpRepr {
        src_port: 67,
        dst_port: 68,
    }
    .emit(
        &mut udp,
        &IpAddress::Ipv4(SERVER),
        &IpAddress::Ipv4(Ipv4Address::BROADCAST),
        dhcp_len,
        |payload| reply.emit(&mut DhcpPacket::new_unchecked(payload)).unwrap(),
        &ChecksumCapabilities::default(),
    );
    Some((message_type, out))
}

#[test]
fn dhcp_configures_address_route_and_dns() {
    let mut net = Net::with_configs(Faults::none(), Config::default(), static_config(IP_B));
    assert_eq!(net.a.ipv4_config(), None);
    let stack = net.a.clone();
    let mut up = pin!(stack.wait_config_up());
    let mut cx = Context::from_waker(Waker::noop());
    let mut answered = Vec::new();
    let mut config = None;
    for _ in 0..200 {
        if let Poll::Ready(got) = up.as_mut().poll(&mut cx) {
            config = Some(got);
            break;
        }
        net.runner_a.poll(net.now);
        let frames = net.wire.lock().unwrap().take(1);
        for frame in frames {
            if let Some((kind, reply)) = answer(&frame) {
                answered.push(kind);
                net.wire.lock().unwrap().inject(0, reply);
            }
        }
        net.now += Duration::from_millis(10);
        let now = net.now;
        net.wire.lock().unwrap().set_now(now);
    }
    assert_eq!(answered, [DhcpMessageType::Offer, DhcpMessageType::Ack]);
    let expected = StaticConfig {
        address: Ipv4Cidr::new(CLIENT, 24),
        gateway: Some(SERVER),
        dns: Some(DNS),
    };
    assert_eq!(config, Some(expected));
    assert_eq!(net.a.ipv4_config(), Some(expected));
}
