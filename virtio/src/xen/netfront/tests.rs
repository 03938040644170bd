//! netfront against a simulated netback: the handshake through the simulated
//! xenstored, then frames both ways through the rings and granted pages, then a
//! backend that lies.

use alloc::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::*;
use crate::xen::VecPage;
use crate::xen::grant::{GTF_PERMIT_ACCESS, GTF_READONLY};
use crate::xen::ring::{self, REQ_PROD, RSP_PROD, SLOTS};
use crate::xen::xenstore::tests::{Bell, Daemon, Flag, interrupt, run_with};

const BACKEND: &str = "backend/vif/5/0";
const FRONT: &str = "device/vif/0";
const PORT: u32 = 9;

/// An event channel that hands out port 9 (or fails), counts notifications and keeps
/// the ports closed.
struct Channel {
    rung: AtomicU32,
    refuse: bool,
    closed: std::sync::Mutex<Vec<u32>>,
}

impl Channel {
    fn closed(&self) -> Vec<u32> {
        self.closed.lock().unwrap().clone()
    }
}

impl EventChannel for Channel {
    fn notify(&self, port: u32) {
        assert_eq!(port, PORT);
        self.rung.fetch_add(1, Ordering::SeqCst);
    }
    fn alloc_unbound(&self, remote: u16) -> Result<u32, i32> {
        assert_eq!(remote, 0, "bound for the backend's domain");
        if self.refuse { Err(-28) } else { Ok(PORT) }
    }
    fn close(&self, port: u32) {
        self.closed.lock().unwrap().push(port);
    }
}

/// Everything a test plays: xenstored, the grant table's frame, netback.
struct World {
    store: XenStore<VecPage, Arc<Bell>>,
    daemon: Daemon,
    store_interrupt: &'static AtomicWaker,
    table: Table<VecPage>,
    grant_frame: VecPage,
    /// Every page the guest has, by frame number: what "mapping a grant" finds.
    memory: BTreeMap<u64, VecPage>,
    channel: Arc<Channel>,
    net_interrupt: &'static AtomicWaker,
}

fn new_world(tx: usize, rx: usize) -> (World, NetPages<VecPage>) {
    let page = VecPage::new();
    let bell = Arc::new(Bell::default());
    let store_interrupt = interrupt();
    let store = XenStore::new(page.clone(), bell, 1, store_interrupt);
    let mut daemon = Daemon::new(page);
    daemon.set(&format!("{FRONT}/backend"), BACKEND);
    daemon.set(&format!("{FRONT}/backend-id"), "0");
    daemon.set(&format!("{FRONT}/mac"), "00:16:3e:12:34:56");
    daemon.set(&format!("{BACKEND}/state"), "1");
    let grant_frame = VecPage::new();
    let table = Table::new(alloc::vec![grant_frame.clone()]);
    let mut memory = BTreeMap::new();
    let mut next = 0x1000;
    let mut page = || {
        let page = VecPage::new();
        next += 1;
        memory.insert(next, page.clone());
        GuestPage { page, frame: next }
    };
    let pages = NetPages {
        tx_ring: page(),
        rx_ring: page(),
        tx_buffers: (0..tx).map(|_| page()).collect(),
        rx_buffers: (0..rx).map(|_| page()).collect(),
    };
    let world = World {
        store,
        daemon,
        store_interrupt,
        table,
        grant_frame,
        memory,
        channel: Arc::new(Channel {
            rung: AtomicU32::new(0),
            refuse: false,
            closed: std::sync::Mutex::new(Vec::new()),
        }),
        net_interrupt: interrupt(),
    };
    (world, pages)
}

/// The backend's toolstack side: follows the front end's states as netback does.
fn netback_xenbus(daemon: &mut Daemon) {
    let front = daemon
        .nodes
        .get(&format!("{FRONT}/state"))
        .cloned()
        .unwrap_or_default();
    let back = daemon.nodes[&format!("{BACKEND}/state")].clone();
    match (front.as_str(), back.as_str()) {
        ("1", "1") => daemon.set(&format!("{BACKEND}/state"), "2"),
        // As Linux's netback (drivers/net/xen-netback/xenbus.c, frontend_changed): it
        // ignores Initialised and connects once the front end says Connected.
        ("4", "2") => {
            for key in [
                "tx-ring-ref",
                "rx-ring-ref",
                "event-channel",
                "request-rx-copy",
            ] {
                assert!(
                    daemon.nodes.contains_key(&format!("{FRONT}/{key}")),
                    "{key} written before state 4"
                );
            }
            daemon.set(&format!("{BACKEND}/state"), "4");
        }
        _ => {}
    }
}

fn connect_in(
    world: &mut World,
    pages: NetPages<VecPage>,
    mut backend: impl FnMut(&mut Daemon),
) -> Result<NetFront<VecPage, Arc<Channel>>, NetFrontError> {
    let future = connect(
        &world.store,
        &world.table,
        world.channel.clone(),
        world.net_interrupt,
        0,
        pages,
    );
    run_with(future, world.store_interrupt, &mut world.daemon, |daemon| {
        backend(daemon)
    })
}

/// netback's data path over the rings it found through xenstore and the grant table.
struct Netback {
    tx_ring: VecPage,
    rx_ring: VecPage,
    grants: VecPage,
    memory: BTreeMap<u64, VecPage>,
    tx_cons: u32,
    tx_prod: u32,
    rx_cons: u32,
    rx_prod: u32,
}

impl Netback {
    fn attach(world: &World) -> Self {
        let node = |key: &str| {
            world.daemon.nodes[&format!("{FRONT}/{key}")]
                .parse::<u32>()
                .unwrap()
        };
        assert_eq!(node("event-channel"), PORT);
        assert_eq!(node("request-rx-copy"), 1);
        assert_eq!(node("feature-rx-notify"), 1);
        assert_eq!(node("feature-no-csum-offload"), 1);
        let mut netback = Self {
            tx_ring: VecPage::new(),
            rx_ring: VecPage::new(),
            grants: world.grant_frame.clone(),
            memory: world.memory.clone(),
            tx_cons: 0,
            tx_prod: 0,
            rx_cons: 0,
            rx_prod: 0,
        };
        netback.tx_ring = netback.map(node("tx-ring-ref"), true);
        netback.rx_ring = netback.map(node("rx-ring-ref"), true);
        netback
    }

    /// What Xen checks before a map or copy: the grant permits it, to us (domain 0).
    fn map(&self, reference: u32, write: bool) -> VecPage {
        let offset = reference as usize * 8;
        let flags = self.grants.load_u16(offset);
        assert!(
            flags & GTF_PERMIT_ACCESS != 0,
            "grant {reference} not permitted"
        );
        assert_eq!(
            self.grants.load_u16(offset + 2),
            0,
            "granted to another domain"
        );
        assert!(
            !write || flags & GTF_READONLY == 0,
            "grant {reference} is read-only"
        );
        let frame = u64::from(self.grants.load_u32(offset + 4));
        self.memory[&frame].clone()
    }

    fn rx_requests(&self) -> u32 {
        self.rx_ring.load_u32(REQ_PROD).wrapping_sub(self.rx_cons)
    }

    /// Takes the next receive request and answers it with `response`, the id filled
    /// in from the request when `response.id` is `u16::MAX`; returns the request.
    fn respond_rx(&mut self, mut response: RxResponse) -> RxRequest {
        assert!(self.rx_requests() > 0, "no receive buffer posted");
        let request = RxRequest::load(&self.rx_ring, SLOTS + (self.rx_cons & 255) as usize * 8);
        self.rx_cons += 1;
        if response.id == u16::MAX {
            response.id = request.id;
        }
        response.store(&self.rx_ring, SLOTS + (self.rx_prod & 255) as usize * 8);
        self.rx_prod += 1;
        self.rx_ring.store_u32(RSP_PROD, self.rx_prod);
        request
    }

    /// Copies `frame` into the next posted buffer at `offset`, as grant copy does.
    fn deliver_at(&mut self, frame: &[u8], offset: u16) {
        let request = RxRequest::load(&self.rx_ring, SLOTS + (self.rx_cons & 255) as usize * 8);
        self.map(request.gref, true).write(offset as usize, frame);
        let status = frame.len() as i16;
        self.respond_rx(RxResponse {
            id: u16::MAX,
            offset,
            flags: 0,
            status,
        });
    }

    fn deliver(&mut self, frame: &[u8]) {
        self.deliver_at(frame, 0);
    }

    /// Sends every queued frame, answering each with `status`.
    fn collect_with(&mut self, status: i16) -> Vec<Vec<u8>> {
        self.collect_answering(|request| TxResponse {
            id: request.id,
            status,
        })
    }

    /// Sends every queued frame, answering each as `answer` says.
    fn collect_answering(
        &mut self,
        mut answer: impl FnMut(TxRequest) -> TxResponse,
    ) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let prod = self.tx_ring.load_u32(REQ_PROD);
        while self.tx_cons != prod {
            let request =
                TxRequest::load(&self.tx_ring, SLOTS + (self.tx_cons & 255) as usize * 12);
            self.tx_cons += 1;
            let mut frame = vec![0; request.size as usize];
            self.map(request.gref, false)
                .read(request.offset as usize, &mut frame);
            assert_eq!(request.flags, 0);
            frames.push(frame);
            let response = answer(request);
            response.store(&self.tx_ring, SLOTS + (self.tx_prod & 255) as usize * 12);
            self.tx_prod += 1;
        }
        self.tx_ring.store_u32(RSP_PROD, self.tx_prod);
        frames
    }

    fn collect(&mut self) -> Vec<Vec<u8>> {
        self.collect_with(RSP_OKAY)
    }
}

fn waker() -> (Arc<Flag>, Waker) {
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    (flag.clone(), Waker::from(flag))
}

/// A frame of `len` bytes whose contents say `seed`.
fn frame(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|index| seed.wrapping_add(index as u8))
        .collect()
}

/// Receives one frame and replies with it reversed; `None` if none was ready.
fn echo_one(device: &mut NetFront<VecPage, Arc<Channel>>, waker: &Waker) -> Option<Vec<u8>> {
    let (rx, tx) = device.receive(waker)?;
    let received = rx.frame().to_vec();
    let reply: Vec<u8> = received.iter().rev().copied().collect();
    tx.consume(reply.len(), |buffer| buffer.copy_from_slice(&reply));
    Some(received)
}

fn connected(tx: usize, rx: usize) -> (World, NetFront<VecPage, Arc<Channel>>, Netback) {
    let (mut world, pages) = new_world(tx, rx);
    let device = connect_in(&mut world, pages, netback_xenbus).unwrap();
    let netback = Netback::attach(&world);
    (world, device, netback)
}

#[test]
fn handshake_follows_the_backend_and_grants_everything() {
    let (mut world, pages) = new_world(4, 8);
    let ring_frames = (pages.tx_ring.frame, pages.rx_ring.frame);
    let free = world.table.free();
    let device = connect_in(&mut world, pages, netback_xenbus).unwrap();
    assert_eq!(device.mac(), [0x00, 0x16, 0x3e, 0x12, 0x34, 0x56]);
    assert_eq!(device.backend(), BACKEND);
    assert_eq!(device.backend_id(), 0);
    assert_eq!(device.port(), PORT);
    assert_eq!(world.daemon.nodes[&format!("{FRONT}/state")], "4");
    // Two rings and twelve buffers granted.
    assert_eq!(world.table.free(), free - 14);
    let tx_ref = world.daemon.nodes[&format!("{FRONT}/tx-ring-ref")]
        .parse()
        .unwrap();
    let entry = world.table.entry(GrantRef(tx_ref)).unwrap();
    assert_eq!(
        (entry.flags, entry.domid, u64::from(entry.frame)),
        (GTF_PERMIT_ACCESS, 0, ring_frames.0)
    );
    let netback = Netback::attach(&world);
    // Every receive buffer is posted and the backend was told.
    assert_eq!(netback.rx_requests(), 8);
    assert!(world.channel.rung.load(Ordering::SeqCst) >= 1);
    // The watch on the backend's state is gone.
    assert!(world.daemon.watches.is_empty());
}

#[test]
fn handshake_waits_while_the_backend_is_slow() {
    let (mut world, pages) = new_world(1, 1);
    let mut rounds = 0;
    let device = connect_in(&mut world, pages, |daemon| {
        // The backend takes its time before each step.
        rounds += 1;
        if rounds % 7 == 0 {
            netback_xenbus(daemon);
        }
    });
    assert!(device.is_ok());
}

#[test]
fn handshake_errors_are_named() {
    let (mut world, pages) = new_world(1, 1);
    world.daemon.nodes.remove(&format!("{FRONT}/backend"));
    match connect_in(&mut world, pages, netback_xenbus) {
        Err(NetFrontError::Xenstore {
            path,
            error: XenstoreError::Daemon(Errno::Enoent),
        }) => {
            assert_eq!(path, "device/vif/0/backend")
        }
        other => panic!("{:?}", other.err()),
    }

    let (mut world, pages) = new_world(1, 1);
    world.daemon.set(&format!("{FRONT}/mac"), "00:16:3e:12:34");
    assert!(matches!(
        connect_in(&mut world, pages, netback_xenbus),
        Err(NetFrontError::BadValue { .. })
    ));

    let (mut world, pages) = new_world(0, 1);
    assert_eq!(
        connect_in(&mut world, pages, netback_xenbus).err(),
        Some(NetFrontError::BadPages { tx: 0, rx: 1 })
    );

    let (mut world, pages) = new_world(1, 1);
    let result = connect_in(&mut world, pages, |daemon| {
        daemon.set(&format!("{BACKEND}/state"), "5")
    });
    assert_eq!(
        result.err(),
        Some(NetFrontError::BackendState { state: "5".into() })
    );
}

#[test]
fn a_refused_event_channel_ends_the_grants() {
    let (mut world, pages) = new_world(2, 2);
    world.channel = Arc::new(Channel {
        rung: AtomicU32::new(0),
        refuse: true,
        closed: std::sync::Mutex::new(Vec::new()),
    });
    let free = world.table.free();
    assert_eq!(
        connect_in(&mut world, pages, netback_xenbus).err(),
        Some(NetFrontError::EventChannel(-28))
    );
    assert_eq!(world.table.free(), free, "every grant ended");
    assert!(
        world.channel.closed().is_empty(),
        "no port was given, none closed"
    );
}

#[test]
fn rx_responses_before_connecting_are_refused() {
    let (mut world, pages) = new_world(2, 2);
    let rx_ring = pages.rx_ring.page.clone();
    let result = connect_in(&mut world, pages, |daemon| {
        // A backend that writes responses as soon as it can map the ring.
        if daemon.nodes.contains_key(&format!("{FRONT}/rx-ring-ref")) {
            rx_ring.store_u32(RSP_PROD, 3);
        }
        netback_xenbus(daemon);
    });
    assert!(matches!(
        result.err(),
        Some(NetFrontError::Ring(RingError::Overrun { rsp_prod: 3, .. }))
    ));
    assert_eq!(world.channel.closed(), [PORT], "the port is given back");
    assert_eq!(
        world
            .daemon
            .nodes
            .get(&format!("{FRONT}/state"))
            .map(String::as_str),
        Some("5"),
        "and the front end said Closing"
    );
}

#[test]
fn frames_flow_both_ways() {
    let (world, mut device, mut netback) = connected(4, 8);
    let stats = device.stats_handle();
    let (flag, waker) = waker();
    assert!(device.receive(&waker).is_none());
    let sent: Vec<Vec<u8>> = (0..3)
        .map(|seed| frame(seed, 60 + usize::from(seed) * 500))
        .collect();
    for frame in &sent {
        netback.deliver(frame);
    }
    // netback raises the event; the kernel's upcall wakes the interrupt waker.
    device.interrupt.wake();
    assert!(
        flag.0.swap(false, Ordering::SeqCst),
        "the runner's waker was registered"
    );
    for frame in &sent {
        assert_eq!(echo_one(&mut device, &waker).as_ref(), Some(frame));
    }
    assert!(echo_one(&mut device, &waker).is_none());
    let rung = world.channel.rung.load(Ordering::SeqCst);
    device.flush();
    assert_eq!(
        world.channel.rung.load(Ordering::SeqCst),
        rung + 1,
        "one notification per batch"
    );
    let replies = netback.collect();
    let expected: Vec<Vec<u8>> = sent
        .iter()
        .map(|frame| frame.iter().rev().copied().collect())
        .collect();
    assert_eq!(replies, expected);
    assert_eq!(device.stats().rx_frames.load(Ordering::SeqCst), 3);
    assert_eq!(device.stats().tx_frames.load(Ordering::SeqCst), 3);
    // Buffers went back: all eight receive buffers are posted again.
    assert_eq!(netback.rx_requests(), 8);
    drop(device);
    assert!(
        world.channel.closed().is_empty(),
        "a connected vif's port stays open (its backend may still use it)"
    );
    assert_eq!(
        stats.rx_frames.load(Ordering::SeqCst),
        3,
        "readable after the driver is gone"
    );
}

#[test]
fn many_frames_wrap_the_rings_and_reuse_the_buffers() {
    let (_world, mut device, mut netback) = connected(3, 5);
    let (_flag, waker) = waker();
    for round in 0..200_u32 {
        let batch = 1 + (round % 3) as usize;
        let frames: Vec<Vec<u8>> = (0..batch)
            .map(|index| frame((round as u8).wrapping_add(index as u8), 100 + index))
            .collect();
        for frame in &frames {
            netback.deliver_at(frame, (round % 4) as u16 * 64);
        }
        for frame in &frames {
            assert_eq!(
                echo_one(&mut device, &waker).as_ref(),
                Some(frame),
                "round {round}"
            );
        }
        device.flush();
        assert_eq!(netback.collect().len(), batch);
    }
    assert!(
        netback.rx_prod > 256 && netback.tx_prod > 256,
        "both rings wrapped"
    );
    let stats = device.stats();
    assert_eq!(
        stats.unknown_ids.load(Ordering::SeqCst) + stats.rx_bad.load(Ordering::SeqCst),
        0
    );
}

#[test]
fn transmit_waits_for_a_free_buffer() {
    let (world, mut device, mut netback) = connected(2, 2);
    let (flag, waker) = waker();
    for seed in 0..2 {
        let tx = device.transmit(&waker).unwrap();
        tx.consume(64, |buffer| buffer.copy_from_slice(&frame(seed, 64)));
    }
    let rung = world.channel.rung.load(Ordering::SeqCst);
    assert!(device.transmit(&waker).is_none(), "no buffer free");
    // Full: the driver itself published the frames and asked to hear of completions.
    assert_eq!(world.channel.rung.load(Ordering::SeqCst), rung + 1);
    assert_eq!(netback.collect(), [frame(0, 64), frame(1, 64)]);
    device.interrupt.wake();
    assert!(flag.0.load(Ordering::SeqCst));
    assert!(device.transmit(&waker).is_some());
    // receive also needs a free transmit buffer.
    netback.deliver(&frame(9, 70));
    assert_eq!(echo_one(&mut device, &waker), Some(frame(9, 70)));
}

#[test]
fn frames_too_long_are_not_sent() {
    let (_world, mut device, mut netback) = connected(1, 1);
    let (_flag, waker) = waker();
    let tx = device.transmit(&waker).unwrap();
    let wrote = tx.consume(FRAME_MAX + 1, |buffer| {
        buffer.fill(1);
        buffer.len()
    });
    assert_eq!(wrote, FRAME_MAX + 1);
    device.flush();
    assert!(netback.collect().is_empty());
    assert_eq!(device.stats().tx_too_long.load(Ordering::SeqCst), 1);
    assert!(
        device.transmit(&waker).is_some(),
        "the buffer is still free"
    );
}

#[test]
fn hostile_rx_responses_are_dropped_counted_and_the_buffer_posted_again() {
    let (_world, mut device, mut netback) = connected(2, 8);
    let (_flag, waker) = waker();
    let response = |offset, status| RxResponse {
        id: u16::MAX,
        offset,
        flags: 0,
        status,
    };
    // An id never posted (the buffer it took stays with netback).
    netback.respond_rx(RxResponse {
        id: 200,
        offset: 0,
        flags: 0,
        status: 60,
    });
    // A length past the page, an offset + length past the page, a length past a frame.
    netback.respond_rx(response(0, 4097));
    netback.respond_rx(response(4000, 200));
    netback.respond_rx(response(0, 3000));
    assert!(echo_one(&mut device, &waker).is_none());
    device.flush();
    assert_eq!(netback.rx_requests(), 7, "three buffers posted again");
    // A negative status, a zero-length frame, a fragment never negotiated.
    netback.respond_rx(response(0, -1));
    netback.respond_rx(response(0, 0));
    netback.respond_rx(RxResponse {
        id: u16::MAX,
        offset: 0,
        flags: MORE_DATA,
        status: 60,
    });
    netback.deliver(&frame(5, 80));
    assert_eq!(echo_one(&mut device, &waker), Some(frame(5, 80)));
    assert!(echo_one(&mut device, &waker).is_none());
    let stats = device.stats();
    assert_eq!(stats.unknown_ids.load(Ordering::SeqCst), 1);
    assert_eq!(stats.rx_bad.load(Ordering::SeqCst), 5);
    assert_eq!(stats.rx_errors.load(Ordering::SeqCst), 1);
    assert_eq!(stats.rx_frames.load(Ordering::SeqCst), 1);
    device.flush();
    assert_eq!(netback.rx_requests(), 7);
}

#[test]
fn hostile_tx_responses_are_counted() {
    let (_world, mut device, mut netback) = connected(2, 2);
    let (_flag, waker) = waker();
    for _ in 0..2 {
        device
            .transmit(&waker)
            .unwrap()
            .consume(64, |buffer| buffer.fill(7));
    }
    device.flush();
    // The first answered with an error, the second with an id never posted.
    let mut answers = [(u16::MAX, -1), (5, 0)].into_iter();
    netback.collect_answering(|request| {
        let (id, status) = answers.next().unwrap();
        TxResponse {
            id: if id == u16::MAX { request.id } else { id },
            status,
        }
    });
    // The first buffer comes back; the second stays with netback.
    assert!(device.transmit(&waker).is_some());
    device
        .transmit(&waker)
        .unwrap()
        .consume(64, |buffer| buffer.fill(8));
    assert!(device.transmit(&waker).is_none());
    let stats = device.stats();
    assert_eq!(stats.tx_errors.load(Ordering::SeqCst), 1);
    assert_eq!(stats.unknown_ids.load(Ordering::SeqCst), 1);
    assert!(!device.is_stopped());
}

#[test]
fn responses_beyond_the_requests_stop_the_device() {
    let (_world, mut device, netback) = connected(2, 2);
    let (_flag, waker) = waker();
    netback.rx_ring.store_u32(RSP_PROD, 3);
    assert!(device.receive(&waker).is_none());
    assert!(device.is_stopped());
    assert!(device.transmit(&waker).is_none());
    assert!(device.receive(&waker).is_none());
    assert_eq!(device.stats().ring_errors.load(Ordering::SeqCst), 1);

    let (_world, mut device, netback) = connected(1, 1);
    device
        .transmit(&waker)
        .unwrap()
        .consume(64, |buffer| buffer.fill(1));
    device.flush();
    netback.tx_ring.store_u32(RSP_PROD, 2);
    assert!(device.transmit(&waker).is_none());
    assert!(device.is_stopped());
}

#[test]
fn macs_parse_strictly() {
    assert_eq!(
        parse_mac("00:16:3e:0a:Bb:ff"),
        Some([0, 0x16, 0x3e, 0x0a, 0xbb, 0xff])
    );
    for bad in [
        "",
        "00:16:3e:0a:bb",
        "00:16:3e:0a:bb:ff:00",
        "0:16:3e:0a:bb:ff",
        "zz:16:3e:0a:bb:ff",
        "+0:16:3e:0a:bb:ff",
    ] {
        assert_eq!(parse_mac(bad), None, "{bad}");
    }
}

/// The event-channel protocol end to end: netback notifies only when the driver's
/// `rsp_event` asks for it, works on transmit requests only when notified, and stops
/// delivering when out of receive buffers until the driver notifies it (it arms
/// `req_event` first, as netback does); the "runner" polls only when its waker fired.
/// A missing `final_check`, registration or notification shows as a stall.
/// Frames come in bursts of five with quiet gaps.
#[test]
fn echo_driven_by_events_alone() {
    let (world, mut device, mut netback) = connected(3, 4);
    let (flag, waker) = waker();
    flag.0.store(true, Ordering::SeqCst);
    let frames: Vec<Vec<u8>> = (0..300_u32)
        .map(|index| frame(index as u8, 60 + (index as usize * 7) % 1400))
        .collect();
    let mut arriving = frames.iter();
    let mut queued: VecDeque<&Vec<u8>> = VecDeque::new();
    let mut received = Vec::new();
    let mut replies = Vec::new();
    let mut rung = world.channel.rung.load(Ordering::SeqCst);
    let mut rx_stalled = false;
    let mut idle = 0;
    let mut round = 0_u32;
    while replies.len() < frames.len() {
        round += 1;
        // The runner.
        if flag.0.swap(false, Ordering::SeqCst) {
            idle = 0;
            while let Some(frame) = echo_one(&mut device, &waker) {
                received.push(frame);
            }
            device.flush();
        }
        // netback.
        let notified = world.channel.rung.load(Ordering::SeqCst) != rung;
        rung = world.channel.rung.load(Ordering::SeqCst);
        let mut raise = false;
        if notified {
            rx_stalled = false;
            let old = netback.tx_prod;
            replies.extend(netback.collect());
            // Idle again: ask to hear of the next request (RING_FINAL_CHECK_FOR_REQUESTS).
            netback
                .tx_ring
                .store_u32(ring::REQ_EVENT, netback.tx_cons.wrapping_add(1));
            raise |= crossed(&netback.tx_ring, old, netback.tx_prod);
        }
        // Bursts with quiet gaps between them, so that receiving must wake the runner
        // on its own (no transmit completion to ride on).
        if round.is_multiple_of(10) {
            queued.extend(arriving.by_ref().take(5));
        }
        let old = netback.rx_prod;
        while !rx_stalled && !queued.is_empty() {
            if netback.rx_requests() == 0 {
                netback
                    .rx_ring
                    .store_u32(ring::REQ_EVENT, netback.rx_cons.wrapping_add(1));
                rx_stalled = true;
                break;
            }
            netback.deliver(queued.pop_front().unwrap());
        }
        raise |= crossed(&netback.rx_ring, old, netback.rx_prod);
        if raise {
            device.interrupt.wake();
        }
        if !flag.0.load(Ordering::SeqCst) {
            idle += 1;
            assert!(
                idle < 50,
                "stalled after {} replies: nobody will wake anybody",
                replies.len()
            );
        }
    }
    assert_eq!(received, frames);
    let reversed: Vec<Vec<u8>> = frames
        .iter()
        .map(|frame| frame.iter().rev().copied().collect())
        .collect();
    assert_eq!(replies, reversed);
    let stats = device.stats();
    assert_eq!(
        stats.unknown_ids.load(Ordering::SeqCst) + stats.rx_bad.load(Ordering::SeqCst),
        0
    );
}

/// Whether responses `(old, new]` cross the front end's `rsp_event`
/// (RING_PUSH_RESPONSES_AND_CHECK_NOTIFY).
fn crossed(ring: &VecPage, old: u32, new: u32) -> bool {
    let event = ring.load_u32(ring::RSP_EVENT);
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

#[test]
fn stats_print_as_name_value_pairs() {
    let stats = NetFrontStats::default();
    stats.rx_frames.store(3, Ordering::SeqCst);
    stats.notifications.store(7, Ordering::SeqCst);
    let line = format!("{stats}");
    assert!(line.starts_with("rx_frames: 3, tx_frames: 0, "), "{line}");
    assert!(
        line.ends_with(", ring_errors: 0, notifications: 7"),
        "{line}"
    );
    assert_eq!(line.matches(": ").count(), stats.named().len());
}
