//! The request table against the fake device (`fake.rs`), with a test protocol: a
//! 4-byte header (the request's id) and a 1-byte trailer around the request's own
//! buffers. The drivers' own tests (blk, fs) cover their layouts on top of this; here:
//! descriptor order, completion in any order, backpressure, abandoned requests, and
//! hostile used entries (a token never posted, one returned twice, a length past the
//! buffers), none of which may panic or free memory the device may still write.

use super::*;
use crate::fake::*;
use alloc::sync::Arc;
use alloc::vec;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

const SIZE: usize = 8;
const QUEUE_INDEX: u16 = 0;
/// What the fake device writes in the trailer to say "do not trust me" (the test
/// protocol then counts the reply as bad, as fs does for a reply to another request).
const LIAR: u8 = 0x66;
/// What `seal` leaves in the trailer.
const UNWRITTEN: u8 = 0xee;

/// What a finished test request gives back.
#[derive(Debug, PartialEq, Eq)]
struct Done {
    id: u32,
    readable: Option<Vec<u8>>,
    writable: Option<Vec<u8>>,
    trailer: u8,
    length: u32,
}

#[derive(Debug, PartialEq, Eq)]
enum Failed {
    Broken,
    Refused,
    Past(PastBuffer),
}

struct Test;

impl Protocol for Test {
    type Posted = u32;
    type Outcome = Result<Done, Failed>;
    const HEADER: usize = 4;
    const TRAILER: usize = 1;

    fn seal(id: &u32, header: &mut [u8], trailer: &mut [u8]) {
        header.copy_from_slice(&id.to_le_bytes());
        trailer.fill(UNWRITTEN);
    }

    fn finish(returned: Returned<'_, u32>) -> (Self::Outcome, bool) {
        let trailer = returned.trailer[0];
        let outcome = match returned.length {
            Err(past) => Err(Failed::Past(past)),
            Ok(length) => Ok(Done {
                id: returned.posted,
                readable: returned.readable.map(Vec::from),
                writable: returned.writable.map(Vec::from),
                trailer,
                length,
            }),
        };
        (outcome, trailer == LIAR)
    }

    fn broken() -> Self::Outcome {
        Err(Failed::Broken)
    }

    fn refused() -> Self::Outcome {
        Err(Failed::Refused)
    }
}

type Table = RequestTable<FakeHal, Test, SIZE>;

static INTERRUPT: AtomicWaker = AtomicWaker::new();

struct Fixture {
    table: Table,
    transport: FakeTransport,
    device: FakeDevice,
}

/// A table of `limit` entries over a fresh queue of the fake device.
fn setup(limit: usize) -> Fixture {
    let mut transport = FakeTransport(Arc::new(Mutex::new(DeviceState::default())));
    let table = Table::new(&mut transport, QUEUE_INDEX, false, limit, &INTERRUPT).unwrap();
    Fixture {
        table,
        device: FakeDevice {
            transport: transport.clone(),
            next_avail: [0; 3],
            next_used: [0; 3],
            header: 0,
            queue_size: SIZE as u16,
        },
        transport,
    }
}

fn waker() -> (Waker, Arc<CountingWaker>) {
    let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
    (Waker::from(counter.clone()), counter)
}

fn wakes(counter: &CountingWaker) -> usize {
    counter.0.load(Ordering::SeqCst)
}

/// A request with id `id`, `readable` bytes for the device and a `writable` buffer.
fn request(id: u32, readable: Option<&[u8]>, writable: Option<usize>) -> Posting<u32> {
    Posting {
        posted: id,
        readable: readable.map(Box::from),
        writable: writable.map(|length| vec![0; length].into_boxed_slice()),
    }
}

impl Fixture {
    fn submit(
        &mut self,
        posting: Posting<u32>,
        waker: &Waker,
    ) -> Submission<u32, Result<Done, Failed>> {
        let id = posting.posted;
        let mut posting = Some(posting);
        self.table
            .submit(id, waker, &mut self.transport, |_| posting.take().unwrap())
    }

    fn post(&mut self, posting: Posting<u32>) -> Ticket {
        match self.submit(posting, &waker().0) {
            Submission::Posted(ticket) => ticket,
            other => panic!("not posted: {other:?}"),
        }
    }

    fn finish(&mut self, ticket: Ticket) -> Result<Done, Failed> {
        match self.table.complete(ticket, &waker().0) {
            Completion::Finished(outcome) => outcome,
            Completion::Pending(_) => panic!("still pending"),
        }
    }

    /// The device takes the next request: its head and its descriptors.
    fn take(&mut self) -> (u16, Vec<(u64, u32)>) {
        self.device
            .take_avail_chain(usize::from(QUEUE_INDEX))
            .expect("a posted request")
    }

    /// The device fills `(address, length)` with `byte` and writes `trailer` at the end
    /// of the chain, then returns `head` with used length `used`.
    fn answer(&mut self, head: u16, fill: Option<(u64, u32)>, trailer: (u64, u8), used: u32) {
        if let Some((address, length)) = fill {
            for i in 0..u64::from(length) {
                write::<u8>(address + i, 0xa0 + i as u8);
            }
        }
        write::<u8>(trailer.0, trailer.1);
        self.device.put_used(usize::from(QUEUE_INDEX), head, used);
    }
}

#[test]
fn descriptors_are_header_readable_writable_trailer_and_buffers_come_back() {
    let mut fixture = setup(4);
    let ticket = fixture.post(request(7, Some(b"abc"), Some(8)));
    let (head, parts) = fixture.take();
    let lengths: Vec<u32> = parts.iter().map(|&(_, length)| length).collect();
    assert_eq!(lengths, [4, 3, 8, 1]);
    assert_eq!(read::<u32>(parts[0].0), 7, "the header, sealed");
    assert_eq!(read::<u8>(parts[3].0), UNWRITTEN, "the trailer, reset");
    let pending = fixture.table.complete(ticket, &waker().0);
    let Completion::Pending(ticket) = pending else {
        panic!("finished before the device answered: {pending:?}");
    };
    fixture.answer(head, Some(parts[2]), (parts[3].0, 0), 9);
    let done = fixture.finish(ticket).unwrap();
    assert_eq!(
        done,
        Done {
            id: 7,
            readable: Some(b"abc".to_vec()),
            writable: Some((0..8).map(|i| 0xa0 + i).collect()),
            trailer: 0,
            length: 9,
        }
    );
    let stats = fixture.table.stats();
    assert_eq!((stats.posted, stats.completed, stats.bad_used), (1, 1, 0));
}

#[test]
fn empty_parts_are_left_out_of_the_chain() {
    let mut fixture = setup(4);
    fixture.post(request(1, None, Some(2)));
    let (_, parts) = fixture.take();
    assert_eq!(
        parts.iter().map(|part| part.1).collect::<Vec<_>>(),
        [4, 2, 1]
    );
    fixture.post(request(2, Some(b"xy"), None));
    let (_, parts) = fixture.take();
    assert_eq!(
        parts.iter().map(|part| part.1).collect::<Vec<_>>(),
        [4, 2, 1]
    );
    fixture.post(request(3, None, None));
    let (_, parts) = fixture.take();
    assert_eq!(parts.iter().map(|part| part.1).collect::<Vec<_>>(), [4, 1]);
}

#[test]
fn requests_finish_in_the_order_the_device_chooses() {
    let mut fixture = setup(4);
    let first = fixture.post(request(1, None, Some(1)));
    let second = fixture.post(request(2, None, Some(1)));
    let (head1, parts1) = fixture.take();
    let (head2, parts2) = fixture.take();
    fixture.answer(head2, Some(parts2[1]), (parts2[2].0, 2), 2);
    fixture.answer(head1, Some(parts1[1]), (parts1[2].0, 1), 2);
    assert_eq!(fixture.finish(second).unwrap().trailer, 2);
    assert_eq!(fixture.finish(first).unwrap().trailer, 1);
}

#[test]
fn a_full_table_hands_the_request_back_and_wakes_when_an_entry_frees() {
    let mut fixture = setup(1);
    assert_eq!(fixture.table.limit(), 1);
    let ticket = fixture.post(request(1, None, None));
    let (waiting, counter) = waker();
    match fixture.submit(request(2, None, None), &waiting) {
        Submission::Full(2) => {}
        other => panic!("not handed back: {other:?}"),
    }
    assert!(fixture.table.is_full());
    assert_eq!(fixture.table.stats().full, 1);
    let (head, parts) = fixture.take();
    fixture.answer(head, None, (parts[1].0, 0), 1);
    assert_eq!(wakes(&counter), 0, "not before the entry is free");
    fixture.finish(ticket).unwrap();
    assert_eq!(wakes(&counter), 1);
    fixture.post(request(2, None, None));
}

#[test]
fn an_abandoned_request_frees_its_entry_when_the_device_returns_it() {
    let mut fixture = setup(1);
    let ticket = fixture.post(request(1, Some(b"data"), Some(16)));
    fixture.table.abandon(ticket);
    assert!(
        fixture.table.is_full(),
        "the device still holds the buffers"
    );
    let (head, parts) = fixture.take();
    fixture.answer(head, Some(parts[2]), (parts[3].0, 0), 17);
    let _ = fixture
        .table
        .poll_completions(&mut Context::from_waker(&waker().0));
    assert!(!fixture.table.is_full());
    fixture.post(request(2, None, None));
}

#[test]
fn a_used_length_past_the_buffers_fails_that_request_alone() {
    let mut fixture = setup(4);
    let ticket = fixture.post(request(1, Some(b"abc"), Some(8)));
    let (head, parts) = fixture.take();
    // At most 8 + 1 (the writable buffer and the trailer); the readable bytes and the
    // header do not count.
    fixture.answer(head, Some(parts[2]), (parts[3].0, 0), 10);
    assert_eq!(
        fixture.finish(ticket),
        Err(Failed::Past(PastBuffer {
            length: 10,
            limit: 9
        }))
    );
    assert_eq!(fixture.table.stats().bad_used, 1);
    assert!(!fixture.table.broken());
    let ticket = fixture.post(request(2, None, None));
    let (head, parts) = fixture.take();
    fixture.answer(head, None, (parts[1].0, 0), 1);
    assert_eq!(fixture.finish(ticket).unwrap().id, 2);
}

#[test]
fn a_reply_the_protocol_distrusts_is_counted() {
    let mut fixture = setup(4);
    let ticket = fixture.post(request(1, None, None));
    let (head, parts) = fixture.take();
    fixture.answer(head, None, (parts[1].0, LIAR), 1);
    assert_eq!(fixture.finish(ticket).unwrap().trailer, LIAR);
    assert_eq!(fixture.table.stats().bad_used, 1);
}

/// Every request, in flight or later, finds the device out of service.
fn assert_out_of_service(fixture: &mut Fixture, in_flight: Ticket) {
    assert!(fixture.table.broken());
    assert_eq!(fixture.finish(in_flight), Err(Failed::Broken));
    match fixture.submit(request(9, None, None), &waker().0) {
        Submission::Finished(Err(Failed::Broken)) => {}
        other => panic!("posted to a broken device: {other:?}"),
    }
}

#[test]
fn an_unknown_used_token_takes_the_device_out_of_service() {
    let mut fixture = setup(4);
    let ticket = fixture.post(request(1, None, Some(4)));
    let (caller, counter) = waker();
    let Completion::Pending(ticket) = fixture.table.complete(ticket, &caller) else {
        panic!("finished early");
    };
    // Never posted: a head no request occupies, and one outside the queue.
    fixture.device.put_used(usize::from(QUEUE_INDEX), 5, 1);
    let _ = fixture
        .table
        .poll_completions(&mut Context::from_waker(&waker().0));
    assert_eq!(
        wakes(&counter),
        1,
        "the caller is woken to find the device gone"
    );
    assert_eq!(fixture.table.stats().bad_used, 1);
    assert_out_of_service(&mut fixture, ticket);

    let mut fixture = setup(4);
    let ticket = fixture.post(request(1, None, None));
    fixture.device.put_used(usize::from(QUEUE_INDEX), 0x1234, 1);
    assert_eq!(
        fixture.table.complete(ticket, &waker().0).finished(),
        Some(Err(Failed::Broken))
    );
    assert!(fixture.table.broken());
}

#[test]
fn a_token_returned_twice_takes_the_device_out_of_service() {
    let mut fixture = setup(4);
    let first = fixture.post(request(1, None, Some(4)));
    let second = fixture.post(request(2, None, Some(4)));
    let (head, parts) = fixture.take();
    fixture.answer(head, Some(parts[1]), (parts[2].0, 0), 5);
    // The first request's head again, after it was returned.
    fixture.device.put_used(usize::from(QUEUE_INDEX), head, 5);
    let _ = fixture
        .table
        .poll_completions(&mut Context::from_waker(&waker().0));
    assert_eq!(fixture.table.stats().completed, 1);
    assert_eq!(fixture.table.stats().bad_used, 1);
    // Even the request that did come back is not handed out: the table was leaked.
    assert_eq!(fixture.finish(first), Err(Failed::Broken));
    assert_out_of_service(&mut fixture, second);
}

#[test]
fn a_ticket_of_another_table_is_refused() {
    let mut fixture = setup(4);
    let mut other = setup(4);
    let ticket = other.post(request(1, None, None));
    assert_eq!(fixture.finish(ticket), Err(Failed::Broken));
    fixture.post(request(2, None, None));
}

impl<O> Completion<O> {
    fn finished(self) -> Option<O> {
        match self {
            Completion::Finished(outcome) => Some(outcome),
            Completion::Pending(_) => None,
        }
    }
}
