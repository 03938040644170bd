//! [`VecPage`]: a [`SharedPage`] in ordinary memory, for host tests.
//!
//! Public and always compiled, not behind a feature: other crates' host tests (and a
//! backend simulated in them) need it, it is small and `no_std`, and a type the kernel
//! never names costs its image nothing. A clone is the same page, not a copy: the test
//! keeps one to play the other domain while the driver owns the other.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering, fence};

use super::{PAGE_SIZE, SharedPage};

/// A 4 KiB page of atomic words, shared by its clones. Every access is sequentially
/// consistent (stronger than the trait asks); a `u64` is two `u32` accesses, low half
/// first, which no test relies on being atomic.
#[derive(Clone)]
pub struct VecPage {
    words: Arc<[AtomicU32]>,
}

impl Default for VecPage {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for VecPage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("VecPage")
    }
}

impl VecPage {
    /// A zeroed page.
    pub fn new() -> Self {
        let words: Vec<AtomicU32> = (0..PAGE_SIZE / 4).map(|_| AtomicU32::new(0)).collect();
        Self {
            words: words.into(),
        }
    }

    /// The byte at `offset`.
    fn byte(&self, offset: usize) -> u8 {
        let word = self.words[offset / 4].load(Ordering::SeqCst);
        word.to_le_bytes()[offset % 4]
    }

    /// Replaces the bits of the word holding `offset` selected by `mask` with `bits`.
    fn merge(&self, offset: usize, mask: u32, bits: u32) {
        let word = &self.words[offset / 4];
        let _ = word.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |old| {
            Some((old & !mask) | (bits & mask))
        });
    }

    /// Panics on an access past the page or misaligned: in a test, that is the bug
    /// the test is there to find.
    fn check(offset: usize, len: usize, align: usize) {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= PAGE_SIZE),
            "access of {len} bytes at {offset} is past the page"
        );
        assert!(
            offset.is_multiple_of(align),
            "access of {len} bytes at {offset} is misaligned"
        );
    }
}

impl SharedPage for VecPage {
    fn load_u32(&self, offset: usize) -> u32 {
        Self::check(offset, 4, 4);
        self.words[offset / 4].load(Ordering::SeqCst)
    }

    fn store_u32(&self, offset: usize, value: u32) {
        Self::check(offset, 4, 4);
        self.words[offset / 4].store(value, Ordering::SeqCst);
    }

    fn load_u16(&self, offset: usize) -> u16 {
        Self::check(offset, 2, 2);
        let shift = (offset % 4) * 8;
        (self.words[offset / 4].load(Ordering::SeqCst) >> shift) as u16
    }

    fn store_u16(&self, offset: usize, value: u16) {
        Self::check(offset, 2, 2);
        let shift = (offset % 4) * 8;
        self.merge(offset, 0xffff << shift, u32::from(value) << shift);
    }

    fn load_u64(&self, offset: usize) -> u64 {
        Self::check(offset, 8, 8);
        u64::from(self.load_u32(offset)) | (u64::from(self.load_u32(offset + 4)) << 32)
    }

    fn store_u64(&self, offset: usize, value: u64) {
        Self::check(offset, 8, 8);
        self.store_u32(offset, value as u32);
        self.store_u32(offset + 4, (value >> 32) as u32);
    }

    fn read(&self, offset: usize, into: &mut [u8]) {
        Self::check(offset, into.len(), 1);
        for (index, byte) in into.iter_mut().enumerate() {
            *byte = self.byte(offset + index);
        }
    }

    fn write(&self, offset: usize, from: &[u8]) {
        Self::check(offset, from.len(), 1);
        for (index, &byte) in from.iter().enumerate() {
            let at = offset + index;
            let shift = (at % 4) * 8;
            self.merge(at, 0xff << shift, u32::from(byte) << shift);
        }
    }

    fn fence(&self) {
        fence(Ordering::SeqCst);
    }

    fn compare_exchange_u16(&self, offset: usize, current: u16, new: u16) -> Result<u16, u16> {
        Self::check(offset, 2, 2);
        let shift = (offset % 4) * 8;
        let mask = 0xffff_u32 << shift;
        let result =
            self.words[offset / 4].fetch_update(Ordering::SeqCst, Ordering::SeqCst, |old| {
                ((old >> shift) as u16 == current)
                    .then_some((old & !mask) | (u32::from(new) << shift))
            });
        result
            .map(|old| (old >> shift) as u16)
            .map_err(|old| (old >> shift) as u16)
    }
}
