//! The driver against a fake device that reads and writes the rings as QEMU does, so the
//! notification policy is checked: notifications once per flush and only when the device
//! wants them, receive interrupts off while draining, backpressure on a full queue.

use super::*;
use alloc::sync::Arc;
use core::ptr::NonNull;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::task::Wake;
use virtio_drivers::transport::{DeviceType, InterruptStatus};
use virtio_drivers::{BufferDirection, PhysAddr};

/// Heap memory as DMA memory: physical address = virtual address.
struct FakeHal;

fn page_layout(pages: usize) -> core::alloc::Layout {
    core::alloc::Layout::from_size_align(pages * 4096, 4096).unwrap()
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned heap memory that nothing else aliases
// until `dma_dealloc`; addresses are the pointers themselves, which the fake device uses.
unsafe impl Hal for FakeHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        // SAFETY: the layout has a non-zero size (virtio-drivers asks for >= 1 page).
        let pointer = NonNull::new(unsafe { std::alloc::alloc_zeroed(page_layout(pages)) })
            .expect("test heap");
        (pointer.as_ptr() as u64, pointer)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: the caller passes back what `dma_alloc` returned for `pages`.
        unsafe { std::alloc::dealloc(vaddr.as_ptr(), page_layout(pages)) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).expect("no MMIO in these tests")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as u64
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
const NO_NOTIFY: u16 = 1; // used ring flag (spec 2.7.10)
const NO_INTERRUPT: u16 = 1; // avail ring flag (spec 2.7.7)

#[derive(Default)]
struct DeviceState {
    status: DeviceStatus,
    /// What the device offers; `None`: a modern device (MAC, VERSION_1, EVENT_IDX).
    offered: Option<u64>,
    /// The device does not keep FEATURES_OK (a legacy device has no such bit, or a
    /// modern one refusing the features).
    drops_features_ok: bool,
    features: u64,
    /// (descriptor table, avail ring, used ring) addresses per queue.
    rings: [(u64, u64, u64); 2],
    notifications: [usize; 2],
}

#[derive(Clone, Default)]
struct FakeTransport(Arc<Mutex<DeviceState>>);

impl Transport for FakeTransport {
    fn device_type(&self) -> DeviceType {
        DeviceType::Network
    }
    fn read_device_features(&mut self) -> u64 {
        // By default also EVENT_IDX, to be declined.
        (self.0.lock().unwrap().offered).unwrap_or(VIRTIO_NET_F_MAC | VIRTIO_F_VERSION_1 | 1 << 29)
    }
    fn write_driver_features(&mut self, features: u64) {
        self.0.lock().unwrap().features = features;
    }
    fn max_queue_size(&mut self, _queue: u16) -> u32 {
        256
    }
    fn notify(&mut self, queue: u16) {
        self.0.lock().unwrap().notifications[usize::from(queue)] += 1;
    }
    fn get_status(&self) -> DeviceStatus {
        self.0.lock().unwrap().status
    }
    fn set_status(&mut self, status: DeviceStatus) {
        let mut state = self.0.lock().unwrap();
        state.status = status;
        if state.drops_features_ok {
            state.status.remove(DeviceStatus::FEATURES_OK);
        }
    }
    fn set_guest_page_size(&mut self, _size: u32) {}
    fn requires_legacy_layout(&self) -> bool {
        false
    }
    fn queue_set(
        &mut self,
        queue: u16,
        _size: u32,
        desc: PhysAddr,
        avail: PhysAddr,
        used: PhysAddr,
    ) {
        self.0.lock().unwrap().rings[usize::from(queue)] = (desc, avail, used);
    }
    fn queue_unset(&mut self, queue: u16) {
        self.0.lock().unwrap().rings[usize::from(queue)] = (0, 0, 0);
    }
    fn queue_used(&mut self, queue: u16) -> bool {
        self.0.lock().unwrap().rings[usize::from(queue)].0 != 0
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        InterruptStatus::empty()
    }
    fn read_config_generation(&self) -> u32 {
        0
    }
    fn read_config_space<V: zerocopy::FromBytes + zerocopy::IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<V> {
        let mut config = [0u8; 8];
        config[..6].copy_from_slice(&MAC);
        Ok(V::read_from_prefix(&config[offset..]).unwrap().0)
    }
    fn write_config_space<V: zerocopy::IntoBytes + zerocopy::Immutable>(
        &mut self,
        _offset: usize,
        _value: V,
    ) -> virtio_drivers::Result<()> {
        Ok(())
    }
}

/// The device side of the rings: reads avail entries, writes used entries.
struct FakeDevice {
    transport: FakeTransport,
    next_avail: [u16; 2],
    next_used: [u16; 2],
    /// The virtio-net header's size: 12, or 10 for a legacy device.
    header: usize,
}

/// Reads a `T` the driver shares at `address`.
fn read<T: Copy>(address: u64) -> T {
    // SAFETY: every address comes from `queue_set` of the live device under test (or a
    // descriptor in its table): FakeHal memory, mapped and aligned for `T`.
    unsafe { core::ptr::read_volatile(address as *const T) }
}

fn write<T: Copy>(address: u64, value: T) {
    // SAFETY: as in `read`; the device side owns these fields (used ring) or buffers
    // (posted for the device to write).
    unsafe { core::ptr::write_volatile(address as *mut T, value) }
}

impl FakeDevice {
    fn rings(&self, queue: usize) -> (u64, u64, u64) {
        self.transport.0.lock().unwrap().rings[queue]
    }

    fn notifications(&self) -> [usize; 2] {
        self.transport.0.lock().unwrap().notifications
    }

    /// The driver's avail flags (NO_INTERRUPT) for `queue`.
    fn interrupts_wanted(&self, queue: usize) -> bool {
        read::<u16>(self.rings(queue).1) & NO_INTERRUPT == 0
    }

    fn suppress_notifications(&self, queue: usize, suppress: bool) {
        write::<u16>(self.rings(queue).2, if suppress { NO_NOTIFY } else { 0 });
    }

    /// The next buffer the driver made available: (head, address, length).
    fn take_avail(&mut self, queue: usize) -> Option<(u16, u64, u32)> {
        let (desc, avail, _) = self.rings(queue);
        let idx = read::<u16>(avail + 2);
        if idx == self.next_avail[queue] {
            return None;
        }
        let slot = u64::from(self.next_avail[queue] % QUEUE as u16);
        let head = read::<u16>(avail + 4 + 2 * slot);
        self.next_avail[queue] = self.next_avail[queue].wrapping_add(1);
        let entry = desc + 16 * u64::from(head);
        Some((head, read::<u64>(entry), read::<u32>(entry + 8)))
    }

    fn put_used(&mut self, queue: usize, head: u16, written: u32) {
        let (_, _, used) = self.rings(queue);
        let slot = u64::from(self.next_used[queue] % QUEUE as u16);
        write::<u32>(used + 4 + 8 * slot, u32::from(head));
        write::<u32>(used + 8 + 8 * slot, written);
        self.next_used[queue] = self.next_used[queue].wrapping_add(1);
        fence(Ordering::SeqCst);
        write::<u16>(used + 2, self.next_used[queue]);
    }

    /// Sends every queued frame (without its virtio-net header) and completes it.
    fn transmitted(&mut self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        while let Some((head, address, length)) = self.take_avail(1) {
            frames.push(
                (self.header as u64..u64::from(length))
                    .map(|i| read::<u8>(address + i))
                    .collect(),
            );
            self.put_used(1, head, 0);
        }
        frames
    }

    /// Writes `frame` into the next receive buffer.
    fn deliver(&mut self, frame: &[u8]) {
        let header = self.header;
        let (head, address, length) = self.take_avail(0).expect("a receive buffer");
        assert!(header + frame.len() <= length as usize);
        for i in 0..header {
            write::<u8>(address + i as u64, 0);
        }
        for (i, &byte) in frame.iter().enumerate() {
            write::<u8>(address + (header + i) as u64, byte);
        }
        self.put_used(0, head, (header + frame.len()) as u32);
    }
}

struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

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
        next_avail: [0; 2],
        next_used: [0; 2],
        header,
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
    let [_, before] = device.notifications();
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
