//! Fakes shared by the driver tests: heap memory as DMA memory, a transport that records
//! what the driver sets, and the device side of the rings (reads avail entries, writes
//! used ones, as QEMU does). Test-only.
#![allow(unsafe_code)]

use alloc::sync::Arc;
use core::ptr::NonNull;
use core::sync::atomic::{Ordering, fence};
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::task::Wake;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

/// Heap memory as DMA memory: physical address = virtual address.
pub(crate) struct FakeHal;

pub(crate) fn page_layout(pages: usize) -> core::alloc::Layout {
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

pub(crate) const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
pub(crate) const NO_NOTIFY: u16 = 1; // used ring flag (spec 2.7.10)
pub(crate) const NO_INTERRUPT: u16 = 1; // avail ring flag (spec 2.7.7)

#[derive(Default)]
pub(crate) struct DeviceState {
    pub(crate) status: DeviceStatus,
    /// What the device offers; `None`: a modern device (MAC, VERSION_1, EVENT_IDX).
    pub(crate) offered: Option<u64>,
    /// The device does not keep FEATURES_OK (a legacy device has no such bit, or a
    /// modern one refusing the features).
    pub(crate) drops_features_ok: bool,
    pub(crate) features: u64,
    /// (descriptor table, avail ring, used ring) addresses per queue.
    pub(crate) rings: [(u64, u64, u64); 3],
    pub(crate) notifications: [usize; 3],
    /// The device type; `None`: network.
    pub(crate) kind: Option<DeviceType>,
    /// The configuration space; `None`: a NIC's (its MAC address).
    pub(crate) config: Option<Vec<u8>>,
}

#[derive(Clone, Default)]
pub(crate) struct FakeTransport(pub(crate) Arc<Mutex<DeviceState>>);

impl Transport for FakeTransport {
    fn device_type(&self) -> DeviceType {
        self.0.lock().unwrap().kind.unwrap_or(DeviceType::Network)
    }
    fn read_device_features(&mut self) -> u64 {
        // By default also EVENT_IDX, to be declined.
        (self.0.lock().unwrap().offered).unwrap_or(1 << 5 | 1 << 32 | 1 << 29)
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
        let state = self.0.lock().unwrap();
        let config = state.config.as_deref().unwrap_or(&config);
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
pub(crate) struct FakeDevice {
    pub(crate) transport: FakeTransport,
    pub(crate) next_avail: [u16; 3],
    pub(crate) next_used: [u16; 3],
    /// The virtio-net header's size: 12, or 10 for a legacy device.
    pub(crate) header: usize,
    /// Descriptors per queue (the driver's queue size).
    pub(crate) queue_size: u16,
}

/// Reads a `T` the driver shares at `address`.
pub(crate) fn read<T: Copy>(address: u64) -> T {
    // SAFETY: every address comes from `queue_set` of the live device under test (or a
    // descriptor in its table): FakeHal memory, mapped and aligned for `T`.
    unsafe { core::ptr::read_volatile(address as *const T) }
}

pub(crate) fn write<T: Copy>(address: u64, value: T) {
    // SAFETY: as in `read`; the device side owns these fields (used ring) or buffers
    // (posted for the device to write).
    unsafe { core::ptr::write_volatile(address as *mut T, value) }
}

impl FakeDevice {
    pub(crate) fn rings(&self, queue: usize) -> (u64, u64, u64) {
        self.transport.0.lock().unwrap().rings[queue]
    }

    pub(crate) fn notifications(&self) -> [usize; 3] {
        self.transport.0.lock().unwrap().notifications
    }

    /// The driver's avail flags (NO_INTERRUPT) for `queue`.
    pub(crate) fn interrupts_wanted(&self, queue: usize) -> bool {
        read::<u16>(self.rings(queue).1) & NO_INTERRUPT == 0
    }

    pub(crate) fn suppress_notifications(&self, queue: usize, suppress: bool) {
        write::<u16>(self.rings(queue).2, if suppress { NO_NOTIFY } else { 0 });
    }

    /// The next chain the driver made available: (head, [(address, length)] of each
    /// descriptor, following NEXT flags, at most 4).
    pub(crate) fn take_avail_chain(&mut self, queue: usize) -> Option<(u16, Vec<(u64, u32)>)> {
        let (desc, avail, _) = self.rings(queue);
        let idx = read::<u16>(avail + 2);
        if idx == self.next_avail[queue] {
            return None;
        }
        let slot = u64::from(self.next_avail[queue] % self.queue_size);
        let head = read::<u16>(avail + 4 + 2 * slot);
        self.next_avail[queue] = self.next_avail[queue].wrapping_add(1);
        let mut parts = Vec::new();
        let mut index = head;
        for _ in 0..4 {
            let entry = desc + 16 * u64::from(index);
            parts.push((read::<u64>(entry), read::<u32>(entry + 8)));
            if read::<u16>(entry + 12) & 1 == 0 {
                break;
            }
            index = read::<u16>(entry + 14);
        }
        Some((head, parts))
    }

    /// The next buffer the driver made available: (head, address, length).
    pub(crate) fn take_avail(&mut self, queue: usize) -> Option<(u16, u64, u32)> {
        let (desc, avail, _) = self.rings(queue);
        let idx = read::<u16>(avail + 2);
        if idx == self.next_avail[queue] {
            return None;
        }
        let slot = u64::from(self.next_avail[queue] % self.queue_size);
        let head = read::<u16>(avail + 4 + 2 * slot);
        self.next_avail[queue] = self.next_avail[queue].wrapping_add(1);
        let entry = desc + 16 * u64::from(head);
        Some((head, read::<u64>(entry), read::<u32>(entry + 8)))
    }

    pub(crate) fn put_used(&mut self, queue: usize, head: u16, written: u32) {
        let (_, _, used) = self.rings(queue);
        let slot = u64::from(self.next_used[queue] % self.queue_size);
        write::<u32>(used + 4 + 8 * slot, u32::from(head));
        write::<u32>(used + 8 + 8 * slot, written);
        self.next_used[queue] = self.next_used[queue].wrapping_add(1);
        fence(Ordering::SeqCst);
        write::<u16>(used + 2, self.next_used[queue]);
    }

    /// Sends every queued frame (without its virtio-net header) and completes it.
    pub(crate) fn transmitted(&mut self) -> Vec<Vec<u8>> {
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
    pub(crate) fn deliver(&mut self, frame: &[u8]) {
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

pub(crate) struct CountingWaker(pub(crate) AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}
