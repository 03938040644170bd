//! virtio-rng (virtio spec 1.2, section 5.4): one request queue, interrupt-driven.
//!
//! A request is one device-writable buffer; the device fills some or all of it and
//! returns it in the used ring with the count written. [`RngDevice::poll_fill`] posts a
//! request, registers the caller's waker and returns `Pending`; the kernel's interrupt
//! handler wakes it when the device has answered. Nothing waits in a loop.
//!
//! DMA ownership: the one request buffer is a [`Lent`] (no Rust owner asserts access
//! to it) held in [`Request::Posted`] while the device owns it; it becomes a `Box`
//! again only through the used ring, under the token it was posted with, or after the
//! device is reset on drop. Device memory is untrusted: a used entry with another token,
//! or a length larger than the buffer, is refused ([`RngError::Untrusted`]) and its
//! bytes are never handed out.
#![allow(unsafe_code)]

use crate::features::{self, VIRTIO_F_VERSION_1};
use crate::lent::Lent;
use alloc::boxed::Box;
use core::sync::atomic::{Ordering, fence};
use core::task::{Context, Poll};
use futures_util::task::AtomicWaker;
use virtio_drivers::Hal;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::{DeviceStatus, Transport};

/// Queue index of requestq (spec 5.4.2) and its size.
const REQUEST_QUEUE: u16 = 0;
const QUEUE: usize = 4;
/// Bytes asked for per request.
const REQUEST: usize = 256;

/// Why entropy could not be had from the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RngError {
    /// virtio-drivers refused the device (queue setup).
    Device(virtio_drivers::Error),
    /// The device did not keep FEATURES_OK.
    Features,
    /// The device returned a used entry the driver cannot trust (another token, or more
    /// bytes than the buffer holds); the request is abandoned.
    Untrusted {
        /// The length it claimed.
        length: u32,
    },
}

impl core::fmt::Display for RngError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RngError::Device(error) => write!(
                f,
                "virtio-rng setup failed: {error}; check the VMM's virtio-rng device options"
            ),
            RngError::Features => f.write_str(
                "virtio-rng refused the driver's features; check the VMM's virtio-rng options",
            ),
            RngError::Untrusted { length } => write!(
                f,
                "virtio-rng returned an entry the driver cannot trust (length {length}); \
                 the device is no longer used"
            ),
        }
    }
}

impl core::error::Error for RngError {}

/// Where the request buffer is.
enum Request {
    /// With the driver.
    Idle(Box<[u8]>),
    /// With the device, under this token.
    Posted(u16, Lent),
    /// Given up to a device that misbehaved (never freed under it).
    Lost,
}

/// The request buffer back from the device, and how many bytes it wrote.
type Answer = (Box<[u8]>, usize);

/// A virtio-rng device.
pub struct RngDevice<H: Hal, T: Transport> {
    transport: T,
    queue: VirtQueue<H, QUEUE>,
    request: Request,
    waker: &'static AtomicWaker,
}

impl<H: Hal, T: Transport> RngDevice<H, T> {
    /// Initializes the device (spec 3.1.1) with its interrupts on; `waker` is what the
    /// kernel's interrupt handler wakes.
    ///
    /// # Errors
    /// `RngError::Device` when the queue cannot be set up, `RngError::Features` when the
    /// device refuses the features.
    pub fn new(mut transport: T, waker: &'static AtomicWaker) -> Result<Self, RngError> {
        features::negotiate(&mut transport, VIRTIO_F_VERSION_1).map_err(|_| RngError::Features)?;
        transport.set_guest_page_size(4096);
        let queue = VirtQueue::new(&mut transport, REQUEST_QUEUE, false, false)
            .map_err(RngError::Device)?;
        transport.finish_init();
        Ok(Self {
            transport,
            queue,
            request: Request::Idle(alloc::vec![0; REQUEST].into_boxed_slice()),
            waker,
        })
    }

    /// Fills the start of `out` with what the device returns: `Ready(Ok(n))` with
    /// `n >= 1` bytes written, or `Pending` with the waker registered and a request
    /// posted (the device's interrupt wakes the task).
    ///
    /// # Errors
    /// `RngError::Untrusted` when the device returned an entry it should not have.
    pub fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<Result<usize, RngError>> {
        if out.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Register before looking, so an answer between the look and `Pending` wakes us.
        self.waker.register(cx.waker());
        loop {
            match core::mem::replace(&mut self.request, Request::Lost) {
                Request::Idle(buffer) => self.post(buffer)?,
                Request::Posted(token, buffer) => {
                    return match self.take(token, buffer)? {
                        Some((buffer, length)) => {
                            let count = length.min(out.len());
                            out[..count].copy_from_slice(&buffer[..count]);
                            self.request = Request::Idle(buffer);
                            if count == 0 {
                                // An empty answer: ask again (the device may be starved).
                                continue;
                            }
                            Poll::Ready(Ok(count))
                        }
                        None => Poll::Pending,
                    };
                }
                Request::Lost => return Poll::Ready(Err(RngError::Untrusted { length: 0 })),
            }
        }
    }

    /// Posts the request buffer and notifies the device.
    fn post(&mut self, buffer: Box<[u8]>) -> Result<(), RngError> {
        let mut lent = Lent::new(buffer);
        // SAFETY: not posted yet: the device does not know these bytes.
        let bytes = unsafe { lent.bytes() };
        // SAFETY: the buffer (lent: no owner asserts access to it) moves into
        // `self.request` as `Posted` right below and is not touched until `take` gets it
        // back for that token; on error the queue kept nothing.
        match unsafe { self.queue.add(&[], &mut [bytes]) } {
            Ok(token) => {
                self.request = Request::Posted(token, lent);
                // The avail index is published; the device's flag is read after it.
                fence(Ordering::SeqCst);
                if self.queue.should_notify() {
                    self.transport.notify(REQUEST_QUEUE);
                }
                Ok(())
            }
            Err(error) => {
                // SAFETY: the queue refused the buffer: the device never saw it.
                self.request = Request::Idle(unsafe { lent.take_back() });
                Err(RngError::Device(error))
            }
        }
    }

    /// The posted buffer back with the count written, `None` (and the buffer still
    /// posted) when the device has not answered yet.
    fn take(&mut self, token: u16, mut lent: Lent) -> Result<Option<Answer>, RngError> {
        let Some(used) = self.queue.peek_used() else {
            self.request = Request::Posted(token, lent);
            return Ok(None);
        };
        if used != token {
            // Leave the buffer with the device (`Lost`): it may still write into it, so
            // the `Lent` goes out of scope, which leaks it.
            return Err(RngError::Untrusted { length: 0 });
        }
        // SAFETY: the used ring returned `token`: the device is done with the buffer.
        let bytes = unsafe { lent.bytes() };
        // SAFETY: `bytes` is the buffer posted under `token`, with the same direction and
        // length.
        let length =
            unsafe { self.queue.pop_used(token, &[], &mut [bytes]) }.map_err(RngError::Device)?;
        // SAFETY: popped: the device gave the buffer back.
        let buffer = unsafe { lent.take_back() };
        if length as usize > buffer.len() {
            return Err(RngError::Untrusted { length });
        }
        Ok(Some((buffer, length as usize)))
    }
}

impl<H: Hal, T: Transport> Drop for RngDevice<H, T> {
    fn drop(&mut self) {
        // The device must give up the request and forget the queue before the queue's
        // memory (and the buffer) is freed: the fields drop after this. A reset makes it
        // give up every buffer (spec 2.4).
        self.transport.set_status(DeviceStatus::empty());
        self.transport.queue_unset(REQUEST_QUEUE);
        if let Request::Posted(_, lent) = core::mem::replace(&mut self.request, Request::Lost) {
            // SAFETY: the device was just reset: it no longer uses the buffer.
            drop(unsafe { lent.take_back() });
        }
    }
}

#[cfg(test)]
mod tests;
