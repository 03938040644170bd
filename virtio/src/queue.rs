//! One virtqueue with the buffers the device holds, by token: the hand-over that every
//! driver posting heap buffers to a queue shares (net, console, vsock).
//!
//! Why one place: posting a buffer, finding it again under the token the used ring
//! names, refusing a token that was never posted, and batching notifications are the
//! same in every driver, and the first two are where virtio-drivers' unsafe
//! `add`/`pop_used` contract is kept. Drivers differ only in what they do with what
//! comes back ([`Used`]) and in how a transmitted buffer is laid out ([`Direction`]).
//!
//! DMA ownership: a buffer the driver holds is a `Box<[u8]>`; once posted it is a
//! [`Lent`] in the slot of its token, not touched until `pop_used` returns that token
//! (or the device is reset: [`BufferQueue::take_all`]). A buffer that cannot be taken
//! back under its token is leaked, never freed under the device.
#![allow(unsafe_code)]

use crate::lent::Lent;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{Ordering, fence};
use virtio_drivers::Hal;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::Transport;

/// Who writes a queue's buffers, and how a buffer maps to descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// The device writes them (receive queues), one descriptor each.
    In,
    /// The device reads them (transmit queues), one descriptor each.
    Out,
    /// The device reads them: the first `.0` bytes and, if there are more, the rest as a
    /// second descriptor (vsock's header and payload: the layout every backend accepts).
    OutSplit(usize),
}

/// What the used ring gave back.
pub(crate) enum Used {
    /// A buffer the driver posted, and how many bytes the device says it wrote (at most
    /// what was posted).
    Buffer(Box<[u8]>, usize),
    /// A buffer the driver posted, back with a length past what was posted: its bytes
    /// are not to be used.
    Lied(Box<[u8]>),
    /// A token the driver never posted (or whose descriptors do not match): nothing came
    /// back, and the entry stays at the head of the used ring.
    Untrusted(u16),
}

/// One virtqueue of `SIZE` descriptors, with the driver's view of it: which buffers the
/// device holds, whether buffers were added since the device was last told, whether
/// used-buffer notifications (interrupts) are requested.
pub(crate) struct BufferQueue<H: Hal, const SIZE: usize> {
    index: u16,
    direction: Direction,
    queue: VirtQueue<H, SIZE>,
    /// By token (head descriptor): the buffer and how many of its bytes were posted.
    slots: Vec<Option<(Lent, usize)>>,
    unnotified: bool,
    interrupts: bool,
}

/// `VirtQueue::add` with `bytes` laid out as `direction` says.
///
/// # Safety
/// As `VirtQueue::add`: the bytes stay untouched until `pop_used` returns the token.
unsafe fn add<H: Hal, const SIZE: usize>(
    queue: &mut VirtQueue<H, SIZE>,
    direction: Direction,
    bytes: &mut [u8],
) -> Result<u16, virtio_drivers::Error> {
    // SAFETY: the caller's duty, passed on.
    unsafe {
        match direction {
            Direction::In => queue.add(&[], &mut [bytes]),
            Direction::OutSplit(at) if bytes.len() > at => {
                let (header, rest) = bytes.split_at(at);
                queue.add(&[header, rest], &mut [])
            }
            Direction::Out | Direction::OutSplit(_) => queue.add(&[bytes], &mut []),
        }
    }
}

/// `VirtQueue::pop_used` with `bytes` laid out as in [`add`].
///
/// # Safety
/// As `VirtQueue::pop_used`: `bytes` and `direction` are those `token` was added with.
unsafe fn pop_used<H: Hal, const SIZE: usize>(
    queue: &mut VirtQueue<H, SIZE>,
    direction: Direction,
    token: u16,
    bytes: &mut [u8],
) -> Result<u32, virtio_drivers::Error> {
    // SAFETY: the caller's duty, passed on.
    unsafe {
        match direction {
            Direction::In => queue.pop_used(token, &[], &mut [bytes]),
            Direction::OutSplit(at) if bytes.len() > at => {
                let (header, rest) = bytes.split_at(at);
                queue.pop_used(token, &[header, rest], &mut [])
            }
            Direction::Out | Direction::OutSplit(_) => queue.pop_used(token, &[bytes], &mut []),
        }
    }
}

impl<H: Hal, const SIZE: usize> BufferQueue<H, SIZE> {
    /// Sets up queue `index` on `transport`, with interrupts on or off.
    ///
    /// # Errors
    /// virtio-drivers' error when the queue cannot be set up.
    pub(crate) fn new<T: Transport>(
        transport: &mut T,
        index: u16,
        direction: Direction,
        interrupts: bool,
    ) -> Result<Self, virtio_drivers::Error> {
        let mut queue = VirtQueue::new(transport, index, false, false)?;
        queue.set_dev_notify(interrupts);
        Ok(Self {
            index,
            direction,
            queue,
            slots: (0..SIZE).map(|_| None).collect(),
            unnotified: false,
            interrupts,
        })
    }

    /// Asks the device for used-buffer notifications (interrupts), or not.
    pub(crate) fn set_interrupts(&mut self, on: bool) {
        if self.interrupts != on {
            self.queue.set_dev_notify(on);
            self.interrupts = on;
        }
    }

    /// Whether the used ring has an entry.
    pub(crate) fn can_pop(&self) -> bool {
        self.queue.can_pop()
    }

    /// Posts the first `length` bytes of `buffer` (all of it if shorter); the device
    /// hears of it at the next [`notify`](Self::notify). `Err` gives the buffer back
    /// (no free descriptor).
    pub(crate) fn post(&mut self, buffer: Box<[u8]>, length: usize) -> Result<(), Box<[u8]>> {
        let length = length.min(buffer.len());
        let mut lent = Lent::new(buffer);
        // SAFETY: not posted yet: the device does not know these bytes.
        let bytes = &mut unsafe { lent.bytes() }[..length];
        // SAFETY: the buffer (lent: no owner asserts access to it) moves into
        // `self.slots[token]` right below and is not touched until `take_used` gets it
        // back for that same token, with the same layout; on error the queue kept nothing.
        let Ok(token) = (unsafe { add(&mut self.queue, self.direction, bytes) }) else {
            // SAFETY: the queue refused the buffer: the device never saw it.
            return Err(unsafe { lent.take_back() });
        };
        self.unnotified = true;
        if let Some(slot) = self.slots.get_mut(usize::from(token)) {
            *slot = Some((lent, length));
        }
        // Otherwise a token outside the queue from the crate itself (a broken invariant
        // there): the device owns the buffer now, so the `Lent` goes out of scope, which
        // leaks it rather than free it under the device.
        Ok(())
    }

    /// The next entry of the used ring, if any.
    pub(crate) fn take_used(&mut self) -> Option<Used> {
        let token = self.queue.peek_used()?;
        let Some((mut lent, posted)) = self
            .slots
            .get_mut(usize::from(token))
            .and_then(Option::take)
        else {
            return Some(Used::Untrusted(token));
        };
        // SAFETY: the used ring returned `token`: the device is done with its buffer; the
        // bytes are only named here, to pass `pop_used` what was posted.
        let bytes = &mut unsafe { lent.bytes() }[..posted];
        // SAFETY: `bytes` is the buffer posted under `token` (its slot says so), with the
        // same direction, layout and length.
        let popped = unsafe { pop_used(&mut self.queue, self.direction, token, bytes) };
        Some(match popped {
            // SAFETY: popped: the device gave the buffer back.
            Ok(written) => match unsafe { lent.take_back() } {
                buffer if written as usize <= posted => Used::Buffer(buffer, written as usize),
                buffer => Used::Lied(buffer),
            },
            Err(_) => {
                // The descriptors did not match: the buffer stays with the device.
                self.slots[usize::from(token)] = Some((lent, posted));
                Used::Untrusted(token)
            }
        })
    }

    /// Notifies the device if buffers were added since the last time and it has not
    /// suppressed notifications; `true` if it was notified (a VM exit under
    /// virtualization).
    pub(crate) fn notify<T: Transport>(&mut self, transport: &mut T) -> bool {
        if !self.unnotified {
            return false;
        }
        self.unnotified = false;
        // The avail index was published before; the device's flag must be read after it
        // (a store-load order the queue's own release/acquire does not give). A device
        // that set the flag re-checks the avail ring after clearing it.
        fence(Ordering::SeqCst);
        if self.queue.should_notify() {
            transport.notify(self.index);
            return true;
        }
        false
    }

    /// Every buffer the device held, back.
    ///
    /// # Safety
    /// The device no longer uses the queue: it was reset (spec 2.4: it gives up every
    /// buffer).
    pub(crate) unsafe fn take_all(&mut self) -> Vec<Box<[u8]>> {
        let mut buffers = Vec::with_capacity(self.slots.len());
        for (lent, _) in self.slots.iter_mut().filter_map(Option::take) {
            // SAFETY: the device was reset (the caller's duty): it no longer uses the
            // bytes.
            buffers.push(unsafe { lent.take_back() });
        }
        buffers
    }
}

#[cfg(test)]
mod tests;
