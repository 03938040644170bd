//! The console driver against a fake device: received chunks are handed out in order
//! across reads and their buffers re-posted; writes are posted and notified, wait (with
//! the waker registered and transmit interrupts requested) when every buffer is with the
//! device, and flush waits for the device; hostile used entries are dropped and counted.

use super::*;
use crate::fake::*;
use alloc::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::task::Waker;
use virtio_drivers::transport::DeviceType;

struct Setup {
    driver: ConsoleDevice<FakeHal, FakeTransport>,
    device: FakeDevice,
    waker: &'static AtomicWaker,
    stats: &'static ConsoleStats,
    task: Waker,
}

fn setup() -> Setup {
    let state = DeviceState {
        offered: Some(VIRTIO_F_VERSION_1 | 1 << 1 | 1 << 29), // also MULTIPORT, EVENT_IDX
        kind: Some(DeviceType::Console),
        ..DeviceState::default()
    };
    let transport = FakeTransport(Arc::new(Mutex::new(state)));
    let waker: &'static AtomicWaker = Box::leak(Box::new(AtomicWaker::new()));
    let stats: &'static ConsoleStats = Box::leak(Box::new(ConsoleStats::new()));
    let driver = ConsoleDevice::<FakeHal, _>::new(transport.clone(), waker, stats).unwrap();
    let device = FakeDevice {
        transport,
        next_avail: [0; 3],
        next_used: [0; 3],
        header: 0,
        queue_size: QUEUE as u16,
    };
    let task = Waker::from(Arc::new(CountingWaker(AtomicUsize::new(0))));
    Setup {
        driver,
        device,
        waker,
        stats,
        task,
    }
}

fn read(setup: &mut Setup, out: &mut [u8]) -> Poll<Result<usize, ConsoleError>> {
    let mut context = Context::from_waker(&setup.task);
    setup.driver.poll_read(&mut context, out)
}

fn write(setup: &mut Setup, data: &[u8]) -> Poll<Result<usize, ConsoleError>> {
    let mut context = Context::from_waker(&setup.task);
    setup.driver.poll_write(&mut context, data)
}

fn flush(setup: &mut Setup) -> Poll<Result<(), ConsoleError>> {
    let mut context = Context::from_waker(&setup.task);
    setup.driver.poll_flush(&mut context)
}

/// Every receive buffer the driver has posted and the device not yet used.
fn posted_receive_buffers(device: &mut FakeDevice) -> Vec<(u16, u64, u32)> {
    core::iter::from_fn(|| device.take_avail(0)).collect()
}

#[test]
fn setup_declines_multiport_and_event_idx_and_posts_every_receive_buffer() {
    let mut setup = setup();
    let features = setup.device.transport.0.lock().unwrap().features;
    assert_eq!(features, VIRTIO_F_VERSION_1);
    let posted = posted_receive_buffers(&mut setup.device);
    assert_eq!(posted.len(), RECEIVE_BUFFERS);
    assert!(
        posted
            .iter()
            .all(|&(_, _, length)| length as usize == BUFFER)
    );
    assert_eq!(setup.device.notifications()[..2], [1, 0]);
    assert!(setup.device.interrupts_wanted(0), "receive interrupts on");
    assert!(
        !setup.device.interrupts_wanted(1),
        "transmit interrupts off"
    );
}

#[test]
fn a_read_waits_for_the_device_then_hands_out_chunks_in_order() {
    let mut setup = setup();
    let mut out = [0u8; 8];
    assert!(read(&mut setup, &mut out).is_pending());
    assert!(
        setup.waker.take().is_some(),
        "the reader's waker is registered"
    );
    setup.device.deliver(b"hello, ");
    setup.device.deliver(b"world");
    // Bytes from both chunks in one read, then the rest.
    assert_eq!(read(&mut setup, &mut out), Poll::Ready(Ok(8)));
    assert_eq!(&out, b"hello, w");
    assert_eq!(read(&mut setup, &mut out), Poll::Ready(Ok(4)));
    assert_eq!(&out[..4], b"orld");
    assert!(read(&mut setup, &mut out).is_pending());
    assert_eq!(setup.stats.received.load(Ordering::Relaxed), 12);
    // Both buffers were given back: the device has all of them again.
    let posted = posted_receive_buffers(&mut setup.device);
    assert_eq!(posted.len(), RECEIVE_BUFFERS);
}

#[test]
fn a_length_past_the_buffer_is_dropped_counted_and_the_buffer_reposted() {
    let mut setup = setup();
    let (head, address, _) = setup.device.take_avail(0).unwrap();
    crate::fake::write::<u8>(address, b'x');
    setup.device.put_used(0, head, BUFFER as u32 + 1);
    setup.device.deliver(b"ok");
    let mut out = [0u8; 16];
    assert_eq!(read(&mut setup, &mut out), Poll::Ready(Ok(2)));
    assert_eq!(
        &out[..2],
        b"ok",
        "nothing of the untrusted entry is handed out"
    );
    assert_eq!(setup.stats.bad_used.load(Ordering::Relaxed), 1);
    let posted = posted_receive_buffers(&mut setup.device);
    assert_eq!(
        posted.len(),
        RECEIVE_BUFFERS,
        "both buffers back with the device"
    );
}

#[test]
fn an_empty_entry_is_reposted_without_a_panic() {
    let mut setup = setup();
    let (head, _, _) = setup.device.take_avail(0).unwrap();
    setup.device.put_used(0, head, 0);
    let mut out = [0u8; 4];
    assert!(read(&mut setup, &mut out).is_pending());
    assert_eq!(
        posted_receive_buffers(&mut setup.device).len(),
        RECEIVE_BUFFERS
    );
}

#[test]
fn a_token_never_posted_breaks_the_port_for_good() {
    let mut setup = setup();
    setup.device.deliver(b"ab");
    setup.device.put_used(0, QUEUE as u16 - 1, 1); // a descriptor never posted
    let mut out = [0u8; 4];
    // What came before the bad entry is handed out; then the port fails.
    assert_eq!(read(&mut setup, &mut out), Poll::Ready(Ok(2)));
    let broken = ConsoleError::Untrusted {
        queue: 0,
        token: QUEUE as u16 - 1,
    };
    assert_eq!(read(&mut setup, &mut out), Poll::Ready(Err(broken)));
    assert_eq!(write(&mut setup, b"x"), Poll::Ready(Err(broken)));
    assert_eq!(setup.stats.bad_used.load(Ordering::Relaxed), 1);
}

#[test]
fn writes_are_posted_and_notified_then_wait_for_a_free_buffer() {
    let mut setup = setup();
    let mut sent = Vec::new();
    for index in 0..TRANSMIT_BUFFERS {
        let data = [index as u8; 10];
        assert_eq!(write(&mut setup, &data), Poll::Ready(Ok(10)));
        sent.push(data.to_vec());
    }
    assert_eq!(setup.device.notifications()[1], TRANSMIT_BUFFERS);
    setup.waker.take();
    // Every buffer is with the device: the writer waits, with transmit interrupts on.
    assert!(write(&mut setup, b"more").is_pending());
    assert!(
        setup.waker.take().is_some(),
        "the writer's waker is registered"
    );
    assert!(setup.device.interrupts_wanted(1));
    assert_eq!(setup.stats.transmit_full.load(Ordering::Relaxed), 1);
    assert!(flush(&mut setup).is_pending());
    // The device consumes them: the write goes through, and transmit interrupts go off.
    assert_eq!(setup.device.transmitted(), sent);
    assert_eq!(write(&mut setup, b"more"), Poll::Ready(Ok(4)));
    assert!(!setup.device.interrupts_wanted(1));
    assert!(flush(&mut setup).is_pending());
    assert_eq!(setup.device.transmitted(), vec![b"more".to_vec()]);
    assert_eq!(flush(&mut setup), Poll::Ready(Ok(())));
    assert_eq!(
        setup.stats.sent.load(Ordering::Relaxed),
        10 * TRANSMIT_BUFFERS as u64 + 4
    );
}

#[test]
fn a_large_write_takes_one_buffer_at_a_time() {
    let mut setup = setup();
    let data: Vec<u8> = (0..BUFFER + 100).map(|index| index as u8).collect();
    assert_eq!(write(&mut setup, &data), Poll::Ready(Ok(BUFFER)));
    assert_eq!(write(&mut setup, &data[BUFFER..]), Poll::Ready(Ok(100)));
    assert_eq!(setup.device.transmitted().concat(), data);
}

#[test]
fn no_notification_while_the_device_suppresses_them() {
    let mut setup = setup();
    setup.device.suppress_notifications(1, true);
    assert_eq!(write(&mut setup, b"quiet"), Poll::Ready(Ok(5)));
    assert_eq!(setup.device.notifications()[1], 0);
    assert_eq!(setup.device.transmitted(), vec![b"quiet".to_vec()]);
}

#[test]
fn a_transmit_token_never_posted_breaks_the_port() {
    let mut setup = setup();
    assert_eq!(write(&mut setup, b"a"), Poll::Ready(Ok(1)));
    setup.device.put_used(1, QUEUE as u16 - 1, 0); // not the token the write went under
    let broken = ConsoleError::Untrusted {
        queue: 1,
        token: QUEUE as u16 - 1,
    };
    assert_eq!(flush(&mut setup), Poll::Ready(Err(broken)));
    assert_eq!(write(&mut setup, b"b"), Poll::Ready(Err(broken)));
    assert_eq!(setup.stats.bad_used.load(Ordering::Relaxed), 1);
}
