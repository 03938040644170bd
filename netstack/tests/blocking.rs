//! The blocking wrappers, parked by a host `Park` that pumps the network.

mod common;

use std::cell::RefCell;

use common::*;
use embedded_io::{Read, Write};
use torito_netstack::blocking::{TcpListener, TcpStream, UdpSocket};

#[test]
fn blocking_tcp_and_udp() {
    let mut net = Net::new(Faults::none());
    let (a, b) = (net.a.clone(), net.b.clone());
    let pump = Pump(RefCell::new(&mut net));

    let mut listener = TcpListener::bind(&b, 7, 1, &pump).unwrap();
    let mut client = TcpStream::connect(&a, addr(IP_B, 7), &pump).unwrap();
    let mut server = listener.accept().unwrap();
    Write::write_all(&mut client, b"blocking hello").unwrap();
    let mut buffer = [0u8; 14];
    server.read_exact(&mut buffer).unwrap();
    assert_eq!(&buffer, b"blocking hello");
    server.write_all(b"bye").unwrap();
    server.close().unwrap();
    let mut rest = Vec::new();
    let mut chunk = [0u8; 8];
    loop {
        let n = TcpStream::read(&mut client, &mut chunk).unwrap();
        if n == 0 {
            break;
        }
        rest.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(rest, b"bye");

    let udp_b = UdpSocket::bind(&b, 53, &pump).unwrap();
    let udp_a = UdpSocket::bind(&a, 0, &pump).unwrap();
    udp_a.send_to(b"query", addr(IP_B, 53)).unwrap();
    let mut datagram = [0u8; 16];
    let (n, _) = udp_b.recv_from(&mut datagram).unwrap();
    assert_eq!(&datagram[..n], b"query");
}

/// Where the caller cannot be parked, every blocking call says so instead of hanging.
#[test]
fn blocking_calls_where_parking_is_impossible_are_refused() {
    let net = Net::new(Faults::none());
    let (a, b) = (net.a.clone(), net.b.clone());
    let mut listener = TcpListener::bind(&b, 7, 1, &NoPark).unwrap();
    assert_eq!(
        listener.accept().err(),
        Some(torito_netstack::Error::WouldBlockCore)
    );
    let connect = TcpStream::connect(&a, addr(IP_B, 7), &NoPark);
    assert_eq!(connect.err(), Some(torito_netstack::Error::WouldBlockCore));
    let udp = UdpSocket::bind(&a, 0, &NoPark).unwrap();
    let mut datagram = [0u8; 4];
    assert_eq!(
        udp.recv_from(&mut datagram).err(),
        Some(torito_netstack::Error::WouldBlockCore)
    );
}
