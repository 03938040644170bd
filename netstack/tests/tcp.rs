//! TCP between two stacks over the fake wire, driven by `Runner::poll` with explicit
//! time.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::task::Waker;

use common::*;
use torito_executor::Clock;
use torito_netstack::{Duration, Error, TcpListener, TcpStream};

const STEPS: usize = 20_000;

/// Connects A to B's `port`, returning (client on A, server connection on B).
fn connect(net: &mut Net, listener: &mut TcpListener, port: u16) -> (TcpStream, TcpStream) {
    let a = net.a.clone();
    let (client, server) = net.run(
        STEPS,
        join(TcpStream::connect(&a, addr(IP_B, port)), listener.accept()),
    );
    (client.unwrap(), server.unwrap())
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i * 7 + i / 251) as u8).collect()
}

async fn read_exact(stream: &mut TcpStream, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    let mut filled = 0;
    while filled < len {
        let n = stream.read(&mut out[filled..]).await.unwrap();
        assert_ne!(n, 0, "early end of stream after {filled} of {len} bytes");
        filled += n;
    }
    out
}

#[test]
fn connect_accept_echo_bytes_exact() {
    let mut net = Net::new(Faults::none());
    let mut listener = TcpListener::bind(&net.b, 7, 4).unwrap();
    let (mut client, mut server) = connect(&mut net, &mut listener, 7);
    assert_eq!(client.peer_addr().unwrap(), addr(IP_B, 7));
    assert_eq!(server.local_addr().unwrap(), addr(IP_B, 7));
    assert_eq!(server.peer_addr().unwrap(), client.local_addr().unwrap());

    let message = pattern(40_000);
    let echo = async {
        let mut buffer = [0u8; 1000];
        let mut total = 0;
        loop {
            let n = server.read(&mut buffer).await.unwrap();
            if n == 0 {
                break;
            }
            server.write_all(&buffer[..n]).await.unwrap();
            total += n;
        }
        server.close().await.unwrap();
        total
    };
    let talk = async {
        let mut received = Vec::new();
        for chunk in message.chunks(3000) {
            client.write_all(chunk).await.unwrap();
            received.extend(read_exact(&mut client, chunk.len()).await);
        }
        client.shutdown();
        let mut rest = [0u8; 10];
        assert_eq!(client.read(&mut rest).await.unwrap(), 0, "server closed");
        received
    };
    let (echoed, received) = net.run(STEPS, join(echo, talk));
    assert_eq!(echoed, message.len());
    assert!(received == message, "echo differs from what was sent");
    let counters = net.b.counters();
    assert_eq!((counters.accepted, counters.active), (1, 1));
    assert_eq!(net.a.counters().connected, 1);
}

#[test]
fn half_close_is_read_as_end_while_other_direction_works() {
    let mut net = Net::new(Faults::none());
    let mut listener = TcpListener::bind(&net.b, 80, 1).unwrap();
    let (mut client, mut server) = connect(&mut net, &mut listener, 80);
    let result = net.run(STEPS, async {
        client.write_all(b"request").await.unwrap();
        client.shutdown();
        assert_eq!(client.write(b"more").await, Err(Error::InvalidState));
        let request = read_exact(&mut server, 7).await;
        let mut buffer = [0u8; 16];
        assert_eq!(server.read(&mut buffer).await.unwrap(), 0, "FIN seen as 0");
        // The server's direction still works after the client's FIN.
        server.write_all(b"response after FIN").await.unwrap();
        server.flush().await.unwrap();
        let response = read_exact(&mut client, 18).await;
        (request, response)
    });
    assert_eq!(result.0, b"request");
    assert_eq!(result.1, b"response after FIN");
}

#[test]
fn peer_reset_is_connection_reset() {
    let mut net = Net::new(Faults::none());
    let mut listener = TcpListener::bind(&net.b, 80, 1).unwrap();
    let (client, mut server) = connect(&mut net, &mut listener, 80);
    client.abort();
    let (read, write) = net.run(STEPS, async {
        let mut buffer = [0u8; 16];
        let read = server.read(&mut buffer).await;
        (read, server.write(b"x").await)
    });
    assert_eq!(read, Err(Error::ConnectionReset));
    assert_eq!(write, Err(Error::ConnectionReset));
}

#[test]
fn connect_to_closed_port_is_refused() {
    let mut net = Net::new(Faults::none());
    let a = net.a.clone();
    let result = net.run(STEPS, TcpStream::connect(&a, addr(IP_B, 9)));
    assert_eq!(result.err(), Some(Error::ConnectionRefused));
    net.step();
    assert_eq!(net.a.socket_count(), 0, "the refused socket is reaped");
    assert_eq!(net.a.counters().active, 0);
}

#[test]
fn full_backlog_refuses_with_reset_and_accepts_the_first_ones_later() {
    let mut net = Net::new(Faults::none());
    let listener = TcpListener::bind(&net.b, 80, 2).unwrap();
    let a = net.a.clone();
    let mut clients = Vec::new();
    for _ in 0..2 {
        let client = net.run(STEPS, TcpStream::connect(&a, addr(IP_B, 80)));
        clients.push(client.expect("within the backlog"));
    }
    for _ in 0..2 {
        let refused = net.run(STEPS, TcpStream::connect(&a, addr(IP_B, 80)));
        assert_eq!(refused.err(), Some(Error::ConnectionRefused));
    }
    assert_eq!(net.b.counters().refused_backlog, 2);
    // Memory in proportion to use: two pending connections, no listening socket.
    assert_eq!(net.b.socket_count(), 2);

    for (i, client) in clients.iter_mut().enumerate() {
        let (mut server, ()) = net.run(
            STEPS,
            join(listener.accept(), async {
                client.write_all(&[i as u8; 3]).await.unwrap();
            }),
        );
        let server = server.as_mut().unwrap();
        let got = net.run(STEPS, read_exact(server, 3));
        assert_eq!(got, [i as u8; 3]);
    }
    // With room in the backlog again, new connections are accepted.
    let (late, accepted) = net.run(
        STEPS,
        join(TcpStream::connect(&a, addr(IP_B, 80)), listener.accept()),
    );
    assert!(late.is_ok() && accepted.is_ok());
    assert_eq!(net.b.counters().accepted, 3);
}

#[test]
fn two_hundred_connections_leave_no_sockets_behind() {
    let mut net = Net::new(Faults::none());
    let mut listener = TcpListener::bind(&net.b, 80, 4).unwrap();
    let baseline = (net.a.socket_count(), net.b.socket_count());
    for i in 0..200u32 {
        let (mut client, mut server) = connect(&mut net, &mut listener, 80);
        let payload = i.to_be_bytes();
        let echoed = net.run(STEPS, async {
            client.write_all(&payload).await.unwrap();
            let got = read_exact(&mut server, 4).await;
            server.write_all(&got).await.unwrap();
            let back = read_exact(&mut client, 4).await;
            // Alternate who closes first, and how.
            if i % 2 == 0 {
                client.close().await.unwrap();
                drop(server);
            } else {
                drop(server);
                drop(client);
            }
            back
        });
        assert_eq!(echoed, payload);
    }
    // Let the last closes and TIME-WAITs finish.
    for _ in 0..1000 {
        net.step();
    }
    assert_eq!((net.a.socket_count(), net.b.socket_count()), baseline);
    assert_eq!(net.a.counters().active, 0);
    assert_eq!(net.b.counters().active, 0);
    assert_eq!(net.b.counters().accepted, 200);
}

#[test]
fn no_transmit_descriptor_waits_on_the_waker_and_loses_nothing() {
    let mut net = Net::new(Faults::none());
    let mut listener = TcpListener::bind(&net.b, 80, 1).unwrap();
    let (mut client, mut server) = connect(&mut net, &mut listener, 80);
    let waker = Arc::new(CountingWaker::default());
    net.runner_a.set_waker(&Waker::from(waker.clone()));

    net.wire.lock().unwrap().tx_free[0] = Some(2);
    let message = pattern(6000);
    let delivered_before = net.wire.lock().unwrap().delivered[1];
    let start = net.now;
    let queued = net.run(STEPS, client.write(&message));
    assert_eq!(queued, Ok(6000));
    // Poll by hand in 1 ms steps (no jumping to timers): the stack must just wait.
    for _ in 0..20 {
        net.runner_a.poll(net.now);
        net.runner_b.poll(net.now);
        net.now += Duration::from_millis(1);
        let now = net.now;
        net.wire.lock().unwrap().set_now(now);
    }
    let wire = net.wire.lock().unwrap();
    assert_eq!(
        wire.delivered[1] - delivered_before,
        2,
        "only 2 descriptors"
    );
    assert!(
        wire.tx_registrations[0] > 0,
        "the stack registered for TX completion"
    );
    drop(wire);
    assert!(net.a.counters().tx_backpressure > 0);
    let wakes_before = waker.0.load(SeqCst);

    net.wire.lock().unwrap().free_tx(0, None);
    assert_eq!(
        waker.0.load(SeqCst),
        wakes_before + 1,
        "completion woke the runner"
    );
    let got = net.run(STEPS, read_exact(&mut server, 6000));
    assert!(got == message, "bytes lost or reordered under backpressure");
    // Nothing was dropped: no retransmission (1 s minimum) was needed.
    let elapsed = net.now - start;
    assert!(elapsed < Duration::from_millis(500), "took {elapsed:?}");
}

#[test]
fn simultaneous_syns_are_all_accepted() {
    let mut net = Net::new(Faults::none());
    let listener = TcpListener::bind(&net.b, 80, 4).unwrap();
    let a = net.a.clone();
    // Let ARP settle so that both SYNs leave in one poll and arrive in one poll.
    let warmup = net.run(STEPS, TcpStream::connect(&a, addr(IP_B, 80)));
    let first = net.run(STEPS, listener.accept());
    drop((warmup, first));
    let (one, two) = net.run(
        STEPS,
        join(
            TcpStream::connect(&a, addr(IP_B, 80)),
            TcpStream::connect(&a, addr(IP_B, 80)),
        ),
    );
    assert!(
        one.is_ok() && two.is_ok(),
        "{:?} {:?}",
        one.err(),
        two.err()
    );
    assert_eq!(net.b.counters().refused_backlog, 0);
}

#[test]
fn read_timeout_fires_and_the_stream_stays_usable() {
    let mut net = Net::new(Faults::none());
    let mut listener = TcpListener::bind(&net.b, 80, 1).unwrap();
    let (mut client, mut server) = connect(&mut net, &mut listener, 80);
    // Socket timeouts are executor timers: run the rest as torito tasks.
    let sim = Sim::from_net(net);
    server.set_timeout(Some(Duration::from_millis(500)));
    let start = sim.clock.now();
    let mut buffer = [0u8; 4];
    let result = sim.executor.block_on(server.read(&mut buffer));
    assert_eq!(result, Err(Error::TimedOut));
    let waited = sim.clock.now() - start;
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_millis(600),
        "timed out after {waited:?} of simulated time"
    );
    let got = sim.executor.block_on(async {
        client.write_all(b"late").await.unwrap();
        read_exact(&mut server, 4).await
    });
    assert_eq!(got, b"late");
}

#[test]
fn second_listener_on_a_port_is_address_in_use() {
    let net = Net::new(Faults::none());
    let _first = TcpListener::bind(&net.b, 80, 1).unwrap();
    assert_eq!(
        TcpListener::bind(&net.b, 80, 1).err(),
        Some(Error::AddressInUse { port: 80 })
    );
}
