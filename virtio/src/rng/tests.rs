//! The rng driver against a fake device: a request is posted and notified once, the
//! caller waits with its waker registered, the answer is copied out; a used entry with a
//! length past the buffer or another token is refused, never handed out.

use super::*;
use crate::fake::*;
use alloc::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::task::Waker;
use virtio_drivers::transport::DeviceType;

fn setup() -> (
    RngDevice<FakeHal, FakeTransport>,
    FakeDevice,
    &'static AtomicWaker,
    Waker,
) {
    let state = DeviceState {
        offered: Some(VIRTIO_F_VERSION_1),
        kind: Some(DeviceType::EntropySource),
        ..DeviceState::default()
    };
    let transport = FakeTransport(Arc::new(Mutex::new(state)));
    let waker: &'static AtomicWaker = Box::leak(Box::new(AtomicWaker::new()));
    let driver = RngDevice::<FakeHal, _>::new(transport.clone(), waker).unwrap();
    let device = FakeDevice {
        transport,
        next_avail: [0; 3],
        next_used: [0; 3],
        header: 0,
        queue_size: QUEUE as u16,
    };
    let task = Waker::from(Arc::new(CountingWaker(AtomicUsize::new(0))));
    (driver, device, waker, task)
}

/// Writes `bytes` into the next request buffer and returns it as used with `claimed`
/// bytes (the device's say).
fn answer(device: &mut FakeDevice, bytes: &[u8], claimed: u32, token_offset: u16) {
    let (head, address, length) = device.take_avail(0).expect("a posted request");
    assert_eq!(length as usize, REQUEST);
    for (index, byte) in bytes.iter().enumerate() {
        write::<u8>(address + index as u64, *byte);
    }
    device.put_used(0, head.wrapping_add(token_offset), claimed);
}

#[test]
fn a_request_waits_for_the_device_then_copies_its_answer() {
    let (mut driver, mut device, waker, task) = setup();
    let mut context = Context::from_waker(&task);
    let mut out = [0u8; 40];
    assert!(driver.poll_fill(&mut context, &mut out).is_pending());
    assert_eq!(
        device.notifications()[0],
        1,
        "one notification for the request"
    );
    assert!(waker.take().is_some(), "the caller's waker is registered");
    // Polled again before the answer: still waiting, nothing posted twice.
    assert!(driver.poll_fill(&mut context, &mut out).is_pending());
    assert_eq!(device.notifications()[0], 1);
    answer(&mut device, &[7; 16], 16, 0);
    assert_eq!(
        driver.poll_fill(&mut context, &mut out),
        Poll::Ready(Ok(16))
    );
    assert_eq!(out[..16], [7; 16]);
    assert_eq!(
        out[16..],
        [0; 24],
        "only what the device wrote is handed out"
    );
    // The buffer is reused for the next request.
    assert!(driver.poll_fill(&mut context, &mut out).is_pending());
    answer(&mut device, &[9; 40], 256, 0);
    assert_eq!(
        driver.poll_fill(&mut context, &mut out),
        Poll::Ready(Ok(40))
    );
    assert_eq!(out, [9; 40]);
}

#[test]
fn an_empty_answer_is_asked_again() {
    let (mut driver, mut device, _, task) = setup();
    let mut context = Context::from_waker(&task);
    let mut out = [0u8; 8];
    assert!(driver.poll_fill(&mut context, &mut out).is_pending());
    answer(&mut device, &[], 0, 0);
    assert!(driver.poll_fill(&mut context, &mut out).is_pending());
    assert_eq!(device.notifications()[0], 2);
}

#[test]
fn a_length_past_the_buffer_is_refused_and_the_device_dropped() {
    let (mut driver, mut device, _, task) = setup();
    let mut context = Context::from_waker(&task);
    let mut out = [0u8; 8];
    assert!(driver.poll_fill(&mut context, &mut out).is_pending());
    answer(&mut device, &[1; 8], 4096, 0);
    assert_eq!(
        driver.poll_fill(&mut context, &mut out),
        Poll::Ready(Err(RngError::Untrusted { length: 4096 }))
    );
    assert_eq!(out, [0; 8], "nothing from an untrusted entry");
    assert!(matches!(
        driver.poll_fill(&mut context, &mut out),
        Poll::Ready(Err(RngError::Untrusted { .. }))
    ));
}

#[test]
fn another_token_is_refused() {
    let (mut driver, mut device, _, task) = setup();
    let mut context = Context::from_waker(&task);
    let mut out = [0u8; 8];
    assert!(driver.poll_fill(&mut context, &mut out).is_pending());
    answer(&mut device, &[1; 8], 8, 1);
    assert!(matches!(
        driver.poll_fill(&mut context, &mut out),
        Poll::Ready(Err(RngError::Untrusted { .. }))
    ));
    assert_eq!(out, [0; 8]);
}

/// Issue 10, item 3: the device held a request (and the queue's rings) when the driver
/// was dropped. It is reset and told to forget the queue before that memory is freed.
#[test]
fn dropping_the_driver_resets_the_device_and_releases_its_queue() {
    let (mut driver, device, _, task) = setup();
    let mut context = Context::from_waker(&task);
    assert!(driver.poll_fill(&mut context, &mut [0u8; 8]).is_pending());
    assert_ne!(device.rings(0), (0, 0, 0));
    drop(driver);
    let state = device.transport.0.lock().unwrap();
    assert_eq!(state.status, DeviceStatus::empty(), "reset");
    assert_eq!(state.rings[0], (0, 0, 0), "queue released");
}
