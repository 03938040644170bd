//! The driver against a fake device that reads and writes the rings as QEMU does, so the
//! notification policy is checked: notifications once per flush and only when the device
//! wants them, receive interrupts off while draining, backpressure on a full queue.

use super::*;
use crate::fake::*;
use alloc::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;

fn setup() -> (
    NetDevice<FakeHal, FakeTransport>,
    FakeDevice,
    &'static AtomicWaker,
    Waker,
) {
    let (driver, device, waker) = setup_device(DeviceState::default(), HEADER).unwrap();
    let task = Waker::from(Arc::new(CountingWaker(AtomicUsize::new(0))));
    (driver, device, waker, task)
}

type Setup = (
    NetDevice<FakeHal, FakeTransport>,
    FakeDevice,
    &'static AtomicWaker,
);

fn setup_device(state: DeviceState, header: usize) -> Result<Setup, NetError> {
    let transport = FakeTransport(Arc::new(Mutex::new(state)));
    let waker: &'static AtomicWaker = Box::leak(Box::new(AtomicWaker::new()));
    let stats: &'static NetStats = Box::leak(Box::new(NetStats::new()));
    let driver = NetDevice::<FakeHal, _>::new(transport.clone(), waker, stats)?;
    let device = FakeDevice {
        transport,
        next_avail: [0; 3],
        next_used: [0; 3],
        header,
        queue_size: QUEUE as u16,
    };
    Ok((driver, device, waker))
}

fn frame(n: u8) -> Vec<u8> {
    (0..60).map(|i| i ^ n).collect()
}

fn send(driver: &mut NetDevice<FakeHal, FakeTransport>, waker: &Waker, frame: &[u8]) -> bool {
    driver.transmit(waker, frame.len(), &mut |buffer| {
        buffer.copy_from_slice(frame)
    })
}

#[test]
fn negotiates_without_event_idx_and_reads_the_mac() {
    let (driver, device, _, _) = setup();
    let state = device.transport.0.lock().unwrap();
    assert_eq!(state.features, VIRTIO_NET_F_MAC | VIRTIO_F_VERSION_1);
    assert!(state.status.contains(DeviceStatus::DRIVER_OK));
    assert_eq!(driver.mac(), MAC);
}

#[test]
fn frames_reach_the_device_with_one_notification_per_flush() {
    let (mut driver, mut device, _, task) = setup();
    let before = device.notifications()[1];
    for n in 0..5 {
        assert!(send(&mut driver, &task, &frame(n)));
    }
    assert_eq!(
        device.notifications()[1],
        before,
        "no notification before flush"
    );
    driver.flush();
    assert_eq!(device.notifications()[1], before + 1);
    driver.flush();
    assert_eq!(
        device.notifications()[1],
        before + 1,
        "nothing new, no notification"
    );
    assert_eq!(device.transmitted(), (0..5).map(frame).collect::<Vec<_>>());
    assert!(
        !device.interrupts_wanted(1),
        "completions raise no interrupt"
    );

    // While the device says it is busy with the queue, it is not notified.
    device.suppress_notifications(1, true);
    assert!(send(&mut driver, &task, &frame(9)));
    driver.flush();
    assert_eq!(device.notifications()[1], before + 1);
    assert_eq!(device.transmitted(), vec![frame(9)]);
}

#[test]
fn receive_interrupt_is_off_while_frames_are_drained() {
    let (mut driver, mut device, waker, task) = setup();
    assert!(device.interrupts_wanted(0));
    device.suppress_notifications(0, true); // QEMU does while it has buffers
    for n in 0..3 {
        device.deliver(&frame(n));
    }
    let mut got = Vec::new();
    while driver.receive(&task, &mut |bytes| got.push(bytes.to_vec())) {
        if got.len() < 3 {
            assert!(!device.interrupts_wanted(0), "no interrupts while draining");
        }
    }
    assert_eq!(got, (0..3).map(frame).collect::<Vec<_>>());
    assert!(
        device.interrupts_wanted(0),
        "on again once the ring is empty"
    );
    assert!(waker.take().is_some_and(|w| w.will_wake(&task)));
    // The buffers went back to the device without a notification it did not want...
    driver.flush();
    let notified = device.notifications()[0];
    for n in 0..3 {
        device.deliver(&frame(n));
    }
    while driver.receive(&task, &mut |_| {}) {}
    driver.flush();
    assert_eq!(device.notifications()[0], notified);
    // ...and with one when it ran out and asked.
    device.suppress_notifications(0, false);
    device.deliver(&frame(7));
    assert!(driver.receive(&task, &mut |_| {}));
    driver.flush();
    assert_eq!(device.notifications()[0], notified + 1);
}

#[test]
fn a_full_transmit_queue_is_backpressure_until_a_completion() {
    let (mut driver, mut device, waker, task) = setup();
    let mut sent = 0;
    while send(&mut driver, &task, &frame(sent)) {
        sent += 1;
        assert!(sent <= QUEUE as u8, "the queue never filled");
    }
    assert_eq!(usize::from(sent), QUEUE / 2);
    // Refused: the device heard of the queued frames, will interrupt at a completion,
    // and the task's waker is registered for it.
    assert!(device.notifications()[1] > 0);
    assert!(device.interrupts_wanted(1));
    assert!(waker.take().is_some_and(|w| w.will_wake(&task)));
    assert_eq!(device.transmitted().len(), usize::from(sent));
    assert!(send(&mut driver, &task, &frame(0)));
    assert!(
        !device.interrupts_wanted(1),
        "no completion interrupts once there is room"
    );
}

/// A legacy device (no VERSION_1) has no FEATURES_OK step (spec 3.1.2) and a 10-byte
/// header; it offers ANY_LAYOUT, which the driver's one-descriptor buffers need.
#[test]
fn a_legacy_device_skips_features_ok_and_uses_the_short_header() {
    let state = DeviceState {
        offered: Some(VIRTIO_NET_F_MAC | VIRTIO_F_ANY_LAYOUT),
        drops_features_ok: true,
        ..DeviceState::default()
    };
    let (mut driver, mut device, _) = setup_device(state, HEADER_LEGACY).unwrap();
    let task = Waker::from(Arc::new(CountingWaker(AtomicUsize::new(0))));
    {
        let state = device.transport.0.lock().unwrap();
        assert_eq!(state.features, VIRTIO_NET_F_MAC | VIRTIO_F_ANY_LAYOUT);
        assert!(state.status.contains(DeviceStatus::DRIVER_OK));
    }
    assert!(send(&mut driver, &task, &frame(3)));
    driver.flush();
    assert_eq!(device.transmitted(), vec![frame(3)]);
    device.deliver(&frame(4));
    let mut got = Vec::new();
    assert!(driver.receive(&task, &mut |bytes| got.push(bytes.to_vec())));
    assert_eq!(got, vec![frame(4)]);
}

/// A modern device that does not keep FEATURES_OK refused the features: a clear error.
#[test]
fn a_modern_device_refusing_the_features_is_an_error() {
    let state = DeviceState {
        drops_features_ok: true,
        ..DeviceState::default()
    };
    match setup_device(state, HEADER) {
        Err(NetError::Features { requested }) => {
            assert_eq!(requested, VIRTIO_NET_F_MAC | VIRTIO_F_VERSION_1);
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("a device that refused the features was accepted"),
    }
}

/// The device side after a reset: it starts over on the rings the driver sets anew.
fn follow_reset(device: &mut FakeDevice) {
    device.next_avail = Default::default();
    device.next_used = Default::default();
}

fn stats(driver: &NetDevice<FakeHal, FakeTransport>) -> (u64, u64, u64) {
    (
        driver.stats.rx_bad_used.load(Ordering::Relaxed),
        driver.stats.resets.load(Ordering::Relaxed),
        driver.stats.rx_frames.load(Ordering::Relaxed),
    )
}

/// Issue 12, item 12: a used-ring entry for a buffer the driver never posted (a token
/// outside the queue) once stalled the receive queue for good: it stayed at the head of
/// the ring, and every frame behind it was lost. It is counted, the device is reset and
/// comes back, and frames flow again.
#[test]
fn a_hostile_receive_used_entry_resets_the_device_and_frames_flow_again() {
    let (mut driver, mut device, waker, task) = setup();
    device.deliver(&frame(1));
    let mut got = Vec::new();
    while driver.receive(&task, &mut |bytes| got.push(bytes.to_vec())) {}
    assert_eq!(got, vec![frame(1)]);
    let old_rings = device.rings(0);

    device.put_used(0, 1000, 100); // no such descriptor
    assert!(!driver.receive(&task, &mut |bytes| got.push(bytes.to_vec())));
    assert_eq!(stats(&driver), (1, 1, 1));
    assert!(waker.take().is_some_and(|w| w.will_wake(&task)));
    {
        let state = device.transport.0.lock().unwrap();
        assert!(
            state.status.contains(DeviceStatus::DRIVER_OK),
            "brought back"
        );
    }
    assert_ne!(device.rings(0), old_rings, "fresh queues");
    assert!(device.interrupts_wanted(0), "receive interrupts on again");

    follow_reset(&mut device);
    for n in 2..2 + QUEUE as u8 {
        device.deliver(&frame(n)); // every receive buffer was posted again
        assert!(driver.receive(&task, &mut |bytes| got.push(bytes.to_vec())));
    }
    assert_eq!(got.len(), 1 + QUEUE);
    assert_eq!(got.last(), Some(&frame(1 + QUEUE as u8)));
    assert_eq!(stats(&driver).1, 1, "one reset");
    assert!(send(&mut driver, &task, &frame(70)));
    driver.flush();
    assert_eq!(device.transmitted(), vec![frame(70)]);
}

/// The same on the transmit queue: a completion for a descriptor the driver never
/// posted resets the device; every transmit buffer is the driver's again.
#[test]
fn a_hostile_transmit_used_entry_resets_the_device_and_frames_go_out_again() {
    let (mut driver, mut device, _, task) = setup();
    assert!(send(&mut driver, &task, &frame(1)));
    driver.flush();
    device.put_used(1, 5, 0); // descriptor 5 was never posted for transmission
    assert!(send(&mut driver, &task, &frame(2)));
    assert_eq!(stats(&driver).0, 1);
    assert_eq!(stats(&driver).1, 1);
    follow_reset(&mut device);
    driver.flush();
    assert_eq!(
        device.transmitted(),
        vec![frame(2)],
        "sent on the new queue"
    );
    for n in 0..(QUEUE / 2) as u8 {
        assert!(send(&mut driver, &task, &frame(n)), "all buffers back");
    }
    driver.flush();
    assert_eq!(device.transmitted().len(), QUEUE / 2);
}

/// A used length larger than the buffer is dropped and counted, without a reset: the
/// entry itself names a buffer the driver posted.
#[test]
fn a_used_length_beyond_the_buffer_is_dropped_without_a_reset() {
    let (mut driver, mut device, _, task) = setup();
    let (head, _, _) = device.take_avail(0).expect("a receive buffer");
    device.put_used(0, head, 100_000);
    let mut got = Vec::new();
    assert!(driver.receive(&task, &mut |bytes| got.push(bytes.to_vec())));
    assert!(got.is_empty());
    assert_eq!(stats(&driver), (1, 0, 0));
    device.deliver(&frame(3));
    assert!(driver.receive(&task, &mut |bytes| got.push(bytes.to_vec())));
    assert_eq!(got, vec![frame(3)]);
}

/// A device that does not come back after the reset is left alone: no frames, no
/// spinning, no panic.
#[test]
fn a_device_that_does_not_come_back_is_left_alone() {
    let (mut driver, mut device, _, task) = setup();
    device.transport.0.lock().unwrap().drops_features_ok = true;
    device.put_used(0, 1000, 100);
    assert!(!driver.receive(&task, &mut |_| {}));
    assert_eq!(driver.stats.reset_failures.load(Ordering::Relaxed), 1);
    assert!(!driver.receive(&task, &mut |_| {}));
    assert!(!send(&mut driver, &task, &frame(1)));
    assert_eq!(stats(&driver).1, 1, "one attempt");
}

/// `VIRTIO_NET_F_MTU`: the offered MTU is negotiated and used, kept within what IPv4
/// allows and the receive buffers hold; `limit_mtu` (the command line's `mtu=`) only
/// lowers it. A pod network's tap carries 1450 bytes on an overlay.
#[test]
fn offered_mtu_is_negotiated_and_bounded() {
    let with_mtu = |mtu: u16| {
        let mut config = vec![0u8; 12];
        config[..6].copy_from_slice(&MAC);
        config[10..12].copy_from_slice(&mtu.to_le_bytes());
        let state = DeviceState {
            offered: Some(VIRTIO_NET_F_MAC | VIRTIO_NET_F_MTU | VIRTIO_F_VERSION_1),
            config: Some(config),
            ..DeviceState::default()
        };
        let (driver, device, _) = setup_device(state, HEADER).unwrap();
        let negotiated = device.transport.0.lock().unwrap().features;
        assert_ne!(negotiated & VIRTIO_NET_F_MTU, 0);
        driver
    };
    assert_eq!(with_mtu(1450).mtu(), 1450);
    assert_eq!(
        with_mtu(9000).mtu(),
        1500,
        "no larger than the buffers hold"
    );
    assert_eq!(
        with_mtu(0).mtu(),
        68,
        "a hostile 0 becomes the IPv4 minimum"
    );
    let mut driver = with_mtu(1450);
    driver.limit_mtu(1400);
    assert_eq!(driver.mtu(), 1400);
    driver.limit_mtu(1500);
    assert_eq!(driver.mtu(), 1400, "mtu= never raises it");
    // Without the feature: 1500.
    let (driver, _, _, _) = setup();
    assert_eq!(driver.mtu(), 1500);
}
