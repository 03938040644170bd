//! The shared queue against the fake device: buffers come back only under the token
//! they were posted with, with their layout; hostile used entries are refused or
//! flagged, never handed out as data; notifications are batched.

use super::*;
use crate::fake::*;
use alloc::sync::Arc;
use std::sync::Mutex;

const SIZE: usize = 8;

fn setup(direction: Direction) -> (BufferQueue<FakeHal, SIZE>, FakeTransport, FakeDevice) {
    let mut transport = FakeTransport(Arc::new(Mutex::new(DeviceState::default())));
    let queue = BufferQueue::new(&mut transport, 0, direction, true).unwrap();
    let device = FakeDevice {
        transport: transport.clone(),
        next_avail: [0; 3],
        next_used: [0; 3],
        header: 0,
        queue_size: SIZE as u16,
    };
    (queue, transport, device)
}

fn buffer(fill: u8) -> Box<[u8]> {
    alloc::vec![fill; 100].into_boxed_slice()
}

#[test]
fn a_buffer_comes_back_under_its_token_with_the_count_written() {
    let (mut queue, mut transport, mut device) = setup(Direction::In);
    queue.post(buffer(1), 60).unwrap();
    queue.post(buffer(2), 100).unwrap();
    assert!(queue.notify(&mut transport), "one notification for both");
    assert!(!queue.notify(&mut transport), "nothing new");
    assert_eq!(device.notifications()[0], 1);
    let (first, address, length) = device.take_avail(0).unwrap();
    assert_eq!(length, 60, "only the bytes posted");
    let (second, _, _) = device.take_avail(0).unwrap();
    write::<u8>(address, 9);
    // Completed out of order: each buffer by its own token.
    device.put_used(0, second, 100);
    device.put_used(0, first, 1);
    match queue.take_used() {
        Some(Used::Buffer(buffer, 100)) => assert_eq!(buffer[0], 2),
        _ => panic!("the second buffer, 100 bytes"),
    }
    match queue.take_used() {
        Some(Used::Buffer(buffer, 1)) => assert_eq!(&buffer[..2], &[9, 1]),
        _ => panic!("the first buffer, 1 byte"),
    }
    assert!(queue.take_used().is_none());
}

#[test]
fn a_token_never_posted_is_untrusted_and_nothing_is_taken() {
    let (mut queue, _, mut device) = setup(Direction::In);
    queue.post(buffer(1), 100).unwrap();
    let (head, _, _) = device.take_avail(0).unwrap();
    device.put_used(0, head + 3, 10);
    assert!(matches!(queue.take_used(), Some(Used::Untrusted(token)) if token == head + 3));
    // SAFETY: the fake device holds no buffer once the test stops driving it.
    assert_eq!(unsafe { queue.take_all() }.len(), 1, "still posted");
}

#[test]
fn a_length_past_what_was_posted_is_flagged() {
    let (mut queue, _, mut device) = setup(Direction::In);
    queue.post(buffer(1), 50).unwrap();
    let (head, _, _) = device.take_avail(0).unwrap();
    device.put_used(0, head, 51);
    assert!(matches!(queue.take_used(), Some(Used::Lied(buffer)) if buffer.len() == 100));
}

#[test]
fn a_split_buffer_goes_as_header_and_rest() {
    let (mut queue, _, mut device) = setup(Direction::OutSplit(44));
    queue.post(buffer(1), 90).unwrap();
    queue.post(buffer(2), 44).unwrap();
    let (long, parts) = device.take_avail_chain(0).unwrap();
    assert_eq!(
        parts.iter().map(|part| part.1).collect::<Vec<_>>(),
        [44, 46]
    );
    assert_eq!(parts[1].0, parts[0].0 + 44, "one buffer");
    let (short, parts) = device.take_avail_chain(0).unwrap();
    assert_eq!(parts.iter().map(|part| part.1).collect::<Vec<_>>(), [44]);
    device.put_used(0, long, 0);
    device.put_used(0, short, 0);
    assert!(matches!(queue.take_used(), Some(Used::Buffer(buffer, 0)) if buffer[0] == 1));
    assert!(matches!(queue.take_used(), Some(Used::Buffer(buffer, 0)) if buffer[0] == 2));
}

#[test]
fn a_full_queue_gives_the_buffer_back() {
    let (mut queue, _, _) = setup(Direction::Out);
    for _ in 0..SIZE {
        queue.post(buffer(1), 100).unwrap();
    }
    assert!(matches!(queue.post(buffer(7), 100), Err(buffer) if buffer[0] == 7));
    // SAFETY: the fake device holds no buffer once the test stops driving it.
    assert_eq!(unsafe { queue.take_all() }.len(), SIZE);
}
