//! UDP between two stacks over the fake wire.

mod common;

use common::*;
use torito_netstack::{Duration, Error, UdpSocket};

#[test]
fn datagrams_round_trip_with_sender_address() {
    let mut net = Net::new(Faults::none());
    let server = UdpSocket::bind(&net.b, 53).unwrap();
    let client = UdpSocket::bind(&net.a, 0).unwrap();
    let client_port = client.local_port();
    assert!(client_port >= 49152, "ephemeral port {client_port}");
    let (reply, from) = net.run(10_000, async {
        assert_eq!(client.send_to(b"ping", addr(IP_B, 53)).await, Ok(4));
        let mut buffer = [0u8; 64];
        let (n, from) = server.recv_from(&mut buffer).await.unwrap();
        assert_eq!(&buffer[..n], b"ping");
        assert_eq!(from, addr(IP_A, client_port));
        server.send_to(b"pong!", from).await.unwrap();
        let (n, from) = client.recv_from(&mut buffer).await.unwrap();
        (buffer[..n].to_vec(), from)
    });
    assert_eq!(reply, b"pong!");
    assert_eq!(from, addr(IP_B, 53));
}

#[test]
fn errors_for_size_port_and_timeout() {
    let mut net = Net::new(Faults::none());
    let mut socket = UdpSocket::bind(&net.a, 5000).unwrap();
    assert_eq!(
        UdpSocket::bind(&net.a, 5000).err(),
        Some(Error::AddressInUse { port: 5000 })
    );
    let big = vec![0u8; 1473];
    assert_eq!(
        net.run(10, socket.send_to(&big, addr(IP_B, 9))),
        Err(Error::MessageTooLarge {
            len: 1473,
            max: 1472
        })
    );
    // Socket timeouts are executor timers: wait as a torito task.
    let sim = Sim::from_net(net);
    socket.set_timeout(Some(Duration::from_millis(100)));
    let mut buffer = [0u8; 8];
    assert_eq!(
        sim.executor.block_on(socket.recv_from(&mut buffer)),
        Err(Error::TimedOut)
    );
    let count = sim.a.socket_count();
    drop(socket);
    assert_eq!(sim.a.socket_count(), count - 1);
}
