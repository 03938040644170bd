//! [`Lent`]: a buffer while a device may read or write it, with no Rust owner.
//!
//! Why not keep the `Box`: a `Box<[u8]>` (or a `&mut [u8]` made from it) asserts that
//! nothing else touches its bytes, which a device writing them contradicts (Miri's
//! aliasing model flags a `Box` held across the device's writes). A `Lent` is a raw
//! pointer to the same allocation and asserts nothing; the bytes become a `Box` again
//! only when the used ring (or a reset) says the device is done with them. Every driver
//! that lends heap buffers (blk, net, rng) holds them this way.
#![allow(unsafe_code)]

use alloc::boxed::Box;
use core::ptr::NonNull;

/// A heap buffer while the device holds it. Dropping one leaks the bytes (a device that
/// misbehaved may still write them); only [`Lent::take_back`] frees them, once the
/// device gave them back.
pub(crate) struct Lent(NonNull<[u8]>);

// SAFETY: a `Lent` is the only handle to its heap allocation, as the `Box` it came from
// was; nothing in it is tied to a thread.
unsafe impl Send for Lent {}

impl Lent {
    /// Lends `buffer` (to post it next).
    pub(crate) fn new(buffer: Box<[u8]>) -> Self {
        Lent(NonNull::from(Box::leak(buffer)))
    }

    /// How many bytes.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The bytes, to post them or to pop them.
    ///
    /// # Safety
    /// The device must not hold them: call it before posting, or once the used ring
    /// returned them.
    pub(crate) unsafe fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the pointer came from a live `Box` that nothing frees while this `Lent`
        // exists, and (the caller's duty) the device is not using the bytes.
        unsafe { &mut *self.0.as_ptr() }
    }

    /// The buffer back, to hand out or free.
    ///
    /// # Safety
    /// As for [`Lent::bytes`]: the device does not hold the bytes (any more).
    pub(crate) unsafe fn take_back(self) -> Box<[u8]> {
        // SAFETY: the pointer is the one `Box::leak` returned in `new`, taken back once
        // (`self` is consumed), with the device done with the bytes (the caller's duty).
        unsafe { Box::from_raw(self.0.as_ptr()) }
    }
}
