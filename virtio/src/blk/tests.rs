//! The block driver against a fake device that walks descriptor chains (direct and
//! indirect) and writes used entries as QEMU does: requests carry the right header, data
//! and status; many are in flight and complete in any order; the table's limit is
//! backpressure, not an error; refused requests never reach the device; an abandoned
//! request keeps its buffer until the device returns it; hostile used entries (unknown
//! tokens, lengths past the buffer, unwritten status) are counted and fail requests, never
//! the driver.
//!
//! The fake device writes buffers after their callers gave up on them, so Miri checks the
//! DMA ownership claims (no use after free, no aliasing violation) when run by hand (it
//! needs nightly: `rustup component add --toolchain nightly miri rust-src`):
//! `MIRIFLAGS="-Zmiri-permissive-provenance -Zmiri-ignore-leaks" cargo +nightly miri test
//! -p torito-virtio blk:: -- --skip seeded` (about a minute; leaks are deliberate: a
//! broken device's buffers are never freed). Freeing an abandoned request's buffer at once
//! makes it report a use after free.

use super::*;
use crate::fake::*;
use alloc::sync::Arc;
use core::sync::atomic::{Ordering, fence};
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use virtio_drivers::transport::{DeviceStatus, DeviceType};

const CAPACITY: u64 = 1000;
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const DESC_F_INDIRECT: u16 = 4;

/// One buffer of a chain: address, length, device-writable.
#[derive(Debug, Clone, Copy)]
struct Part {
    address: u64,
    length: u32,
    writable: bool,
}

/// A request as the device sees it.
#[derive(Debug)]
struct Posted {
    head: u16,
    kind: u32,
    sector: u64,
    parts: Vec<Part>,
}

impl Posted {
    /// The data part (between header and status), if any.
    fn data(&self) -> Option<Part> {
        (self.parts.len() == 3).then(|| self.parts[1])
    }

    fn status(&self) -> Part {
        *self.parts.last().unwrap()
    }

    /// Writes `status` (and, for a read, `fill` over the data) and returns the chain as
    /// used with the length a well-behaved device reports.
    fn answer(&self, device: &mut BlockFake, status: u8, fill: u8) {
        let mut written = 1;
        if let Some(data) = self.data().filter(|data| data.writable) {
            for offset in 0..u64::from(data.length) {
                write::<u8>(data.address + offset, fill);
            }
            written += data.length;
        }
        write::<u8>(self.status().address, status);
        device.put_used(self.head, written);
    }

    fn bytes(&self) -> Vec<u8> {
        let data = self.data().expect("a data part");
        (0..u64::from(data.length))
            .map(|offset| read::<u8>(data.address + offset))
            .collect()
    }
}

/// The device side of the request queue.
struct BlockFake {
    transport: FakeTransport,
    next_avail: u16,
    next_used: u16,
}

impl BlockFake {
    fn rings(&self) -> (u64, u64, u64) {
        self.transport.0.lock().unwrap().rings[0]
    }

    fn notifications(&self) -> usize {
        self.transport.0.lock().unwrap().notifications[0]
    }

    fn descriptor(table: u64, index: u16) -> (Part, u16, u16) {
        let entry = table + 16 * u64::from(index);
        let flags = read::<u16>(entry + 12);
        (
            Part {
                address: read::<u64>(entry),
                length: read::<u32>(entry + 8),
                writable: flags & DESC_F_WRITE != 0,
            },
            flags,
            read::<u16>(entry + 14),
        )
    }

    /// Follows a chain from `index` in `table`.
    fn chain(table: u64, mut index: u16) -> Vec<Part> {
        let mut parts = Vec::new();
        loop {
            let (part, flags, next) = Self::descriptor(table, index);
            parts.push(part);
            if flags & DESC_F_NEXT == 0 {
                return parts;
            }
            index = next;
        }
    }

    /// The next request the driver made available.
    fn take(&mut self) -> Option<Posted> {
        let (desc, avail, _) = self.rings();
        if read::<u16>(avail + 2) == self.next_avail {
            return None;
        }
        let slot = u64::from(self.next_avail % QUEUE as u16);
        let head = read::<u16>(avail + 4 + 2 * slot);
        self.next_avail = self.next_avail.wrapping_add(1);
        let (first, flags, _) = Self::descriptor(desc, head);
        let parts = if flags & DESC_F_INDIRECT != 0 {
            Self::chain(first.address, 0)
        } else {
            Self::chain(desc, head)
        };
        assert_eq!(parts[0].length, 16, "a 16-byte header first");
        assert!(!parts[0].writable);
        let status = parts.last().unwrap();
        assert_eq!(status.length, 1, "a one-byte status last");
        assert!(status.writable);
        Some(Posted {
            head,
            kind: little_endian(parts[0].address, 4) as u32,
            sector: little_endian(parts[0].address + 8, 8),
            parts,
        })
    }

    fn take_all(&mut self) -> Vec<Posted> {
        core::iter::from_fn(|| self.take()).collect()
    }

    fn put_used(&mut self, id: u16, length: u32) {
        let (_, _, used) = self.rings();
        let slot = u64::from(self.next_used % QUEUE as u16);
        write::<u32>(used + 4 + 8 * slot, u32::from(id));
        write::<u32>(used + 8 + 8 * slot, length);
        self.next_used = self.next_used.wrapping_add(1);
        fence(Ordering::SeqCst);
        write::<u16>(used + 2, self.next_used);
    }
}

/// A little-endian number of `bytes` bytes at `address`, read byte by byte: the header
/// is a byte array, with no alignment to rely on.
fn little_endian(address: u64, bytes: u64) -> u64 {
    (0..bytes).fold(0, |value, index| {
        value | u64::from(read::<u8>(address + index)) << (8 * index)
    })
}

type Driver = BlockDevice<FakeHal, FakeTransport>;

fn setup_with(offered: u64) -> (Driver, BlockFake, &'static AtomicWaker) {
    let mut config = CAPACITY.to_le_bytes().to_vec();
    config.resize(64, 0);
    let state = DeviceState {
        offered: Some(offered),
        kind: Some(DeviceType::Block),
        config: Some(config),
        ..DeviceState::default()
    };
    let transport = FakeTransport(Arc::new(Mutex::new(state)));
    let interrupt: &'static AtomicWaker = Box::leak(Box::new(AtomicWaker::new()));
    let driver = BlockDevice::new(transport.clone(), interrupt).unwrap();
    let device = BlockFake {
        transport,
        next_avail: 0,
        next_used: 0,
    };
    (driver, device, interrupt)
}

/// QEMU's offer: indirect descriptors, a write cache, the modern interface (and
/// EVENT_IDX, declined).
const QEMU: u64 = VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC | VIRTIO_BLK_F_FLUSH | 1 << 29;

fn setup() -> (Driver, BlockFake) {
    let (driver, device, _) = setup_with(QEMU);
    (driver, device)
}

fn counting() -> (Arc<CountingWaker>, Waker) {
    let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
    (counter.clone(), Waker::from(counter))
}

fn wakes(counter: &CountingWaker) -> usize {
    counter.0.load(Ordering::SeqCst)
}

fn posted(submission: Submission) -> Ticket {
    match submission {
        Submission::Posted(ticket) => ticket,
        other => panic!("not posted: {other:?}"),
    }
}

fn finished(completion: Completion) -> Outcome {
    match completion {
        Completion::Finished(outcome) => outcome,
        Completion::Pending(_) => panic!("still pending"),
    }
}

fn sectors(count: usize, fill: u8) -> Buffer {
    let mut buffer = Buffer::new(count).unwrap();
    buffer.fill(fill);
    buffer
}

#[test]
fn negotiates_features_and_reads_capacity() {
    let (driver, device) = setup();
    let state = device.transport.0.lock().unwrap();
    assert_eq!(
        state.features,
        VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC | VIRTIO_BLK_F_FLUSH,
        "EVENT_IDX declined"
    );
    assert!(state.status.contains(DeviceStatus::DRIVER_OK));
    assert_eq!(driver.capacity(), CAPACITY);
    assert!(!driver.read_only());
    assert_eq!(driver.in_flight_limit(), QUEUE);
}

#[test]
fn a_read_waits_for_the_device_and_returns_its_bytes() {
    let (mut driver, mut device, interrupt) = setup_with(QEMU);
    let (counter, waker) = counting();
    let ticket = posted(driver.submit(Request::read(7, sectors(2, 0)), &waker));
    assert_eq!(
        device.notifications(),
        1,
        "one notification for the request"
    );
    let ticket = match driver.complete(ticket, &waker) {
        Completion::Pending(ticket) => ticket,
        Completion::Finished(outcome) => panic!("finished before the device: {outcome:?}"),
    };
    let request = device.take().expect("a posted request");
    assert_eq!((request.kind, request.sector), (TYPE_IN, 7));
    let data = request.data().unwrap();
    assert_eq!(data.length, 1024);
    assert!(data.writable);
    request.answer(&mut device, STATUS_OK, 0x5a);
    // The interrupt wakes the completion task, which wakes the request's caller.
    let (task, task_waker) = counting();
    let mut context = Context::from_waker(&task_waker);
    assert!(driver.poll_completions(&mut context).is_pending());
    assert!(interrupt.take().is_some(), "the task's waker is registered");
    assert_eq!(wakes(&counter), 1, "the caller is woken");
    assert_eq!(wakes(&task), 0);
    let buffer = finished(driver.complete(ticket, &waker)).unwrap().unwrap();
    assert_eq!(buffer.len(), 1024);
    assert!(buffer.iter().all(|byte| *byte == 0x5a));
    assert_eq!(driver.stats().completed, 1);
}

#[test]
fn a_write_hands_its_bytes_to_the_device_and_gets_its_buffer_back() {
    let (mut driver, mut device) = setup();
    let (_, waker) = counting();
    let mut data = Buffer::new(3).unwrap();
    for (index, byte) in data.iter_mut().enumerate() {
        *byte = index as u8;
    }
    let ticket = posted(driver.submit(Request::write(997, data.clone()), &waker));
    let request = device.take().unwrap();
    assert_eq!((request.kind, request.sector), (TYPE_OUT, 997));
    assert!(!request.data().unwrap().writable);
    assert_eq!(request.bytes(), &data[..]);
    request.answer(&mut device, STATUS_OK, 0);
    assert_eq!(finished(driver.complete(ticket, &waker)), Ok(Some(data)));
}

#[test]
fn a_flush_is_posted_without_data_or_finished_at_once_without_a_cache() {
    let (mut driver, mut device) = setup();
    let (_, waker) = counting();
    let ticket = posted(driver.submit(Request::flush(), &waker));
    let request = device.take().unwrap();
    assert_eq!(request.kind, TYPE_FLUSH);
    assert_eq!(request.parts.len(), 2, "header and status only");
    request.answer(&mut device, STATUS_OK, 0);
    assert_eq!(finished(driver.complete(ticket, &waker)), Ok(None));

    let (mut driver, mut device, _) = setup_with(VIRTIO_F_VERSION_1);
    assert!(matches!(
        driver.submit(Request::flush(), &waker),
        Submission::Finished(Ok(None))
    ));
    assert!(device.take().is_none(), "nothing reaches the device");
}

#[test]
fn many_requests_in_flight_complete_in_any_order() {
    let (mut driver, mut device) = setup();
    let (counter, waker) = counting();
    let tickets: Vec<Ticket> = (0..QUEUE)
        .map(|index| posted(driver.submit(Request::read(index as u64, sectors(1, 0)), &waker)))
        .collect();
    // One more than the table holds: backpressure, the request comes back.
    let (full, full_waker) = counting();
    let Submission::Full(extra) = driver.submit(Request::read(0, sectors(1, 0)), &full_waker)
    else {
        panic!("the table should be full");
    };
    let requests = device.take_all();
    assert_eq!(requests.len(), QUEUE);
    // The device answers backwards, each read filled with its sector number.
    for request in requests.iter().rev() {
        request.answer(&mut device, STATUS_OK, request.sector as u8);
    }
    assert_eq!(wakes(&full), 0);
    let before = wakes(&counter);
    for (sector, ticket) in tickets.into_iter().enumerate() {
        let buffer = finished(driver.complete(ticket, &waker)).unwrap().unwrap();
        assert!(
            buffer.iter().all(|byte| *byte == sector as u8),
            "request {sector} got another request's bytes"
        );
    }
    assert_eq!(wakes(&counter) - before, QUEUE, "every caller woken once");
    assert_eq!(driver.stats().peak_in_flight, QUEUE as u64);
    assert!(wakes(&full) >= 1, "the waiting submitter is woken");
    posted(driver.submit(extra, &full_waker));
    assert_eq!(driver.stats().full, 1);
}

#[test]
fn without_indirect_descriptors_a_third_of_the_queue_is_in_flight() {
    let (mut driver, mut device, _) = setup_with(VIRTIO_F_VERSION_1);
    let (_, waker) = counting();
    assert_eq!(driver.in_flight_limit(), QUEUE / 3);
    let tickets: Vec<Ticket> = (0..QUEUE / 3)
        .map(|index| posted(driver.submit(Request::write(index as u64, sectors(1, 1)), &waker)))
        .collect();
    assert!(matches!(
        driver.submit(Request::read(0, sectors(1, 0)), &waker),
        Submission::Full(_)
    ));
    let requests = device.take_all();
    assert_eq!(requests.len(), QUEUE / 3);
    assert!(requests.iter().all(|request| request.parts.len() == 3));
    for request in &requests {
        request.answer(&mut device, STATUS_OK, 0);
    }
    for ticket in tickets {
        assert!(finished(driver.complete(ticket, &waker)).is_ok());
    }
}

#[test]
fn refused_requests_never_reach_the_device() {
    let (mut driver, mut device) = setup();
    let (_, waker) = counting();
    let refused = |submission| match submission {
        Submission::Finished(Err(error)) => error,
        other => panic!("not refused: {other:?}"),
    };
    assert_eq!(
        refused(driver.submit(Request::read(CAPACITY - 1, sectors(2, 0)), &waker)),
        BlockError::OutOfRange {
            sector: CAPACITY - 1,
            sectors: 2,
            capacity: CAPACITY
        }
    );
    assert_eq!(
        refused(driver.submit(Request::write(u64::MAX, sectors(1, 0)), &waker)),
        BlockError::OutOfRange {
            sector: u64::MAX,
            sectors: 1,
            capacity: CAPACITY
        },
        "no overflow past the end of the sector numbers"
    );
    assert!(device.take().is_none());
    assert_eq!(device.notifications(), 0);

    let (mut driver, mut device, _) = setup_with(QEMU | VIRTIO_BLK_F_RO);
    assert!(driver.read_only());
    assert_eq!(
        refused(driver.submit(Request::write(0, sectors(1, 0)), &waker)),
        BlockError::ReadOnly { sector: 0 }
    );
    assert!(device.take().is_none());
    // Reads of a read-only disk still work.
    posted(driver.submit(Request::read(0, sectors(1, 0)), &waker));
}

#[test]
fn buffer_sizes_are_whole_sectors() {
    assert_eq!(Buffer::new(0), Err(BlockError::BadBufferSize { length: 0 }));
    assert_eq!(
        Buffer::from_vec(vec![0; 513]),
        Err(BlockError::BadBufferSize { length: 513 })
    );
    assert_eq!(
        Buffer::from_vec(Vec::new()),
        Err(BlockError::BadBufferSize { length: 0 })
    );
    assert_eq!(Buffer::from_vec(vec![0; 1024]).unwrap().sectors(), 2);
    assert!(Buffer::new(Buffer::MAX_SECTORS + 1).is_err());
}

#[test]
fn a_device_error_status_fails_the_request_with_its_value() {
    let (mut driver, mut device) = setup();
    let (_, waker) = counting();
    let ticket = posted(driver.submit(Request::read(5, sectors(1, 0)), &waker));
    device.take().unwrap().answer(&mut device, 1, 0);
    assert_eq!(
        finished(driver.complete(ticket, &waker)),
        Err(BlockError::Device {
            status: 1,
            sector: 5
        })
    );
    // A status the device never wrote.
    let ticket = posted(driver.submit(Request::write(6, sectors(1, 0)), &waker));
    let request = device.take().unwrap();
    device.put_used(request.head, 0);
    assert_eq!(
        finished(driver.complete(ticket, &waker)),
        Err(BlockError::Device {
            status: STATUS_UNWRITTEN,
            sector: 6
        })
    );
}

#[test]
fn a_length_past_the_buffer_fails_that_request_alone() {
    let (mut driver, mut device) = setup();
    let (_, waker) = counting();
    let ticket = posted(driver.submit(Request::read(0, sectors(1, 0)), &waker));
    let request = device.take().unwrap();
    write::<u8>(request.status().address, STATUS_OK);
    device.put_used(request.head, 4096);
    assert_eq!(
        finished(driver.complete(ticket, &waker)),
        Err(BlockError::Untrusted {
            length: 4096,
            limit: 513
        })
    );
    assert_eq!(driver.stats().bad_used, 1);
    // The device stays in service.
    let ticket = posted(driver.submit(Request::read(1, sectors(1, 0)), &waker));
    device.take().unwrap().answer(&mut device, STATUS_OK, 9);
    assert!(finished(driver.complete(ticket, &waker)).is_ok());
}

#[test]
fn an_unknown_token_stops_the_device_without_freeing_its_buffers() {
    for (offered, bogus) in [
        (QEMU, 77u16),           // never posted
        (QEMU, 0x7fff),          // outside the queue
        (VIRTIO_F_VERSION_1, 1), // the second descriptor of a direct chain, not a head
    ] {
        let (mut driver, mut device, _) = setup_with(offered);
        let (counter, waker) = counting();
        let first = posted(driver.submit(Request::read(0, sectors(1, 0)), &waker));
        let second = posted(driver.submit(Request::write(1, sectors(1, 0)), &waker));
        let requests = device.take_all();
        assert_eq!(requests[0].head, 0);
        device.put_used(bogus, 1);
        let (task, task_waker) = counting();
        assert!(
            driver
                .poll_completions(&mut Context::from_waker(&task_waker))
                .is_ready(),
            "the completion task ends"
        );
        assert_eq!(wakes(&task), 0);
        assert_eq!(driver.stats().bad_used, 1);
        assert!(wakes(&counter) >= 2, "both callers are woken");
        assert_eq!(
            finished(driver.complete(first, &waker)),
            Err(BlockError::Broken)
        );
        driver.abandon(second);
        // The device may still write the leaked buffers: they are still mapped memory.
        requests[0].answer(&mut device, STATUS_OK, 3);
        assert!(matches!(
            driver.submit(Request::read(0, sectors(1, 0)), &waker),
            Submission::Finished(Err(BlockError::Broken))
        ));
    }
}

#[test]
fn an_abandoned_request_keeps_its_entry_until_the_device_returns_it() {
    let (mut driver, mut device) = setup();
    let (_, waker) = counting();
    let abandoned = posted(driver.submit(Request::read(0, sectors(1, 0)), &waker));
    driver.abandon(abandoned);
    let tickets: Vec<Ticket> = (1..QUEUE)
        .map(|index| posted(driver.submit(Request::read(index as u64, sectors(1, 0)), &waker)))
        .collect();
    let (full, full_waker) = counting();
    assert!(
        matches!(
            driver.submit(Request::flush(), &full_waker),
            Submission::Full(_)
        ),
        "the abandoned request still holds its entry (and buffer)"
    );
    let requests = device.take_all();
    // The device writes the abandoned buffer after the caller left: it is still owned by
    // the driver, so this is memory the driver holds, not freed memory.
    requests[0].answer(&mut device, STATUS_OK, 0xee);
    let (task, task_waker) = counting();
    assert!(
        driver
            .poll_completions(&mut Context::from_waker(&task_waker))
            .is_pending()
    );
    assert_eq!(wakes(&task), 0);
    assert_eq!(wakes(&full), 1, "the entry freed: the submitter is woken");
    posted(driver.submit(Request::flush(), &full_waker));
    // Abandoning a finished request frees its entry at once.
    requests[1].answer(&mut device, STATUS_OK, 0);
    let mut tickets = tickets.into_iter();
    let finished_ticket = tickets.next().unwrap();
    let ticket = match driver.complete(tickets.next().unwrap(), &waker) {
        Completion::Pending(ticket) => ticket,
        Completion::Finished(_) => panic!("request 2 was not answered"),
    };
    driver.abandon(finished_ticket);
    assert!(matches!(
        driver.submit(Request::flush(), &full_waker),
        Submission::Posted(_)
    ));
    driver.abandon(ticket);
}

/// A small deterministic generator for the seeded runs below (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// What the fake device answered to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// Status OK and an honest length; a read's data filled with this byte.
    Good(u8),
    /// An error status.
    Status(u8),
    /// Status OK but a length past what the request let the device write.
    TooLong,
}

/// A caller's request: its ticket, what it asked, where (reads and writes get sectors
/// of their own, so the sector names the request on both sides).
struct Caller {
    ticket: Ticket,
    operation: Operation,
    sector: u64,
    sectors: usize,
}

/// Seeded runs of a device that answers in any order, with error statuses, impossible
/// lengths and (in some runs) a token it was never given, against callers that submit,
/// complete and abandon at random. Nothing may panic; each outcome must be the one the
/// device's answer calls for; an unknown token must stop the device, after which nothing
/// succeeds; the counters must add up.
#[test]
fn seeded_hostile_devices_never_break_the_driver() {
    for seed in 1..=200u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let offered = if seed % 2 == 0 {
            QEMU
        } else {
            VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_FLUSH
        };
        let (mut driver, mut device, _) = setup_with(offered);
        let (_, waker) = counting();
        let mut callers: Vec<Caller> = Vec::new();
        let mut held: Vec<Posted> = Vec::new();
        // Answers to reads and writes by sector; to flushes, just what they can be.
        let mut answers = std::collections::HashMap::new();
        let mut next_sector = 0;
        let mut bogus = false;
        let mut too_long = 0;
        for step in 0..400 {
            match rng.below(12) {
                0..=4 => {
                    let count = 1 + rng.below(4) as usize;
                    let (request, in_range) = match rng.below(4) {
                        0 => (Request::flush(), true),
                        1 => {
                            // Past the end, or straddling it.
                            let sector = CAPACITY + 1 - count as u64 + rng.below(4);
                            (Request::read(sector, sectors(count, 0)), false)
                        }
                        kind => {
                            let sector = next_sector;
                            next_sector += count as u64;
                            assert!(next_sector <= CAPACITY, "the run needs a bigger disk");
                            let data = sectors(count, 0x77);
                            let request = if kind == 2 {
                                Request::read(sector, data)
                            } else {
                                Request::write(sector, data)
                            };
                            (request, true)
                        }
                    };
                    let (operation, sector) = (request.operation, request.sector);
                    match driver.submit(request, &waker) {
                        Submission::Posted(ticket) => {
                            assert!(in_range && !driver.requests.broken(), "seed {seed}: posted");
                            callers.push(Caller {
                                ticket,
                                operation,
                                sector,
                                sectors: count,
                            });
                        }
                        Submission::Full(_) => assert!(driver.requests.is_full(), "seed {seed}"),
                        Submission::Finished(Err(BlockError::OutOfRange { .. })) => {
                            assert!(!in_range, "seed {seed}: refused a request in range")
                        }
                        Submission::Finished(Err(BlockError::Broken)) => assert!(bogus),
                        other => panic!("seed {seed}: {other:?}"),
                    }
                }
                5..=7 => {
                    held.extend(device.take_all());
                    if held.is_empty() {
                        continue;
                    }
                    let request = held.swap_remove(rng.below(held.len() as u64) as usize);
                    let answer = match rng.below(8) {
                        0 => Answer::Status([1, 2, 7][rng.below(3) as usize]),
                        1 => Answer::TooLong,
                        _ => Answer::Good(rng.below(256) as u8),
                    };
                    match answer {
                        Answer::Good(fill) => request.answer(&mut device, STATUS_OK, fill),
                        Answer::Status(status) => request.answer(&mut device, status, 0),
                        Answer::TooLong => {
                            write::<u8>(request.status().address, STATUS_OK);
                            let most = request.data().map_or(0, |data| data.length) + 1;
                            device.put_used(request.head, most + 1 + rng.below(1000) as u32);
                            too_long += 1;
                        }
                    }
                    if request.kind != TYPE_FLUSH {
                        answers.insert(request.sector, answer);
                    }
                }
                8 if seed % 5 == 0 && !bogus && step > 200 => {
                    // A token never posted: the device turns hostile, midway.
                    let token = [QUEUE as u16 - 1, 0x1234][rng.below(2) as usize];
                    if !driver.requests.in_flight_under(token) {
                        device.put_used(token, 1);
                        bogus = true;
                    }
                }
                _ => {
                    if callers.is_empty() {
                        continue;
                    }
                    let caller = callers.swap_remove(rng.below(callers.len() as u64) as usize);
                    if rng.below(4) == 0 {
                        driver.abandon(caller.ticket);
                        continue;
                    }
                    let Caller {
                        ticket,
                        operation,
                        sector,
                        sectors,
                    } = caller;
                    match driver.complete(ticket, &waker) {
                        Completion::Pending(ticket) => callers.push(Caller {
                            ticket,
                            operation,
                            sector,
                            sectors,
                        }),
                        Completion::Finished(outcome) => {
                            let answer = answers.get(&sector).copied();
                            check_outcome(seed, &outcome, operation, sectors, answer, bogus)
                        }
                    }
                }
            }
        }
        // Take whatever the device returned last.
        let _ = driver.poll_completions(&mut Context::from_waker(&waker));
        let stats = driver.stats();
        assert!(stats.completed <= stats.posted, "seed {seed}: {stats:?}");
        if driver.requests.broken() {
            assert!(bogus, "seed {seed}: stopped without an unknown token");
            // Entries after the unknown one are never looked at.
            assert!(
                (1..=too_long + 1).contains(&stats.bad_used),
                "seed {seed}: {stats:?}"
            );
        } else {
            assert!(!bogus, "seed {seed}: an unknown token went unnoticed");
            assert_eq!(stats.bad_used, too_long, "seed {seed}: {stats:?}");
        }
    }
}

/// The outcome a caller got must be the one the device's answer calls for.
fn check_outcome(
    seed: u64,
    outcome: &Outcome,
    operation: Operation,
    sectors: usize,
    answer: Option<Answer>,
    bogus: bool,
) {
    if operation == Operation::Flush {
        // Flushes share sector 0; each must still be one of the possible outcomes.
        match outcome {
            Ok(None)
            | Err(BlockError::Device { .. })
            | Err(BlockError::Untrusted { .. })
            | Err(BlockError::Broken) => {}
            other => panic!("seed {seed}: a flush finished with {other:?}"),
        }
        return;
    }
    match (outcome, answer) {
        (Err(BlockError::Broken), _) => assert!(bogus, "seed {seed}: Broken, no bad token"),
        (Ok(Some(buffer)), Some(Answer::Good(fill))) => {
            assert_eq!(buffer.sectors(), sectors, "seed {seed}");
            let expected = if operation == Operation::Read {
                fill
            } else {
                0x77
            };
            assert!(buffer.iter().all(|byte| *byte == expected), "seed {seed}");
        }
        (Err(BlockError::Device { status, .. }), Some(Answer::Status(answered))) => {
            assert_eq!(*status, answered, "seed {seed}")
        }
        (Err(BlockError::Untrusted { length, limit }), Some(Answer::TooLong)) => {
            assert!(length > limit, "seed {seed}")
        }
        (outcome, answer) => panic!("seed {seed}: {outcome:?} after the answer {answer:?}"),
    }
}
