//! virtio-console (virtio spec 1.2, section 5.3), port 0 only: a byte channel to the
//! host, interrupt-driven, on virtio-drivers' `VirtQueue` with our own buffers.
//!
//! Why not virtio-drivers' `VirtIOConsole`: its `send`/`send_bytes` spin until the device
//! has consumed the buffer (`add_notify_wait_pop`), its receive side keeps one 4 KiB
//! buffer in flight and hands out one byte per call, and it asserts (panics) when the
//! device returns a used entry of length 0. Here:
//!
//! * **receive**: [`RECEIVE_BUFFERS`] buffers are posted at construction; a used one is
//!   read out by [`ConsoleDevice::poll_read`] and re-posted (no allocation on the hot
//!   path). With nothing received, `poll_read` registers the waker and returns
//!   `Pending`; the receive interrupt (always requested) wakes it.
//! * **transmit**: [`ConsoleDevice::poll_write`] copies into a free transmit buffer,
//!   posts it and returns; with every buffer still with the device it registers the
//!   waker, asks for transmit interrupts and returns `Pending` (backpressure). Nothing
//!   waits in a loop.
//! * **untrusted device**: a used entry longer than its buffer is dropped (its bytes are
//!   never handed out), counted in [`ConsoleStats::bad_used`], and the buffer re-posted;
//!   an empty one is re-posted. A used entry under a token the driver never posted cannot
//!   be skipped (virtio-drivers refuses to pop it), so it is counted and the port fails
//!   from then on with [`ConsoleError::Untrusted`], never trusting the ring again.
//!
//! Only port 0 exists: `VIRTIO_CONSOLE_F_MULTIPORT` is not negotiated, so there is no
//! control queue (QEMU: `-device virtconsole`, which takes port 0).
//!
//! DMA ownership: the shared queue (`crate::queue`) holds every buffer the device owns
//! in the slot of the token it was posted under; it comes back only through `pop_used`
//! with that token, or after the reset on drop.
#![allow(unsafe_code)]

use crate::features::{self, Refused};
use crate::queue::{BufferQueue, Direction, Used};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering, fence};
use core::task::{Context, Poll};
use futures_util::task::AtomicWaker;
use virtio_drivers::Hal;
use virtio_drivers::transport::{DeviceStatus, Transport};

/// Descriptors per queue (a power of two).
const QUEUE: usize = 16;
/// Buffers posted for the device to fill, and buffers for transmission.
pub const RECEIVE_BUFFERS: usize = 8;
/// Transmit buffers: at most this many writes are in flight.
pub const TRANSMIT_BUFFERS: usize = 8;
/// Bytes per buffer: one page, as QEMU hands out data in chunks of up to that size.
pub const BUFFER: usize = 4096;
/// Queue indices of port 0 (spec 5.3.2: receiveq(port0), transmitq(port0)).
const RECEIVE_QUEUE: u16 = 0;
const TRANSMIT_QUEUE: u16 = 1;
const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Why the console port cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleError {
    /// virtio-drivers refused the device (queue setup).
    Device(virtio_drivers::Error),
    /// The device did not keep FEATURES_OK (spec 3.1.1).
    Features {
        /// The features the driver asked for.
        requested: u64,
    },
    /// The device returned a used entry under a token the driver never posted; the ring
    /// cannot be trusted (or skipped) any more.
    Untrusted {
        /// The queue (0 receive, 1 transmit).
        queue: u16,
        /// The token it returned.
        token: u16,
    },
}

impl core::fmt::Display for ConsoleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConsoleError::Device(error) => write!(
                f,
                "virtio-console setup failed: {error}; check the VMM's virtio-serial options"
            ),
            ConsoleError::Features { requested } => write!(
                f,
                "virtio-console refused features {requested:#x}; check the VMM's \
                 virtio-serial options"
            ),
            ConsoleError::Untrusted { queue, token } => write!(
                f,
                "virtio-console returned token {token} on queue {queue}, which the driver \
                 never posted; the port is no longer used (restart the VM)"
            ),
        }
    }
}

impl core::error::Error for ConsoleError {}

/// Counters of what the port moved and what the driver dropped.
#[derive(Debug, Default)]
pub struct ConsoleStats {
    /// Bytes received from the device and handed out.
    pub received: AtomicU64,
    /// Bytes handed to the device for transmission.
    pub sent: AtomicU64,
    /// Used entries the driver did not trust (a length past the buffer, or an unknown
    /// token); their bytes were dropped.
    pub bad_used: AtomicU64,
    /// Writes that found every transmit buffer with the device (backpressure events).
    pub transmit_full: AtomicU64,
    /// Queue notifications written to the device (each a VM exit).
    pub notifications: AtomicU64,
}

impl ConsoleStats {
    /// All zero (usable in a `static`).
    pub const fn new() -> Self {
        Self {
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            bad_used: AtomicU64::new(0),
            transmit_full: AtomicU64::new(0),
            notifications: AtomicU64::new(0),
        }
    }
}

/// A queue of this driver: `QUEUE` descriptors.
type Queue<H> = BufferQueue<H, QUEUE>;

/// What is being read out: a received buffer, the next byte to hand out, the end.
struct Reading {
    buffer: Box<[u8]>,
    next: usize,
    end: usize,
}

/// A virtio-console device's port 0.
pub struct ConsoleDevice<H: Hal, T: Transport> {
    transport: T,
    rx: Queue<H>,
    tx: Queue<H>,
    reading: Option<Reading>,
    /// Transmit buffers not with the device.
    tx_free: Vec<Box<[u8]>>,
    /// Set once the device broke the ring: every call fails with it.
    broken: Option<ConsoleError>,
    waker: &'static AtomicWaker,
    stats: &'static ConsoleStats,
}

fn buffer() -> Box<[u8]> {
    alloc::vec![0u8; BUFFER].into_boxed_slice()
}

impl<H: Hal, T: Transport> ConsoleDevice<H, T> {
    /// Initializes the device (spec 3.1.1), posts every receive buffer and enables its
    /// receive interrupt. `waker` is what the kernel's interrupt handler wakes.
    ///
    /// # Errors
    /// `ConsoleError::Device` when the queues cannot be set up, `ConsoleError::Features`
    /// when the device refuses the features.
    pub fn new(
        mut transport: T,
        waker: &'static AtomicWaker,
        stats: &'static ConsoleStats,
    ) -> Result<Self, ConsoleError> {
        // No MULTIPORT (one port, no control queue), no EVENT_IDX (the avail/used flags
        // suppress notifications, as in the net driver).
        features::negotiate(&mut transport, VIRTIO_F_VERSION_1)
            .map_err(|Refused { requested }| ConsoleError::Features { requested })?;
        transport.set_guest_page_size(4096);
        let rx = Queue::new(&mut transport, RECEIVE_QUEUE, Direction::In, true)
            .map_err(ConsoleError::Device)?;
        // Transmit completions interrupt only while a writer waits for a buffer.
        let tx = Queue::new(&mut transport, TRANSMIT_QUEUE, Direction::Out, false)
            .map_err(ConsoleError::Device)?;
        transport.finish_init();
        let mut device = Self {
            transport,
            rx,
            tx,
            reading: None,
            tx_free: (0..TRANSMIT_BUFFERS).map(|_| buffer()).collect(),
            broken: None,
            waker,
            stats,
        };
        for _ in 0..RECEIVE_BUFFERS {
            if device.rx.post(buffer(), BUFFER).is_err() {
                return Err(ConsoleError::Device(virtio_drivers::Error::QueueFull));
            }
        }
        device.notify_receive();
        Ok(device)
    }

    /// Acknowledges the device's interrupt (reads and clears its interrupt status).
    /// The kernel's handler may instead do this through the raw register.
    pub fn ack_interrupt(&mut self) {
        let _ = self.transport.ack_interrupt();
    }

    fn check(&self) -> Result<(), ConsoleError> {
        match self.broken {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn untrusted(&mut self, queue: u16, token: u16) -> ConsoleError {
        self.stats.bad_used.fetch_add(1, Ordering::Relaxed);
        let error = ConsoleError::Untrusted { queue, token };
        self.broken = Some(error);
        error
    }

    /// Copies received bytes into `out`: `Ready(Ok(n))` with `n >= 1` (as many as have
    /// arrived, up to `out.len()`), or `Pending` with the waker registered. A port has no
    /// end of stream: `Ready(Ok(0))` only for an empty `out`.
    ///
    /// # Errors
    /// `ConsoleError::Untrusted` once the device returned an entry it never got.
    pub fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<Result<usize, ConsoleError>> {
        self.check()?;
        if out.is_empty() {
            return Poll::Ready(Ok(0));
        }
        // Register before looking, so data arriving between the look and `Pending` wakes
        // the task.
        self.waker.register(cx.waker());
        let mut copied = 0;
        let mut reposted = false;
        while copied < out.len() {
            if let Some(reading) = &mut self.reading {
                let count = (reading.end - reading.next).min(out.len() - copied);
                out[copied..copied + count]
                    .copy_from_slice(&reading.buffer[reading.next..reading.next + count]);
                copied += count;
                reading.next += count;
                if reading.next < reading.end {
                    break;
                }
                if let Some(done) = self.reading.take() {
                    self.repost(done.buffer);
                    reposted = true;
                }
                continue;
            }
            match self.rx.take_used() {
                None => break,
                Some(Used::Untrusted(token)) => {
                    let error = self.untrusted(RECEIVE_QUEUE, token);
                    if copied == 0 {
                        return Poll::Ready(Err(error));
                    }
                    // Hand out what came before it; the next call fails.
                    break;
                }
                Some(Used::Lied(buffer)) => {
                    // Bytes the device cannot have put in the buffer: drop them all.
                    self.stats.bad_used.fetch_add(1, Ordering::Relaxed);
                    self.repost(buffer);
                    reposted = true;
                }
                Some(Used::Buffer(buffer, written)) => {
                    if written == 0 {
                        self.repost(buffer);
                        reposted = true;
                    } else {
                        self.reading = Some(Reading {
                            buffer,
                            next: 0,
                            end: written,
                        });
                    }
                }
            }
        }
        if reposted {
            self.notify_receive();
        }
        if copied == 0 {
            return Poll::Pending;
        }
        self.stats
            .received
            .fetch_add(copied as u64, Ordering::Relaxed);
        Poll::Ready(Ok(copied))
    }

    /// Notifies the device of the receive buffers posted since the last time.
    fn notify_receive(&mut self) {
        if self.rx.notify(&mut self.transport) {
            self.stats.notifications.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Gives a receive buffer back to the device (the caller notifies).
    fn repost(&mut self, buffer: Box<[u8]>) {
        // A descriptor was just freed for it, so this cannot fail; if it did, the buffer
        // is dropped and counted, and the port goes on with one buffer fewer.
        if self.rx.post(buffer, BUFFER).is_err() {
            self.stats.bad_used.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes back the transmit buffers the device is done with.
    fn reclaim(&mut self) -> Result<(), ConsoleError> {
        while let Some(used) = self.tx.take_used() {
            match used {
                // A device that only reads a buffer has nothing to lie about.
                Used::Buffer(buffer, _) | Used::Lied(buffer) => self.tx_free.push(buffer),
                Used::Untrusted(token) => return Err(self.untrusted(TRANSMIT_QUEUE, token)),
            }
        }
        Ok(())
    }

    /// Waits for a free transmit buffer: `true` when there is one; else the waker is
    /// registered and transmit interrupts requested.
    fn transmit_ready(&mut self, cx: &mut Context<'_>) -> Result<bool, ConsoleError> {
        self.reclaim()?;
        if !self.tx_free.is_empty() {
            return Ok(true);
        }
        self.waker.register(cx.waker());
        self.tx.set_interrupts(true);
        // Look once more: a completion before the request raised no interrupt.
        fence(Ordering::SeqCst);
        self.reclaim()?;
        Ok(!self.tx_free.is_empty())
    }

    /// Queues up to [`BUFFER`] bytes of `data` for the host and notifies the device:
    /// `Ready(Ok(n))` with the count taken, or `Pending` (waker registered) while every
    /// transmit buffer is with the device.
    ///
    /// # Errors
    /// `ConsoleError::Untrusted` once the device returned an entry it never got.
    pub fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<Result<usize, ConsoleError>> {
        self.check()?;
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if !self.transmit_ready(cx)? {
            self.stats.transmit_full.fetch_add(1, Ordering::Relaxed);
            return Poll::Pending;
        }
        self.tx.set_interrupts(false);
        let Some(mut buffer) = self.tx_free.pop() else {
            return Poll::Pending;
        };
        let count = data.len().min(buffer.len());
        buffer[..count].copy_from_slice(&data[..count]);
        if let Err(buffer) = self.tx.post(buffer, count) {
            // More buffers than descriptors cannot happen (TRANSMIT_BUFFERS < QUEUE).
            self.tx_free.push(buffer);
            return Poll::Ready(Err(ConsoleError::Device(virtio_drivers::Error::QueueFull)));
        }
        if self.tx.notify(&mut self.transport) {
            self.stats.notifications.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.sent.fetch_add(count as u64, Ordering::Relaxed);
        Poll::Ready(Ok(count))
    }

    /// `Ready` once the device has taken every byte written so far (every transmit
    /// buffer is back); else `Pending` with the waker registered.
    ///
    /// # Errors
    /// `ConsoleError::Untrusted` once the device returned an entry it never got.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConsoleError>> {
        self.check()?;
        self.reclaim()?;
        if self.tx_free.len() == TRANSMIT_BUFFERS {
            return Poll::Ready(Ok(()));
        }
        self.waker.register(cx.waker());
        self.tx.set_interrupts(true);
        fence(Ordering::SeqCst);
        self.reclaim()?;
        if self.tx_free.len() == TRANSMIT_BUFFERS {
            self.tx.set_interrupts(false);
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }
}

impl<H: Hal, T: Transport> Drop for ConsoleDevice<H, T> {
    fn drop(&mut self) {
        // The device must stop using the queues before their memory and the buffers are
        // freed (the fields drop after this): a reset makes it give up every buffer
        // (spec 2.4), and only then are they taken back.
        self.transport.set_status(DeviceStatus::empty());
        self.transport.queue_unset(RECEIVE_QUEUE);
        self.transport.queue_unset(TRANSMIT_QUEUE);
        // SAFETY: the device was just reset.
        drop(unsafe { self.rx.take_all() });
        // SAFETY: as above.
        drop(unsafe { self.tx.take_all() });
    }
}

#[cfg(test)]
mod tests;
