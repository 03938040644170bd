//! `TcpStream::split` / `into_split` (async and blocking): both halves waiting at once,
//! shutdown through the write half, dropping one half.

mod common;

use std::cell::RefCell;

use common::*;
use torito_netstack::{Error, TcpListener, TcpStream};

fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i * 13 + i / 253) as u8).collect()
}

async fn read_to_len<R: embedded_io_async::Read>(reader: &mut R, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    let mut filled = 0;
    while filled < len {
        let n = reader.read(&mut out[filled..]).await.unwrap();
        assert_ne!(n, 0, "early end of stream after {filled} of {len} bytes");
        filled += n;
    }
    out
}

/// The server reads on one half while it writes far more than the buffers hold on the
/// other; the client sends only after it has read everything. Without two halves in
/// flight at once (and a wake for each) this deadlocks: the simulated platform panics
/// when it idles with no work and no timer, so a lost wake fails the test too.
#[test]
fn both_halves_in_flight_at_once() {
    let Sim { executor, a, b, .. } = Sim::from_net(Net::new(Faults::none()));
    let listener = TcpListener::bind(&b, 7, 1).unwrap();
    let big = pattern(300_000);
    let small = pattern(50_000);
    let server = {
        let (big, small) = (big.clone(), small.clone());
        executor.spawn(async move {
            let mut stream = listener.accept().await.unwrap();
            let (mut reader, mut writer) = stream.split();
            let (received, ()) = join(read_to_len(&mut reader, small.len()), async {
                writer.write_all(&big).await.unwrap();
                writer.flush().await.unwrap();
            })
            .await;
            assert!(received == small, "server read differs");
            stream.close().await.unwrap();
        })
    };
    executor.block_on(async {
        let mut client = TcpStream::connect(&a, addr(IP_B, 7)).await.unwrap();
        let received = read_to_len(&mut client, big.len()).await;
        assert!(received == big, "client read differs");
        client.write_all(&small).await.unwrap();
        let mut rest = [0u8; 4];
        assert_eq!(client.read(&mut rest).await.unwrap(), 0, "server closed");
        server.await;
    });
}

/// The write half's shutdown sends a FIN (the peer reads the end) while the read half
/// goes on reading; writing afterwards is refused.
#[test]
fn write_half_shutdown_keeps_the_read_half() {
    let mut net = Net::new(Faults::none());
    let listener = TcpListener::bind(&net.b, 7, 1).unwrap();
    let a = net.a.clone();
    let (client, server) = net.run(
        20_000,
        join(TcpStream::connect(&a, addr(IP_B, 7)), listener.accept()),
    );
    let (mut client, mut server) = (client.unwrap(), server.unwrap());
    let (mut reader, mut writer) = server.split();
    writer.shutdown();
    assert_eq!(
        net.run(20_000, writer.write(b"late")),
        Err(Error::InvalidState)
    );
    let mut buffer = [0u8; 16];
    assert_eq!(net.run(20_000, client.read(&mut buffer)), Ok(0));
    net.run(20_000, client.write_all(b"after fin")).unwrap();
    let n = net.run(20_000, reader.read(&mut buffer)).unwrap();
    assert_eq!(&buffer[..n], b"after fin");
}

/// Owned halves: dropping the read half leaves the write half working; dropping the
/// write half too closes the connection (the peer reads the end).
#[test]
fn dropping_one_owned_half_leaves_the_other() {
    let mut net = Net::new(Faults::none());
    let listener = TcpListener::bind(&net.b, 7, 1).unwrap();
    let a = net.a.clone();
    let (client, server) = net.run(
        20_000,
        join(TcpStream::connect(&a, addr(IP_B, 7)), listener.accept()),
    );
    let mut client = client.unwrap();
    let (reader, mut writer) = server.unwrap().into_split();
    drop(reader);
    net.run(20_000, writer.write_all(b"still here")).unwrap();
    let mut buffer = [0u8; 16];
    let n = net.run(20_000, client.read(&mut buffer)).unwrap();
    assert_eq!(&buffer[..n], b"still here");
    assert_eq!(
        net.b.counters().active,
        1,
        "one half still holds the stream"
    );
    drop(writer);
    assert_eq!(net.run(20_000, client.read(&mut buffer)), Ok(0));
}

/// The read half reports a reset as the stream does.
#[test]
fn read_half_sees_a_reset() {
    let mut net = Net::new(Faults::none());
    let listener = TcpListener::bind(&net.b, 7, 1).unwrap();
    let a = net.a.clone();
    let (client, server) = net.run(
        20_000,
        join(TcpStream::connect(&a, addr(IP_B, 7)), listener.accept()),
    );
    let mut server = server.unwrap();
    let (mut reader, _writer) = server.split();
    client.unwrap().abort();
    let mut buffer = [0u8; 4];
    assert_eq!(
        net.run(20_000, reader.read(&mut buffer)),
        Err(Error::ConnectionReset)
    );
}

/// The blocking wrapper's halves: a write on one and a read on the other, with the
/// embedded-io (blocking) traits, then shutdown through the write half.
#[test]
fn blocking_split() {
    use embedded_io::{Read, Write};
    use torito_netstack::blocking;

    let mut net = Net::new(Faults::none());
    let (a, b) = (net.a.clone(), net.b.clone());
    let pump = Pump(RefCell::new(&mut net));
    let mut listener = blocking::TcpListener::bind(&b, 7, 1, &pump).unwrap();
    let mut client = blocking::TcpStream::connect(&a, addr(IP_B, 7), &pump).unwrap();
    let mut server = listener.accept().unwrap();
    {
        let (mut reader, mut writer) = server.split();
        Write::write_all(&mut writer, b"ping").unwrap();
        let mut buffer = [0u8; 4];
        client.read_exact(&mut buffer).unwrap();
        assert_eq!(&buffer, b"ping");
        Write::write_all(&mut client, b"pong").unwrap();
        reader.read_exact(&mut buffer).unwrap();
        assert_eq!(&buffer, b"pong");
        writer.shutdown();
        assert_eq!(Write::write(&mut writer, b"x"), Err(Error::InvalidState));
    }
    let mut buffer = [0u8; 4];
    assert_eq!(blocking::TcpStream::read(&mut client, &mut buffer), Ok(0));
    let (mut reader, _writer) = server.into_split();
    Write::write_all(&mut client, b"last").unwrap();
    reader.read_exact(&mut buffer).unwrap();
    assert_eq!(&buffer, b"last");
}
