//! The vsock glue against a fake device: the handshake, data both ways under the credit
//! the peer gives, credit announced back, close; and hostile packets (short, lying
//! lengths, payload on control operations, unknown operations, sends past credit, used
//! entries that lie), each dropped and counted, never a panic.
#![deny(unsafe_code)]

use super::connections::{CLOSE_TIMEOUT_MS, FIRST_LOCAL_PORT};
use super::device::{QUEUE, VIRTIO_F_VERSION_1};
use super::packet::{HEADER, Header, Malformed, Op, SHUTDOWN_RECEIVE, SHUTDOWN_SEND};
use super::*;
use crate::fake::*;
use alloc::sync::Arc;
use core::task::{Context, Poll};
use futures_util::task::AtomicWaker;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use virtio_drivers::transport::DeviceType;

const GUEST: u64 = 3;
const HOST_PORT: u32 = 1000;
const PORT: u32 = 5555;
const BUF: u32 = 64 * 1024;

fn packet(op: Op, src_port: u32, len: u32, flags: u32, credit: (u32, u32), body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0u8; HEADER];
    Header {
        src_cid: 2,
        dst_cid: GUEST,
        src_port,
        dst_port: PORT,
        len,
        op,
        flags,
        buf_alloc: credit.0,
        fwd_cnt: credit.1,
    }
    .write(&mut bytes);
    bytes.extend_from_slice(body);
    bytes
}

fn waker() -> (Arc<CountingWaker>, std::task::Waker) {
    let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
    (counter.clone(), std::task::Waker::from(counter))
}

/// Every packet `connections` has to send, parsed.
fn sent(connections: &mut Connections) -> Vec<(Header, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buffer = vec![0u8; BUFFER];
    while let Some(length) = connections.transmit(&mut buffer) {
        let (header, body) = Header::parse(&buffer[..length]).expect("we send valid packets");
        out.push((header, body.to_vec()));
    }
    out
}

/// A listener on PORT with one accepted connection from HOST_PORT (peer credit `credit`).
fn connected(credit: u32) -> (Connections, Handle) {
    let mut connections = Connections::new(GUEST, BUF);
    connections.listen(PORT, 4).unwrap();
    connections
        .receive(&packet(Op::Request, HOST_PORT, 0, 0, (credit, 0), &[]))
        .unwrap();
    let replies = sent(&mut connections);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].0.op, Op::Response);
    assert_eq!(replies[0].0.dst_port, HOST_PORT);
    assert_eq!(
        replies[0].0.buf_alloc, BUF,
        "our receive buffer is announced"
    );
    let (_, task) = waker();
    let Poll::Ready(handle) = connections.poll_accept(PORT, &mut Context::from_waker(&task)) else {
        panic!("the connection is accepted");
    };
    (connections, handle)
}

#[test]
fn headers_round_trip_and_hostile_ones_are_refused() {
    let bytes = packet(Op::Rw, 7, 3, 0, (10, 20), b"abc");
    let (header, body) = Header::parse(&bytes).unwrap();
    assert_eq!(
        (header.op, header.src_port, header.buf_alloc, header.fwd_cnt),
        (Op::Rw, 7, 10, 20)
    );
    assert_eq!(body, b"abc");
    assert_eq!(
        Header::parse(&bytes[..20]),
        Err(Malformed::Short { written: 20 })
    );
    // A length past what the device wrote.
    let lying = packet(Op::Rw, 7, 4096, 0, (0, 0), b"abc");
    assert_eq!(
        Header::parse(&lying),
        Err(Malformed::Length {
            claimed: 4096,
            written: 3
        })
    );
    // Payload on an operation that carries none.
    let request = packet(Op::Request, 7, 3, 0, (0, 0), b"abc");
    assert!(matches!(
        Header::parse(&request),
        Err(Malformed::Length { .. })
    ));
    let mut unknown = packet(Op::Rst, 7, 0, 0, (0, 0), &[]);
    unknown[30] = 99;
    assert_eq!(Header::parse(&unknown), Err(Malformed::Op(99)));
    let mut datagram = packet(Op::Rst, 7, 0, 0, (0, 0), &[]);
    datagram[28] = 2;
    assert_eq!(Header::parse(&datagram), Err(Malformed::Type(2)));
}

#[test]
fn a_seeded_flood_of_random_packets_never_panics_and_is_counted() {
    let (mut connections, handle) = connected(BUF);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut dropped = 0;
    for _ in 0..20_000 {
        let length = (random() % 120) as usize;
        let mut bytes: Vec<u8> = (0..length).map(|_| random() as u8).collect();
        if length >= HEADER && random() % 2 == 0 {
            // Often a plausible header, so the checks past the first are reached.
            bytes[..8].copy_from_slice(&2u64.to_le_bytes());
            bytes[8..16].copy_from_slice(&GUEST.to_le_bytes());
            bytes[16..20].copy_from_slice(&HOST_PORT.to_le_bytes());
            bytes[20..24].copy_from_slice(&PORT.to_le_bytes());
            bytes[28..30].copy_from_slice(&1u16.to_le_bytes());
            bytes[30..32].copy_from_slice(&((random() % 9) as u16).to_le_bytes());
        }
        if connections.receive(&bytes).is_err() {
            dropped += 1;
        }
        sent(&mut connections);
    }
    assert!(dropped > 0);
    assert_eq!(connections.counters().malformed, dropped);
    let _ = connections.addresses(handle);
}

#[test]
fn received_bytes_are_read_in_order_and_credit_is_announced() {
    let (mut connections, handle) = connected(BUF);
    let (woken, task) = waker();
    let mut context = Context::from_waker(&task);
    let mut out = [0u8; 8];
    assert!(
        connections
            .poll_read(handle, &mut context, &mut out)
            .is_pending()
    );
    let chunk = vec![7u8; 4096];
    for _ in 0..4 {
        connections
            .receive(&packet(Op::Rw, HOST_PORT, 4096, 0, (BUF, 0), &chunk))
            .unwrap();
    }
    assert_eq!(
        woken.0.load(core::sync::atomic::Ordering::SeqCst),
        1,
        "the reader is woken"
    );
    assert!(
        sent(&mut connections).is_empty(),
        "nothing to announce before a read"
    );
    let mut big = vec![0u8; 16 * 1024];
    assert_eq!(
        connections.poll_read(handle, &mut context, &mut big),
        Poll::Ready(Ok(16 * 1024))
    );
    let update = sent(&mut connections);
    assert_eq!(update.len(), 1);
    assert_eq!(update[0].0.op, Op::CreditUpdate);
    assert_eq!(
        update[0].0.fwd_cnt,
        16 * 1024,
        "the bytes read are announced"
    );
}

#[test]
fn a_peer_sending_past_its_credit_is_reset_and_counted() {
    let (mut connections, handle) = connected(BUF);
    let chunk = vec![1u8; 4096];
    for _ in 0..BUF / 4096 {
        connections
            .receive(&packet(Op::Rw, HOST_PORT, 4096, 0, (BUF, 0), &chunk))
            .unwrap();
    }
    assert_eq!(connections.counters().credit_violations, 0);
    connections
        .receive(&packet(Op::Rw, HOST_PORT, 4096, 0, (BUF, 0), &chunk))
        .unwrap();
    assert_eq!(connections.counters().credit_violations, 1);
    let replies = sent(&mut connections);
    assert!(replies.iter().any(|(header, _)| header.op == Op::Rst));
    let (_, task) = waker();
    let mut context = Context::from_waker(&task);
    // What came within the credit is still read, then the reset is reported.
    let mut out = vec![0u8; BUF as usize];
    assert_eq!(
        connections.poll_read(handle, &mut context, &mut out),
        Poll::Ready(Ok(BUF as usize))
    );
    assert_eq!(
        connections.poll_read(handle, &mut context, &mut out),
        Poll::Ready(Err(VsockError::Reset { port: PORT }))
    );
}

#[test]
fn writes_wait_for_the_peers_credit() {
    let (mut connections, handle) = connected(100);
    let (_, task) = waker();
    let mut context = Context::from_waker(&task);
    let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    assert_eq!(
        connections.poll_write(handle, &mut context, &data),
        Poll::Ready(Ok(1000))
    );
    let first = sent(&mut connections);
    assert_eq!(first[0].0.op, Op::Rw);
    assert_eq!(first[0].1, data[..100], "no more than the credit");
    assert_eq!(
        first[1].0.op,
        Op::CreditRequest,
        "then credit is asked for, once"
    );
    assert_eq!(first.len(), 2);
    assert!(connections.poll_flush(handle, &mut context).is_pending());
    // The peer consumed the 100 bytes and now offers 1000.
    connections
        .receive(&packet(Op::CreditUpdate, HOST_PORT, 0, 0, (1000, 100), &[]))
        .unwrap();
    let rest = sent(&mut connections);
    let body: Vec<u8> = rest.iter().flat_map(|(_, body)| body.clone()).collect();
    assert_eq!(body, data[100..]);
    assert_eq!(
        connections.poll_flush(handle, &mut context),
        Poll::Ready(Ok(()))
    );
}

#[test]
fn a_hostile_fwd_cnt_gives_no_credit_rather_than_a_flood() {
    let (mut connections, handle) = connected(100);
    let (_, task) = waker();
    let mut context = Context::from_waker(&task);
    // The peer claims to have consumed bytes we never sent.
    connections
        .receive(&packet(Op::CreditUpdate, HOST_PORT, 0, 0, (100, 5000), &[]))
        .unwrap();
    assert_eq!(
        connections.poll_write(handle, &mut context, &[1; 10]),
        Poll::Ready(Ok(10))
    );
    let packets = sent(&mut connections);
    assert!(packets.iter().all(|(header, _)| header.op != Op::Rw));
}

#[test]
fn requests_without_a_listener_or_past_the_backlog_are_reset() {
    let mut connections = Connections::new(GUEST, BUF);
    connections
        .receive(&packet(Op::Request, 1, 0, 0, (BUF, 0), &[]))
        .unwrap();
    assert_eq!(sent(&mut connections)[0].0.op, Op::Rst);
    connections.listen(PORT, 2).unwrap();
    assert_eq!(
        connections.listen(PORT, 2),
        Err(VsockError::PortInUse { port: PORT })
    );
    for port in 1..=3 {
        connections
            .receive(&packet(Op::Request, port, 0, 0, (BUF, 0), &[]))
            .unwrap();
    }
    let ops: Vec<Op> = sent(&mut connections).iter().map(|(h, _)| h.op).collect();
    assert_eq!(ops, [Op::Rst, Op::Response, Op::Response, Op::Rst][1..]);
    assert_eq!(connections.counters().refused, 2);
}

#[test]
fn close_sends_what_is_queued_then_shutdown_and_frees_on_the_peers_reset() {
    let (mut connections, handle) = connected(BUF);
    let (_, task) = waker();
    let mut context = Context::from_waker(&task);
    assert_eq!(
        connections.poll_write(handle, &mut context, b"bye"),
        Poll::Ready(Ok(3))
    );
    connections.release(handle);
    let packets = sent(&mut connections);
    assert_eq!(packets[0].1, b"bye");
    assert_eq!(packets[1].0.op, Op::Shutdown);
    assert_eq!(packets[1].0.flags, SHUTDOWN_SEND | SHUTDOWN_RECEIVE);
    assert_eq!(connections.live(), 1, "kept until the peer answers");
    connections
        .receive(&packet(Op::Rst, HOST_PORT, 0, 0, (BUF, 0), &[]))
        .unwrap();
    assert_eq!(connections.live(), 0);
}

#[test]
fn a_closed_connection_the_peer_never_answers_is_reset_after_the_timeout() {
    let (mut connections, handle) = connected(BUF);
    assert_eq!(connections.expire(1_000), None, "nothing released yet");
    connections.release(handle);
    sent(&mut connections);
    assert_eq!(connections.expire(1_000), Some(1_000 + CLOSE_TIMEOUT_MS));
    assert_eq!(
        connections.expire(1_000 + CLOSE_TIMEOUT_MS - 1),
        Some(1_000 + CLOSE_TIMEOUT_MS)
    );
    assert_eq!(connections.live(), 1);
    assert_eq!(connections.expire(1_000 + CLOSE_TIMEOUT_MS), None);
    assert_eq!(connections.live(), 0);
    assert_eq!(connections.counters().close_timeouts, 1);
    let packets = sent(&mut connections);
    assert_eq!(packets[0].0.op, Op::Rst);
    assert_eq!(packets[0].0.dst_port, HOST_PORT);
}

#[test]
fn the_peers_shutdown_ends_reads_after_the_data() {
    let (mut connections, handle) = connected(BUF);
    let (_, task) = waker();
    let mut context = Context::from_waker(&task);
    connections
        .receive(&packet(Op::Rw, HOST_PORT, 2, 0, (BUF, 0), b"hi"))
        .unwrap();
    connections
        .receive(&packet(
            Op::Shutdown,
            HOST_PORT,
            0,
            SHUTDOWN_SEND,
            (BUF, 0),
            &[],
        ))
        .unwrap();
    let mut out = [0u8; 8];
    assert_eq!(
        connections.poll_read(handle, &mut context, &mut out),
        Poll::Ready(Ok(2))
    );
    assert_eq!(
        connections.poll_read(handle, &mut context, &mut out),
        Poll::Ready(Ok(0))
    );
}

/// A megabyte each way between two state machines, the peer keeping to our credit and
/// reading in odd sizes: every byte arrives, in order.
#[test]
fn a_bulk_transfer_both_ways_keeps_every_byte() {
    let (mut guest, handle) = connected(BUF);
    let (_, task) = waker();
    let mut context = Context::from_waker(&task);
    let total = 1 << 20;
    let outgoing: Vec<u8> = (0..total).map(|i| (i * 7 + i / 4096) as u8).collect();
    let incoming: Vec<u8> = (0..total).map(|i| (i * 13 + 5) as u8).collect();
    let (mut written, mut host_sent, mut host_received, mut host_fwd) =
        (0, 0usize, Vec::new(), 0u32);
    let mut guest_received = Vec::new();
    let mut guest_view = (BUF, 0u32);
    let mut buffer = vec![0u8; 3000];
    let mut rounds = 0;
    while (host_received.len() < total || guest_received.len() < total) && rounds < 100_000 {
        rounds += 1;
        if written < total
            && let Poll::Ready(Ok(count)) =
                guest.poll_write(handle, &mut context, &outgoing[written..])
        {
            written += count;
        }
        // The host: takes what the guest sent (consuming it at once), sends within the
        // credit the guest announced.
        for (header, body) in sent(&mut guest) {
            host_received.extend_from_slice(&body);
            host_fwd = host_fwd.wrapping_add(body.len() as u32);
            guest_view = (header.buf_alloc, header.fwd_cnt);
        }
        let guest_credit = guest_view.0 - (host_sent as u32 - guest_view.1);
        if guest_credit > 0 && host_sent < total {
            let length = (guest_credit as usize).min(4096).min(total - host_sent);
            guest
                .receive(&packet(
                    Op::Rw,
                    HOST_PORT,
                    length as u32,
                    0,
                    (BUF, host_fwd),
                    &incoming[host_sent..host_sent + length],
                ))
                .unwrap();
            host_sent += length;
        } else {
            guest
                .receive(&packet(
                    Op::CreditUpdate,
                    HOST_PORT,
                    0,
                    0,
                    (BUF, host_fwd),
                    &[],
                ))
                .unwrap();
        }
        if let Poll::Ready(Ok(count)) = guest.poll_read(handle, &mut context, &mut buffer) {
            guest_received.extend_from_slice(&buffer[..count]);
        }
    }
    assert!(host_received == outgoing, "guest to host intact");
    assert!(guest_received == incoming, "host to guest intact");
    assert_eq!(guest.counters().credit_violations, 0);
}

// The device glue.

/// The host's CID, and the port a guest connects to there.
const HOST: u64 = 2;
const SERVICE: u32 = 7000;

/// A packet from the host's SERVICE port to our `port`.
fn from_service(op: Op, port: u32, credit: u32, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0u8; HEADER];
    Header {
        src_cid: HOST,
        dst_cid: GUEST,
        src_port: SERVICE,
        dst_port: port,
        len: body.len() as u32,
        op,
        flags: 0,
        buf_alloc: credit,
        fwd_cnt: 0,
    }
    .write(&mut bytes);
    bytes.extend_from_slice(body);
    bytes
}

/// A connection opened to the host's SERVICE port: its handle and the REQUEST sent.
fn requested(connections: &mut Connections) -> (Handle, Header) {
    let handle = connections.connect(HOST, SERVICE).unwrap();
    let request = sent(connections);
    assert_eq!(request.len(), 1, "one REQUEST");
    let (header, body) = &request[0];
    assert_eq!(header.op, Op::Request);
    assert_eq!((header.dst_cid, header.dst_port), (HOST, SERVICE));
    assert_eq!(header.src_cid, GUEST);
    assert!(header.src_port >= FIRST_LOCAL_PORT);
    assert_eq!(header.buf_alloc, BUF, "our receive buffer is announced");
    assert!(body.is_empty());
    (handle, *header)
}

#[test]
fn a_connect_the_peer_accepts_carries_bytes_both_ways() {
    let mut connections = Connections::new(GUEST, BUF);
    connections.listen(PORT, 4).unwrap();
    let (handle, request) = requested(&mut connections);
    assert_ne!(request.src_port, PORT, "a listener's port is not taken");
    let (woken, task) = waker();
    let mut context = Context::from_waker(&task);
    assert!(connections.poll_connect(handle, &mut context).is_pending());
    // Nothing is sent before the answer, whatever is written.
    assert_eq!(
        connections.poll_write(handle, &mut context, b"early"),
        Poll::Ready(Ok(5))
    );
    assert!(sent(&mut connections).is_empty());
    connections
        .receive(&from_service(Op::Response, request.src_port, BUF, &[]))
        .unwrap();
    assert_eq!(woken.0.load(core::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(
        connections.poll_connect(handle, &mut context),
        Poll::Ready(Ok(()))
    );
    assert_eq!(
        connections.addresses(handle),
        Some((HOST, SERVICE, request.src_port))
    );
    let data = sent(&mut connections);
    assert_eq!(data.len(), 1);
    assert_eq!(data[0].0.op, Op::Rw);
    assert_eq!(data[0].1, b"early");
    connections
        .receive(&from_service(Op::Rw, request.src_port, BUF, b"answer"))
        .unwrap();
    let mut out = [0u8; 16];
    assert_eq!(
        connections.poll_read(handle, &mut context, &mut out),
        Poll::Ready(Ok(6))
    );
    assert_eq!(&out[..6], b"answer");
    // A second connection to the same service gets another local port.
    let second = connections.connect(HOST, SERVICE).unwrap();
    let again = sent(&mut connections);
    assert_ne!(again[0].0.src_port, request.src_port);
    connections.release(second);
    let counters = connections.counters();
    assert_eq!((counters.connected, counters.connect_failed), (1, 1));
}

#[test]
fn a_connect_answered_by_rst_is_refused() {
    let mut connections = Connections::new(GUEST, BUF);
    let (handle, request) = requested(&mut connections);
    let (_, task) = waker();
    let mut context = Context::from_waker(&task);
    connections
        .receive(&from_service(Op::Rst, request.src_port, 0, &[]))
        .unwrap();
    assert_eq!(
        connections.poll_connect(handle, &mut context),
        Poll::Ready(Err(VsockError::Refused {
            cid: HOST,
            port: SERVICE
        }))
    );
    assert!(sent(&mut connections).is_empty(), "a reset is not answered");
    connections.release(handle);
    assert_eq!(connections.live(), 0, "the slot is freed");
    assert_eq!(connections.counters().connect_failed, 1);
}

#[test]
fn a_connect_given_up_unanswered_resets_the_peer_and_frees_the_slot() {
    let mut connections = Connections::new(GUEST, BUF);
    let (handle, request) = requested(&mut connections);
    let (_, task) = waker();
    assert!(
        connections
            .poll_connect(handle, &mut Context::from_waker(&task))
            .is_pending()
    );
    // The caller's timeout ran out: it releases the handle.
    connections.release(handle);
    let rst = sent(&mut connections);
    assert_eq!(rst.len(), 1);
    assert_eq!(rst[0].0.op, Op::Rst);
    assert_eq!(
        (rst[0].0.dst_port, rst[0].0.src_port),
        (SERVICE, request.src_port)
    );
    assert_eq!(connections.live(), 0);
    // A late RESPONSE meets no connection: it is answered by a reset.
    connections
        .receive(&from_service(Op::Response, request.src_port, BUF, &[]))
        .unwrap();
    assert_eq!(sent(&mut connections)[0].0.op, Op::Rst);
    assert_eq!(connections.counters().connected, 0);
}

#[test]
fn a_peer_that_breaks_the_handshake_is_reset_and_its_data_dropped() {
    for op in [Op::Rw, Op::Request, Op::Shutdown, Op::CreditUpdate] {
        let mut connections = Connections::new(GUEST, BUF);
        let (handle, request) = requested(&mut connections);
        let (_, task) = waker();
        let mut context = Context::from_waker(&task);
        connections
            .receive(&from_service(op, request.src_port, BUF, &[]))
            .unwrap();
        assert_eq!(
            connections.poll_connect(handle, &mut context),
            Poll::Ready(Err(VsockError::Refused {
                cid: HOST,
                port: SERVICE
            })),
            "{op:?}"
        );
        let rst = sent(&mut connections);
        assert_eq!(rst.len(), 1, "{op:?}");
        assert_eq!(rst[0].0.op, Op::Rst, "{op:?}");
        let mut out = [0u8; 4];
        assert!(matches!(
            connections.poll_read(handle, &mut context, &mut out),
            Poll::Ready(Err(VsockError::Reset { .. }))
        ));
        connections.release(handle);
        assert_eq!(connections.live(), 0, "{op:?}");
    }
    // An answer from another port is not the peer's: the connection still waits.
    let mut connections = Connections::new(GUEST, BUF);
    let (handle, request) = requested(&mut connections);
    let mut stranger = from_service(Op::Response, request.src_port, BUF, &[]);
    stranger[16..20].copy_from_slice(&(SERVICE + 1).to_le_bytes());
    connections.receive(&stranger).unwrap();
    assert_eq!(sent(&mut connections)[0].0.op, Op::Rst);
    let (_, task) = waker();
    assert!(
        connections
            .poll_connect(handle, &mut Context::from_waker(&task))
            .is_pending()
    );
}

#[test]
fn the_transport_reset_refuses_a_pending_connect() {
    let mut connections = Connections::new(GUEST, BUF);
    let (handle, _) = requested(&mut connections);
    connections.transport_reset();
    let (_, task) = waker();
    assert!(matches!(
        connections.poll_connect(handle, &mut Context::from_waker(&task)),
        Poll::Ready(Err(VsockError::Refused { .. }))
    ));
    connections.release(handle);
    assert!(
        sent(&mut connections).is_empty(),
        "the peer is gone already"
    );
    assert_eq!(connections.live(), 0);
}

fn device() -> (VsockDevice<FakeHal, FakeTransport>, FakeDevice) {
    let state = DeviceState {
        offered: Some(VIRTIO_F_VERSION_1),
        kind: Some(DeviceType::Socket),
        config: Some(vec![GUEST as u8, 0, 0, 0, 0, 0, 0, 0]),
        ..DeviceState::default()
    };
    let transport = FakeTransport(Arc::new(Mutex::new(state)));
    let waker: &'static AtomicWaker = Box::leak(Box::new(AtomicWaker::new()));
    let driver = VsockDevice::<FakeHal, _>::new(transport.clone(), waker).unwrap();
    let fake = FakeDevice {
        transport,
        next_avail: [0; 3],
        next_used: [0; 3],
        header: 0,
        queue_size: QUEUE as u16,
    };
    (driver, fake)
}

fn deliver(fake: &mut FakeDevice, bytes: &[u8], claimed: u32) {
    let (head, address, length) = fake.take_avail(0).expect("a receive buffer");
    assert_eq!(length as usize, BUFFER);
    for (index, &byte) in bytes.iter().enumerate() {
        write::<u8>(address + index as u64, byte);
    }
    fake.put_used(0, head, claimed);
}

/// Every packet on the transmit queue, header and payload joined.
fn transmitted(fake: &mut FakeDevice) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    while let Some((head, parts)) = fake.take_avail_chain(1) {
        let mut bytes = Vec::new();
        for (address, length) in parts {
            bytes.extend((0..u64::from(length)).map(|i| read::<u8>(address + i)));
        }
        fake.put_used(1, head, 0);
        packets.push(bytes);
    }
    packets
}

#[test]
fn the_device_reads_the_cid_posts_buffers_and_answers_a_request() {
    let (mut driver, mut fake) = device();
    assert_eq!(driver.cid(), GUEST);
    assert_eq!(fake.notifications()[0], 1, "receive buffers announced once");
    let mut connections = Connections::new(driver.cid(), BUF);
    connections.listen(PORT, 1).unwrap();
    let (_, task) = waker();
    deliver(
        &mut fake,
        &packet(Op::Request, HOST_PORT, 0, 0, (BUF, 0), &[]),
        HEADER as u32,
    );
    assert_eq!(driver.poll(&mut connections, &task), Polled::Idle);
    let packets = transmitted(&mut fake);
    assert_eq!(packets.len(), 1);
    let (header, _) = Header::parse(&packets[0]).unwrap();
    assert_eq!(
        (header.op, header.dst_port, header.src_port),
        (Op::Response, HOST_PORT, PORT)
    );
    assert_eq!(fake.notifications()[1], 1, "one notification for the reply");
    assert!(
        fake.interrupts_wanted(0),
        "asleep with receive interrupts on"
    );
    // Data goes out as header and payload.
    let Poll::Ready(handle) = connections.poll_accept(PORT, &mut Context::from_waker(&task)) else {
        panic!("accepted");
    };
    let written = connections.poll_write(handle, &mut Context::from_waker(&task), b"hello");
    assert_eq!(written, Poll::Ready(Ok(5)));
    driver.poll(&mut connections, &task);
    let packets = transmitted(&mut fake);
    let (header, body) = Header::parse(&packets[0]).unwrap();
    assert_eq!((header.op, body), (Op::Rw, &b"hello"[..]));
}

#[test]
fn hostile_used_entries_are_counted_and_the_buffers_kept() {
    let (mut driver, mut fake) = device();
    let mut connections = Connections::new(driver.cid(), BUF);
    let (_, task) = waker();
    // A length past the buffer, and a packet whose header lies about its payload.
    deliver(&mut fake, &[0; 8], BUFFER as u32 + 1);
    deliver(
        &mut fake,
        &packet(Op::Rw, HOST_PORT, 4000, 0, (BUF, 0), b"x"),
        HEADER as u32 + 1,
    );
    assert_eq!(driver.poll(&mut connections, &task), Polled::Idle);
    assert_eq!(connections.counters().bad_used, 1);
    assert_eq!(connections.counters().malformed, 1);
    // Both buffers were posted again: 64 receive buffers still available.
    let mut count = 0;
    while fake.take_avail(0).is_some() {
        count += 1;
    }
    assert_eq!(count, QUEUE);
}

#[test]
fn a_token_never_posted_breaks_the_device_instead_of_spinning() {
    let (mut driver, mut fake) = device();
    let mut connections = Connections::new(driver.cid(), BUF);
    let (_, task) = waker();
    let (head, _, _) = fake.take_avail(0).unwrap();
    // The used entry names a descriptor that heads no chain we posted.
    let _ = head;
    fake.put_used(0, 200, 10);
    assert_eq!(driver.poll(&mut connections, &task), Polled::Broken);
}
