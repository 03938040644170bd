//! The virtio-fs driver and FUSE layer against a fake device that reads each request
//! from the ring and writes a reply as virtiofsd does, then hostile replies: too long for
//! the buffer, shorter than a header, a header disagreeing with the used length, another
//! request's `unique`, an impossible errno, a body of the wrong size, a directory entry
//! running past its reply, an unknown used token. Each is an error for its request (or,
//! for the token, for the device), never a panic.

use super::protocol::{self, NodeKind};
use super::*;
use crate::fake::*;
use alloc::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::task::Waker;
use virtio_drivers::transport::{DeviceStatus, DeviceType};

static INTERRUPT: futures_util::task::AtomicWaker = futures_util::task::AtomicWaker::new();

/// A request as the device sees it.
struct Posted {
    head: u16,
    request: Vec<u8>,
    /// The reply buffer: address and length.
    reply: Option<(u64, u32)>,
}

impl Posted {
    fn opcode(&self) -> u32 {
        u32::from_le_bytes(self.request[4..8].try_into().unwrap())
    }
    fn unique(&self) -> u64 {
        u64::from_le_bytes(self.request[8..16].try_into().unwrap())
    }
    fn node(&self) -> u64 {
        u64::from_le_bytes(self.request[16..24].try_into().unwrap())
    }
    fn args(&self) -> &[u8] {
        &self.request[40..]
    }
}

struct Fake {
    device: FakeDevice,
}

fn config(tag: &str) -> Vec<u8> {
    let mut config = vec![0u8; 40];
    config[..tag.len()].copy_from_slice(tag.as_bytes());
    config[36..40].copy_from_slice(&1u32.to_le_bytes());
    config
}

fn setup() -> (FsDevice<FakeHal, FakeTransport>, Fake) {
    let state = DeviceState {
        status: DeviceStatus::empty(),
        offered: Some(1 << 32),
        kind: Some(DeviceType::Sound), // virtio-drivers has no name for 26
        config: Some(config("share")),
        ..DeviceState::default()
    };
    let transport = FakeTransport(Arc::new(Mutex::new(state)));
    let device = FsDevice::<FakeHal, _>::new(transport.clone(), &INTERRUPT).unwrap();
    let fake = Fake {
        device: FakeDevice {
            transport,
            next_avail: [0; 3],
            next_used: [0; 3],
            header: 0,
            queue_size: QUEUE as u16,
        },
    };
    (device, fake)
}

fn waker() -> (Waker, Arc<CountingWaker>) {
    let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
    (Waker::from(counter.clone()), counter)
}

impl Fake {
    fn take(&mut self) -> Option<Posted> {
        let (head, parts) = self.device.take_avail_chain(1)?;
        let (address, length) = parts[0];
        let request = (0..u64::from(length))
            .map(|i| read::<u8>(address + i))
            .collect();
        Some(Posted {
            head,
            request,
            reply: parts.get(1).copied(),
        })
    }

    /// Writes `bytes` into the reply buffer (as far as it goes) and returns the chain
    /// with used length `used`.
    fn answer_raw(&mut self, posted: &Posted, bytes: &[u8], used: u32) {
        if let Some((address, length)) = posted.reply {
            for (i, byte) in bytes.iter().take(length as usize).enumerate() {
                write::<u8>(address + i as u64, *byte);
            }
        }
        self.device.put_used(1, posted.head, used);
    }

    /// A well-formed reply: header (error 0) and `body`.
    fn answer(&mut self, posted: &Posted, body: &[u8]) {
        let reply = reply_bytes(posted.unique(), 0, body);
        let used = reply.len() as u32;
        self.answer_raw(posted, &reply, used);
    }
}

fn reply_bytes(unique: u64, error: i32, body: &[u8]) -> Vec<u8> {
    let mut reply = Vec::new();
    reply.extend_from_slice(&((16 + body.len()) as u32).to_le_bytes());
    reply.extend_from_slice(&error.to_le_bytes());
    reply.extend_from_slice(&unique.to_le_bytes());
    reply.extend_from_slice(body);
    reply
}

/// A `fuse_entry_out` for node `node`, a regular file of `size` bytes.
fn entry_out(node: u64, size: u64, mode: u32) -> Vec<u8> {
    let mut body = vec![0u8; 128];
    body[0..8].copy_from_slice(&node.to_le_bytes());
    body[40..48].copy_from_slice(&node.to_le_bytes()); // ino
    body[48..56].copy_from_slice(&size.to_le_bytes());
    body[100..104].copy_from_slice(&mode.to_le_bytes());
    body
}

/// Posts `message` and returns its ticket.
fn post(device: &mut FsDevice<FakeHal, FakeTransport>, message: protocol::Message) -> Ticket {
    let (waker, _) = waker();
    match device.submit(message, &waker) {
        Submission::Posted(ticket) => ticket,
        other => panic!("not posted: {other:?}"),
    }
}

fn finish(device: &mut FsDevice<FakeHal, FakeTransport>, ticket: Ticket) -> Outcome {
    let (waker, _) = waker();
    match device.complete(ticket, &waker) {
        Completion::Finished(outcome) => outcome,
        Completion::Pending(_) => panic!("still pending"),
    }
}

/// One request and the reply `respond` gives it.
fn round_trip(
    message: protocol::Message,
    respond: impl FnOnce(&mut Fake, &Posted),
) -> (Outcome, FsStats) {
    let (mut device, mut fake) = setup();
    let ticket = post(&mut device, message);
    let posted = fake.take().expect("a request on the request queue");
    respond(&mut fake, &posted);
    let outcome = finish(&mut device, ticket);
    (outcome, device.stats())
}

#[test]
fn the_tag_comes_from_the_configuration_space() {
    let (device, fake) = setup();
    assert_eq!(device.tag(), "share");
    // Both queues are set up; the request queue is queue 1.
    assert_ne!(fake.device.rings(0).0, 0);
    assert_ne!(fake.device.rings(1).0, 0);
}

#[test]
fn init_is_encoded_and_its_reply_parsed() {
    let (outcome, _) = round_trip(protocol::init(), |fake, posted| {
        assert_eq!(posted.opcode(), 26);
        assert_eq!(posted.request.len(), 56);
        assert_eq!(
            u32::from_le_bytes(posted.request[0..4].try_into().unwrap()),
            56
        );
        assert_eq!(&posted.args()[..8], &[7, 0, 0, 0, 31, 0, 0, 0]);
        let mut body = vec![0u8; 64];
        body[0..4].copy_from_slice(&7u32.to_le_bytes());
        body[4..8].copy_from_slice(&36u32.to_le_bytes());
        body[20..24].copy_from_slice(&(128 * 1024u32).to_le_bytes());
        fake.answer(posted, &body);
    });
    let init = protocol::parse_init(&outcome.unwrap()).unwrap();
    assert_eq!(
        (init.major, init.minor, init.max_write),
        (7, 36, 128 * 1024)
    );
}

#[test]
fn a_lookup_names_the_parent_and_the_name_and_gets_the_entry() {
    let name = "ñandú-".repeat(20) + "x";
    let message = protocol::lookup(protocol::ROOT, &name).unwrap();
    let (outcome, _) = round_trip(message, |fake, posted| {
        assert_eq!(posted.opcode(), 1);
        assert_eq!(posted.node(), protocol::ROOT);
        assert_eq!(posted.args(), [name.as_bytes(), &[0]].concat());
        assert_eq!(posted.reply.unwrap().1, 16 + 128);
        fake.answer(posted, &entry_out(42, 1234, 0o100644));
    });
    let entry = protocol::parse_entry(&outcome.unwrap()).unwrap();
    assert_eq!(entry.node, 42);
    assert_eq!(entry.attributes.size, 1234);
    assert_eq!(entry.attributes.kind, NodeKind::File);
}

#[test]
fn names_that_cannot_be_sent_are_refused_before_the_device() {
    assert!(protocol::lookup(1, "").is_err());
    assert!(protocol::lookup(1, "a/b").is_err());
    assert!(protocol::lookup(1, &"a".repeat(256)).is_err());
    assert!(protocol::lookup(1, &"a".repeat(255)).is_ok());
    assert!(protocol::rename(1, "a", 1, "").is_err());
}

#[test]
fn an_error_reply_is_the_errno() {
    let (outcome, stats) = round_trip(protocol::lookup(1, "missing").unwrap(), |fake, posted| {
        let reply = reply_bytes(posted.unique(), -2, &[]);
        fake.answer_raw(posted, &reply, 16);
    });
    assert_eq!(
        outcome.unwrap_err(),
        FuseError::Errno {
            opcode: "LOOKUP",
            errno: 2
        }
    );
    assert_eq!(stats.bad_replies, 0);
}

#[test]
fn a_used_length_past_the_buffer_is_refused() {
    let (outcome, stats) = round_trip(protocol::getattr(5), |fake, posted| {
        let capacity = posted.reply.unwrap().1;
        let reply = reply_bytes(posted.unique(), 0, &[0; 104]);
        fake.answer_raw(posted, &reply, capacity + 4096);
    });
    assert!(matches!(outcome, Err(FuseError::Oversized { .. })));
    assert_eq!(stats.bad_replies, 1);
}

#[test]
fn a_reply_shorter_than_a_header_is_refused() {
    let (outcome, stats) = round_trip(protocol::getattr(5), |fake, posted| {
        let reply = reply_bytes(posted.unique(), 0, &[]);
        fake.answer_raw(posted, &reply, 7);
    });
    assert!(matches!(outcome, Err(FuseError::Short { length: 7, .. })));
    assert_eq!(stats.bad_replies, 1);
}

#[test]
fn a_header_length_other_than_the_used_length_is_refused() {
    let (outcome, _) = round_trip(protocol::getattr(5), |fake, posted| {
        let mut reply = reply_bytes(posted.unique(), 0, &[0; 104]);
        reply[0..4].copy_from_slice(&9999u32.to_le_bytes());
        fake.answer_raw(posted, &reply, 120);
    });
    assert_eq!(
        outcome.unwrap_err(),
        FuseError::LengthMismatch {
            header: 9999,
            used: 120
        }
    );
}

#[test]
fn a_reply_to_another_request_is_refused() {
    let (outcome, _) = round_trip(protocol::getattr(5), |fake, posted| {
        let reply = reply_bytes(posted.unique() + 2, 0, &[0; 104]);
        fake.answer_raw(posted, &reply, 120);
    });
    assert!(matches!(outcome, Err(FuseError::UniqueMismatch { .. })));
}

#[test]
fn an_error_field_that_is_no_errno_is_refused() {
    for error in [5, -5000, i32::MIN] {
        let (outcome, _) = round_trip(protocol::getattr(5), |fake, posted| {
            let reply = reply_bytes(posted.unique(), error, &[]);
            fake.answer_raw(posted, &reply, 16);
        });
        assert_eq!(outcome.unwrap_err(), FuseError::BadErrno { error });
    }
}

#[test]
fn a_body_of_the_wrong_size_for_the_opcode_is_refused() {
    // A GETATTR-sized body in answer to a LOOKUP (another opcode's reply shape).
    let (outcome, _) = round_trip(protocol::lookup(1, "a").unwrap(), |fake, posted| {
        fake.answer(posted, &[0; 104]);
    });
    assert_eq!(
        protocol::parse_entry(&outcome.unwrap()).unwrap_err(),
        FuseError::BodySize {
            opcode: "LOOKUP",
            expected: 128,
            got: 104
        }
    );
    let (outcome, _) = round_trip(protocol::init(), |fake, posted| {
        fake.answer(posted, &[7, 0, 0, 0]);
    });
    assert!(protocol::parse_init(&outcome.unwrap()).is_err());
}

#[test]
fn a_write_reply_claiming_more_than_was_sent_is_refused() {
    let data = [1u8; 100];
    let (outcome, _) = round_trip(protocol::write(7, 3, 0, &data), |fake, posted| {
        assert_eq!(&posted.args()[40..], &data);
        let mut body = vec![0u8; 8];
        body[0..4].copy_from_slice(&101u32.to_le_bytes());
        fake.answer(posted, &body);
    });
    assert!(matches!(
        protocol::parse_write(&outcome.unwrap(), data.len()),
        Err(FuseError::Overcount { claimed: 101, .. })
    ));
}

fn dirent(ino: u64, next: u64, kind: u32, name: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&ino.to_le_bytes());
    bytes.extend_from_slice(&next.to_le_bytes());
    bytes.extend_from_slice(&(name.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&kind.to_le_bytes());
    bytes.extend_from_slice(name.as_bytes());
    bytes.resize(bytes.len().next_multiple_of(8), 0);
    bytes
}

#[test]
fn directory_entries_are_parsed_and_malformed_ones_refused() {
    let body = [
        dirent(2, 1, 4, "sub"),
        dirent(3, 2, 8, "größe.txt"),
        dirent(4, 3, 8, &"L".repeat(255)),
    ]
    .concat();
    let (outcome, _) = round_trip(protocol::read(9, 1, 0, 4096, true), |fake, posted| {
        assert_eq!(posted.opcode(), 28);
        fake.answer(posted, &body);
    });
    let entries = protocol::parse_dirents(&outcome.unwrap()).unwrap();
    let names: Vec<_> = entries.iter().map(|entry| entry.name.as_str()).collect();
    assert_eq!(names, ["sub", "größe.txt", &"L".repeat(255)]);
    assert_eq!(entries[0].kind, NodeKind::Directory);
    assert_eq!(entries[2].next, 3);

    // A name length past the reply, a zero length, a header cut short.
    let mut past = dirent(2, 1, 8, "abc");
    past[16..20].copy_from_slice(&200u32.to_le_bytes());
    let mut zero = dirent(2, 1, 8, "abc");
    zero[16..20].copy_from_slice(&0u32.to_le_bytes());
    let cut = [dirent(2, 1, 8, "abc"), vec![0; 10]].concat();
    for (body, offset) in [(past, 0), (zero, 0), (cut, 32)] {
        let (outcome, _) = round_trip(protocol::read(9, 1, 0, 4096, true), |fake, posted| {
            fake.answer(posted, &body);
        });
        assert_eq!(
            protocol::parse_dirents(&outcome.unwrap()).unwrap_err(),
            FuseError::BadDirent { offset }
        );
    }
}

#[test]
fn forget_has_no_reply_buffer_and_completes_with_length_zero() {
    let (outcome, _) = round_trip(protocol::forget(42, 1), |fake, posted| {
        assert_eq!(posted.opcode(), 2);
        assert!(posted.reply.is_none());
        assert_eq!(posted.args(), 1u64.to_le_bytes());
        fake.answer_raw(posted, &[], 0);
    });
    assert!(outcome.unwrap().body.is_empty());
}

#[test]
fn requests_complete_in_any_order_with_their_own_replies() {
    let (mut device, mut fake) = setup();
    let first = post(&mut device, protocol::getattr(10));
    let second = post(&mut device, protocol::getattr(11));
    let posted_first = fake.take().unwrap();
    let posted_second = fake.take().unwrap();
    assert_ne!(posted_first.unique(), posted_second.unique());
    let attr = |size: u64| {
        let mut body = vec![0u8; 104];
        body[24..32].copy_from_slice(&size.to_le_bytes());
        body
    };
    fake.answer(&posted_second, &attr(222));
    let (waker, _) = waker();
    let first = match device.complete(first, &waker) {
        Completion::Pending(ticket) => ticket,
        Completion::Finished(outcome) => panic!("finished early: {outcome:?}"),
    };
    let second = finish(&mut device, second).unwrap();
    assert_eq!(protocol::parse_attributes(&second).unwrap().size, 222);
    fake.answer(&posted_first, &attr(111));
    let first = finish(&mut device, first).unwrap();
    assert_eq!(protocol::parse_attributes(&first).unwrap().size, 111);
}

#[test]
fn a_full_table_hands_the_request_back_and_wakes_when_one_frees() {
    let (mut device, mut fake) = setup();
    let tickets: Vec<_> = (0..QUEUE / 2)
        .map(|node| post(&mut device, protocol::getattr(node as u64)))
        .collect();
    let (waker, woken) = waker();
    assert!(matches!(
        device.submit(protocol::getattr(99), &waker),
        Submission::Full(_)
    ));
    assert_eq!(device.stats().full, 1);
    let posted = fake.take().unwrap();
    fake.answer(&posted, &[0; 104]);
    let mut tickets = tickets.into_iter();
    finish(&mut device, tickets.next().unwrap()).unwrap();
    assert_eq!(woken.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(matches!(
        device.submit(protocol::getattr(99), &waker),
        Submission::Posted(_)
    ));
}

#[test]
fn an_abandoned_request_is_freed_when_the_device_returns_it() {
    let (mut device, mut fake) = setup();
    let ticket = post(&mut device, protocol::getattr(1));
    device.abandon(ticket);
    let posted = fake.take().unwrap();
    // The device writes the reply after the caller gave up: the buffer is still there.
    fake.answer(&posted, &[0; 104]);
    let (waker, _) = waker();
    assert!(matches!(
        device.poll_completions(&mut std::task::Context::from_waker(&waker)),
        std::task::Poll::Pending
    ));
    assert_eq!(device.stats().completed, 1);
}

#[test]
fn an_unknown_used_token_takes_the_device_out_of_service() {
    let (mut device, mut fake) = setup();
    let ticket = post(&mut device, protocol::getattr(1));
    let posted = fake.take().unwrap();
    fake.device.put_used(1, posted.head + 7, 16);
    assert_eq!(finish(&mut device, ticket).unwrap_err(), FuseError::Broken);
    let (waker, _) = waker();
    assert!(matches!(
        device.submit(protocol::getattr(1), &waker),
        Submission::Finished(Err(FuseError::Broken))
    ));
    assert_eq!(device.stats().bad_replies, 1);
}

#[test]
fn a_request_larger_than_the_device_takes_is_refused() {
    let (mut device, _fake) = setup();
    let (waker, _) = waker();
    let data = vec![0u8; MAX_REQUEST];
    assert!(matches!(
        device.submit(protocol::write(1, 1, 0, &data), &waker),
        Submission::Finished(Err(FuseError::TooLarge { .. }))
    ));
}

#[test]
fn requests_have_the_sizes_of_their_fuse_structures() {
    // fuse_in_header + fuse_setattr_in, fuse_open_in, fuse_read_in, fuse_release_in,
    // fuse_fsync_in, fuse_getattr_in, fuse_forget_in.
    let header = protocol::IN_HEADER;
    assert_eq!(protocol::truncate(1, 2, 3).bytes().len(), header + 88);
    assert_eq!(protocol::open(1, 0, false).bytes().len(), header + 8);
    assert_eq!(protocol::read(1, 2, 3, 4, false).bytes().len(), header + 40);
    assert_eq!(protocol::release(1, 2, 0, true).bytes().len(), header + 24);
    assert_eq!(protocol::fsync(1, 2).bytes().len(), header + 16);
    assert_eq!(protocol::getattr(1).bytes().len(), header + 16);
    assert_eq!(protocol::forget(1, 1).bytes().len(), header + 8);
    assert_eq!(
        protocol::write(1, 2, 3, b"abc").bytes().len(),
        header + 40 + 3
    );
    assert_eq!(
        protocol::create(1, "n", 0, 0).unwrap().bytes().len(),
        header + 16 + 2
    );
    assert_eq!(
        protocol::mkdir(1, "n", 0).unwrap().bytes().len(),
        header + 8 + 2
    );
    assert_eq!(
        protocol::rename(1, "a", 2, "b").unwrap().bytes().len(),
        header + 8 + 4
    );
}

mod mmio_transport {
    //! The register-level virtio-mmio transport against discovery's fake window.
    use super::super::mmio::{MmioError, MmioRegisters};
    use crate::discovery::fake::FakeWindow;
    use virtio_drivers::transport::{DeviceStatus, Transport};

    fn window(version: u32) -> FakeWindow {
        let window = FakeWindow::virtio_mmio(version, 26);
        // The tag "share" and one request queue at the start of the configuration space.
        for (index, chunk) in b"share\0\0\0".chunks(4).enumerate() {
            window.set32(
                0x100 + 4 * index as u64,
                u32::from_le_bytes(chunk.try_into().unwrap()),
            );
        }
        window.set32(0x100 + 36, 1);
        window
    }

    #[test]
    fn only_a_virtio_mmio_header_is_taken() {
        let bad = window(2);
        bad.set32(0, 0x1234);
        assert_eq!(
            MmioRegisters::new(&bad, 0x200).unwrap_err(),
            MmioError::BadMagic(0x1234)
        );
        assert_eq!(
            MmioRegisters::new(&window(3), 0x200).unwrap_err(),
            MmioError::BadVersion(3)
        );
        let empty = window(2);
        empty.set32(8, 0);
        assert_eq!(
            MmioRegisters::new(&empty, 0x200).unwrap_err(),
            MmioError::NoDevice
        );
        assert_eq!(
            MmioRegisters::new(&window(1), 0x200).unwrap().device_id(),
            26
        );
    }

    #[test]
    fn configuration_reads_at_any_offset_and_never_past_the_window() {
        let window = window(2);
        let transport = MmioRegisters::new(&window, 0x200).unwrap();
        assert_eq!(transport.read_config_space::<u8>(0).unwrap(), b's');
        assert_eq!(transport.read_config_space::<u8>(3).unwrap(), b'r');
        assert_eq!(
            transport.read_config_space::<u16>(2).unwrap(),
            u16::from_le_bytes([b'a', b'r'])
        );
        assert_eq!(transport.read_config_space::<u32>(36).unwrap(), 1);
        assert!(transport.read_config_space::<u32>(0xfe).is_err());
        let small = MmioRegisters::new(&window, 0x104).unwrap();
        assert!(small.read_config_space::<u32>(4).is_err());
    }

    #[test]
    fn legacy_queues_go_by_page_frame_and_modern_ones_by_address() {
        let legacy = window(1);
        let mut transport = MmioRegisters::new(&legacy, 0x200).unwrap();
        assert!(transport.requires_legacy_layout());
        transport.queue_set(1, 128, 0x5000, 0x5800, 0x6000);
        assert_eq!(legacy.get32(0x30), 1);
        assert_eq!(legacy.get32(0x38), 128);
        assert_eq!(legacy.get32(0x3c), 4096);
        assert_eq!(legacy.get32(0x40), 5);
        assert!(transport.queue_used(1));
        transport.queue_unset(1);
        assert!(!transport.queue_used(1));

        let modern = window(2);
        let mut transport = MmioRegisters::new(&modern, 0x200).unwrap();
        assert!(!transport.requires_legacy_layout());
        transport.queue_set(0, 8, 0x1_2345_6000, 0x7000, 0x8000);
        assert_eq!((modern.get32(0x80), modern.get32(0x84)), (0x2345_6000, 1));
        assert_eq!((modern.get32(0x90), modern.get32(0xa0)), (0x7000, 0x8000));
        assert_eq!(modern.get32(0x44), 1);
        transport.set_status(DeviceStatus::ACKNOWLEDGE);
        assert_eq!(transport.get_status(), DeviceStatus::ACKNOWLEDGE);
        drop(transport);
        assert_eq!(
            modern.get32(0x70),
            0,
            "dropping the transport resets the device"
        );
    }

    #[test]
    fn the_fs_driver_runs_over_it() {
        // Feature negotiation and both queues set up through the register transport.
        let mut window = window(2);
        // One register stands for every queue's QueueReady here: keep it at 0, or the
        // second queue would look taken.
        window.read_only.push(0x44);
        window.set32(0x34, 256); // QueueNumMax
        window.set32(0x10, 0); // features: low word (the high word reads the same)
        let transport = MmioRegisters::new(&window, 0x200).unwrap();
        let device =
            super::super::FsDevice::<crate::fake::FakeHal, _>::new(transport, &super::INTERRUPT);
        // A device offering no VERSION_1 is still taken (legacy); the tag comes through.
        let device = device.unwrap();
        assert_eq!(device.tag(), "share");
    }
}

/// Seeded random replies (lengths, headers, bodies, directory entries) through every
/// check and parser: each is an answer or an error, never a panic.
#[test]
fn seeded_random_replies_never_panic() {
    use protocol::Opcode;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let opcodes = [
        Opcode::Init,
        Opcode::Lookup,
        Opcode::Getattr,
        Opcode::Open,
        Opcode::Create,
        Opcode::Write,
        Opcode::Readdir,
        Opcode::Unlink,
    ];
    let mut answered = 0;
    for round in 0..20_000u64 {
        let opcode = opcodes[(next() % opcodes.len() as u64) as usize];
        let capacity = (next() % 600) as usize;
        let mut buffer: Vec<u8> = (0..capacity).map(|_| next() as u8).collect();
        let used = match next() % 4 {
            0 => next() as u32,
            _ => (next() % (capacity as u64 + 40)) as u32,
        };
        let unique = round * 2;
        // Mostly well-formed headers, so the parsers behind them get random bodies.
        if capacity >= 16 && next() % 4 != 0 {
            buffer[0..4].copy_from_slice(&used.to_le_bytes());
            let error: i32 = if next() % 8 == 0 {
                -(next() as i32 % 200)
            } else {
                0
            };
            buffer[4..8].copy_from_slice(&error.to_le_bytes());
            buffer[8..16].copy_from_slice(&unique.to_le_bytes());
        }
        let Ok(reply) = protocol::check_reply(opcode, unique, buffer, used) else {
            continue;
        };
        answered += 1;
        assert!(reply.body.len() + 16 == used as usize);
        let _ = protocol::parse_init(&reply);
        let _ = protocol::parse_entry(&reply);
        let _ = protocol::parse_attributes(&reply);
        let _ = protocol::parse_open(&reply);
        let _ = protocol::parse_create(&reply);
        let _ = protocol::parse_write(&reply, (next() % 300) as usize);
        let _ = protocol::parse_empty(&reply);
        if let Ok(entries) = protocol::parse_dirents(&reply) {
            assert!(entries.iter().all(|entry| !entry.name.is_empty()));
        }
    }
    // The generator must reach the parsers, not only the header checks.
    assert!(
        answered > 1000,
        "only {answered} replies passed the header checks"
    );
}
