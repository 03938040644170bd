//! edge-nal 0.7's traits on Torito's stack: bind, accept (several acceptors at once),
//! connect, split, shutdown and abort; UDP bind, send, receive, readable, split.

mod common;

use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use common::*;
use edge_nal::{
    Close, MulticastV4, Readable, TcpAccept, TcpBind, TcpConnect, TcpShutdown, TcpSplit, UdpBind,
    UdpReceive, UdpSend, UdpSplit,
};
use torito_netstack::{Duration, Error};

const ANY: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

#[test]
fn tcp_bind_accept_connect_split_close() {
    let mut net = Net::new(Faults::none());
    let (a, b) = (net.a.clone(), net.b.clone());
    let acceptor = net.run(10, TcpBind::bind(&b, addr(ANY, 80))).unwrap();
    let ((peer, mut server), client) = {
        let (accepted, client) = net.run(
            20_000,
            join(
                TcpAccept::accept(&acceptor),
                TcpConnect::connect(&a, addr(IP_B, 80)),
            ),
        );
        (accepted.unwrap(), client.unwrap())
    };
    let mut client = client;
    assert_eq!(peer, client.local_addr().unwrap());

    net.run(20_000, client.write_all(b"GET / HTTP/1.1\r\n\r\n"))
        .unwrap();
    net.run(20_000, Readable::readable(&mut server)).unwrap();
    let (mut reader, mut writer) = TcpSplit::split(&mut server);
    let mut buffer = [0u8; 64];
    let n = net.run(20_000, reader.read(&mut buffer)).unwrap();
    assert_eq!(&buffer[..n], b"GET / HTTP/1.1\r\n\r\n");
    net.run(20_000, writer.write_all(b"HTTP/1.1 200 OK\r\n\r\n"))
        .unwrap();
    net.run(20_000, TcpShutdown::close(&mut server, Close::Write))
        .unwrap();
    let mut received = Vec::new();
    loop {
        let n = net.run(20_000, client.read(&mut buffer)).unwrap();
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buffer[..n]);
    }
    assert_eq!(received, b"HTTP/1.1 200 OK\r\n\r\n");
    // Close::Both waits until our FIN is acknowledged.
    net.run(20_000, TcpShutdown::close(&mut server, Close::Both))
        .unwrap();
}

#[test]
fn tcp_abort_resets_the_peer() {
    let mut net = Net::new(Faults::none());
    let (a, b) = (net.a.clone(), net.b.clone());
    let acceptor = net.run(10, TcpBind::bind(&b, addr(ANY, 80))).unwrap();
    let (accepted, client) = net.run(
        20_000,
        join(
            TcpAccept::accept(&acceptor),
            TcpConnect::connect(&a, addr(IP_B, 80)),
        ),
    );
    let (_, mut server) = accepted.unwrap();
    let mut client = client.unwrap();
    net.run(10, TcpShutdown::abort(&mut server)).unwrap();
    let mut buffer = [0u8; 4];
    assert_eq!(
        net.run(20_000, client.read(&mut buffer)),
        Err(Error::ConnectionReset)
    );
}

/// Two tasks accept on one listener at once (edge-http's server does this with its
/// handlers): each of two clients is accepted by one of them, neither waits for ever.
#[test]
fn two_acceptors_on_one_listener() {
    let Sim { executor, a, b, .. } = Sim::from_net(Net::new(Faults::none()));
    let acceptor: &'static torito_netstack::TcpListener = Box::leak(Box::new(
        executor.block_on(TcpBind::bind(&b, addr(ANY, 80))).unwrap(),
    ));
    let first = executor.spawn(async move { TcpAccept::accept(acceptor).await.unwrap().0 });
    let second = executor.spawn(async move { TcpAccept::accept(acceptor).await.unwrap().0 });
    // A forgotten acceptor would wait for ever (simulated time runs on keep-alives).
    let peers = executor.block_on(torito_executor::timeout(Duration::from_secs(60), async {
        let one = TcpConnect::connect(&a, addr(IP_B, 80)).await.unwrap();
        let two = TcpConnect::connect(&a, addr(IP_B, 80)).await.unwrap();
        let mut peers = [first.await, second.await];
        peers.sort();
        let mut expected = [one.local_addr().unwrap(), two.local_addr().unwrap()];
        expected.sort();
        assert_eq!(peers, expected);
        peers
    }));
    let peers = peers.expect("an acceptor was never woken");
    assert_ne!(peers[0], peers[1]);
}

#[test]
fn ipv6_is_refused() {
    let mut net = Net::new(Faults::none());
    let b = net.b.clone();
    let v6 = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 80, 0, 0));
    assert!(matches!(
        net.run(10, TcpBind::bind(&b, v6)),
        Err(Error::Unaddressable)
    ));
    assert!(matches!(
        net.run(10, UdpBind::bind(&b, v6)),
        Err(Error::Unaddressable)
    ));
}

#[test]
fn udp_bind_send_receive_split() {
    let mut net = Net::new(Faults::none());
    let (a, b) = (net.a.clone(), net.b.clone());
    let mut server = net.run(10, UdpBind::bind(&b, addr(ANY, 53))).unwrap();
    let mut client = net.run(10, UdpBind::bind(&a, addr(ANY, 0))).unwrap();
    net.run(20_000, client.send(addr(IP_B, 53), b"query"))
        .unwrap();
    net.run(20_000, Readable::readable(&mut server)).unwrap();
    let (mut receive, mut send) = UdpSplit::split(&mut server);
    let mut buffer = [0u8; 16];
    let (n, from) = net.run(20_000, receive.receive(&mut buffer)).unwrap();
    assert_eq!(&buffer[..n], b"query");
    assert_eq!(from.ip(), IP_A);
    net.run(20_000, send.send(from, b"answer")).unwrap();
    let (n, from) = net.run(20_000, client.receive(&mut buffer)).unwrap();
    assert_eq!((&buffer[..n], from), (&b"answer"[..], addr(IP_B, 53)));
    assert_eq!(
        net.run(10, client.join_v4(Ipv4Addr::new(224, 0, 0, 251), ANY)),
        Err(Error::Unsupported { what: "multicast" })
    );
}
