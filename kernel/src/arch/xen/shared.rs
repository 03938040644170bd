//! Pages shared with Xen or another domain: every access to them, all of it atomic.
//!
//! The other side (Xen, xenconsoled, xenstored, netback) writes these pages while the
//! kernel reads them, so no Rust reference to their bytes is ever made: each access is
//! one atomic load or store (words) or a volatile byte copy (payloads), at an offset
//! checked against the page. This is the kernel's implementation of
//! `torito_virtio::xen::SharedPage` and of the event words the upcall scans.

use core::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering, fence};
use torito_boot::xen::events::{self, EventWords};

/// Bytes in a page.
pub const SIZE: usize = 4096;

/// One mapped, page-aligned 4 KiB page that lives as long as the kernel and that no Rust
/// object occupies.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    address: usize,
}

impl Page {
    /// The page at virtual address `address`.
    ///
    /// # Safety
    /// `address` must be 4 KiB-aligned and mapped read-write for the rest of the kernel's
    /// life, and no Rust object may live in the page (only this type accesses it).
    pub unsafe fn new(address: u64) -> Self {
        debug_assert!(address.is_multiple_of(SIZE as u64));
        Self {
            address: address as usize,
        }
    }

    /// The address of `size` bytes at `offset`, which must lie inside the page and be
    /// aligned to `size`: a wrong offset is a bug of the caller (indices from the other
    /// side are masked before they become offsets), so it panics.
    fn at(&self, offset: usize, size: usize) -> usize {
        assert!(
            offset.is_multiple_of(size) && offset + size <= SIZE,
            "shared page: {size}-byte access at offset {offset}"
        );
        self.address + offset
    }

    /// The atomic byte at `offset`.
    pub fn u8(&self, offset: usize) -> &AtomicU8 {
        // SAFETY: inside the page (`at`), which stays mapped and holds no Rust object
        // (`new`'s contract); every access to it is atomic.
        unsafe { AtomicU8::from_ptr(self.at(offset, 1) as *mut u8) }
    }

    /// The atomic 16-bit word at `offset`.
    pub fn u16(&self, offset: usize) -> &AtomicU16 {
        // SAFETY: as `u8`, aligned by `at`.
        unsafe { AtomicU16::from_ptr(self.at(offset, 2) as *mut u16) }
    }

    /// The atomic 32-bit word at `offset`.
    pub fn u32(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: as `u8`, aligned by `at`.
        unsafe { AtomicU32::from_ptr(self.at(offset, 4) as *mut u32) }
    }

    /// The atomic 64-bit word at `offset`.
    pub fn u64(&self, offset: usize) -> &AtomicU64 {
        // SAFETY: as `u8`, aligned by `at`.
        unsafe { AtomicU64::from_ptr(self.at(offset, 8) as *mut u64) }
    }

    /// Copies bytes out of the page, from `offset`.
    pub fn read(&self, offset: usize, into: &mut [u8]) {
        for (index, byte) in into.iter_mut().enumerate() {
            *byte = self.u8(offset + index).load(Ordering::Relaxed);
        }
    }

    /// Copies bytes into the page, at `offset`.
    pub fn write(&self, offset: usize, from: &[u8]) {
        for (index, byte) in from.iter().enumerate() {
            self.u8(offset + index).store(*byte, Ordering::Relaxed);
        }
    }
}

/// The shared info page, seen as the event words of `torito_boot::xen::events`.
pub struct SharedInfo(pub Page);

impl SharedInfo {
    fn vcpu(vcpu: usize) -> usize {
        assert!(
            vcpu < events::SHARED_VCPUS,
            "vCPU {vcpu} has no shared vcpu_info"
        );
        vcpu * events::VCPU_INFO_SIZE
    }
}

impl SharedInfo {
    /// Masks `port` (its events stay pending and raise no upcall); ports past the
    /// bitmap are ignored.
    pub fn mask_port(&self, port: u32) {
        if let Some((word, bit)) = events::port_bit(port) {
            self.0
                .u64(events::MASK + word * 8)
                .fetch_or(bit, Ordering::SeqCst);
        }
    }
}

impl EventWords for SharedInfo {
    fn clear_upcall_pending(&self, vcpu: usize) {
        self.0
            .u8(Self::vcpu(vcpu) + events::UPCALL_PENDING)
            .store(0, Ordering::SeqCst);
    }

    fn take_selector(&self, vcpu: usize) -> u64 {
        self.0
            .u64(Self::vcpu(vcpu) + events::PENDING_SELECTOR)
            .swap(0, Ordering::SeqCst)
    }

    fn pending(&self, word: usize) -> u64 {
        self.0
            .u64(events::PENDING + word * 8)
            .load(Ordering::Acquire)
    }

    fn mask(&self, word: usize) -> u64 {
        self.0.u64(events::MASK + word * 8).load(Ordering::Acquire)
    }

    fn clear_pending(&self, word: usize, bits: u64) {
        self.0
            .u64(events::PENDING + word * 8)
            .fetch_and(!bits, Ordering::SeqCst);
    }
}

/// A full barrier (Xen's `mb()`).
pub fn full_fence() {
    fence(Ordering::SeqCst);
}

impl torito_virtio::xen::SharedPage for Page {
    fn load_u32(&self, offset: usize) -> u32 {
        self.u32(offset).load(Ordering::Acquire)
    }
    fn store_u32(&self, offset: usize, value: u32) {
        self.u32(offset).store(value, Ordering::Release);
    }
    fn load_u16(&self, offset: usize) -> u16 {
        self.u16(offset).load(Ordering::Acquire)
    }
    fn store_u16(&self, offset: usize, value: u16) {
        self.u16(offset).store(value, Ordering::Release);
    }
    fn load_u64(&self, offset: usize) -> u64 {
        self.u64(offset).load(Ordering::Acquire)
    }
    fn store_u64(&self, offset: usize, value: u64) {
        self.u64(offset).store(value, Ordering::Release);
    }
    fn read(&self, offset: usize, into: &mut [u8]) {
        Page::read(self, offset, into);
    }
    fn write(&self, offset: usize, from: &[u8]) {
        Page::write(self, offset, from);
    }
    fn fence(&self) {
        full_fence();
    }
    fn compare_exchange_u16(&self, offset: usize, current: u16, new: u16) -> Result<u16, u16> {
        self.u16(offset)
            .compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst)
    }
}
