//! virtio-net (virtio spec 1.2, section 5.1) on virtio-drivers' `VirtQueue`, with our own
//! buffers and our own notification policy.
//!
//! No copies: the netstack's tokens ([`NetRx`], [`NetTx`]) lend the device's own
//! buffers. A received frame is read where the device wrote it, and its buffer goes back
//! to the receive queue when the token drops; a transmit token holds a free transmit
//! buffer, which the frame is written into and posted from. A transmit token exists
//! only while a buffer (and so a descriptor) is free, and a received frame is handed
//! out only with one, for the reply.
//!
//! DMA ownership: while the driver holds a buffer it is a `Box<[u8]>` (in the free list
//! or a token); while the device owns it (posted to a queue and not yet returned in the
//! used ring) it is a `Lent` in the slot of the token it was posted under
//! (`crate::queue`), and nothing reads or writes it; it becomes a `Box` again only
//! through `pop_used` with the same token, or after a reset.
//!
//! Notifications, both ways, are batched (spec 2.7.7 and 2.7.10, with the `flags`
//! fields: `VIRTIO_F_EVENT_IDX` is deliberately not negotiated):
//!
//! * **driver -> device**: `transmit` and the re-posting of receive buffers only add to
//!   the avail rings; [`NetDevice::flush`] (the runner calls it once per poll) notifies
//!   each queue that got buffers, and only if the device has not suppressed
//!   notifications (QEMU does while its transmit handler is scheduled or running, and on
//!   the receive queue while it has buffers). One register write per batch instead of
//!   one per frame: under emulation each is an exit to the VMM that takes its global
//!   lock and wakes its main loop.
//! * **device -> driver**: transmit completions raise no interrupt, except while
//!   `transmit` waits for a free descriptor; receive interrupts are off while the runner
//!   drains the used ring and back on (followed by a last look) when it finds it empty,
//!   as Linux's NAPI does. So a burst of frames costs one interrupt.
//!
//! virtio-drivers' `VirtIONetRaw` notifies on every buffer and, with `EVENT_IDX`, asks
//! for an interrupt on every used buffer (it rewrites `used_event` at each `pop_used`),
//! which is why this driver sets up the queues itself.
#![allow(unsafe_code)]

use crate::features::{self, VIRTIO_F_VERSION_1};
use crate::queue::{BufferQueue, Direction, Used};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering, fence};
use core::task::Waker;
use futures_util::task::AtomicWaker;
use virtio_drivers::Hal;
use virtio_drivers::transport::{DeviceStatus, Transport};

use torito_netstack::{RxToken, TxToken};

/// Descriptors per queue (a power of two; QEMU's default queue size is 256).
const QUEUE: usize = 64;
/// One buffer: the virtio-net header (12 bytes) plus a full Ethernet frame, rounded up.
const BUFFER: usize = 1536 + 64;
/// Queue indices (spec 5.1.2: receiveq1, transmitq1).
const RECEIVE_QUEUE: u16 = 0;
const TRANSMIT_QUEUE: u16 = 1;
/// Feature bits (spec 5.1.3 and 6): the device's MAC address in its configuration space;
/// for a legacy device, header and frame in one descriptor (spec 5.1.6.6, which this
/// driver's buffers are); and the non-legacy interface, which a driver must accept
/// when offered.
const VIRTIO_NET_F_MAC: u64 = 1 << 5;
/// The device's MTU in its configuration space (spec 5.1.3: `mtu`, offset 10): a pod
/// network's tap may carry less than 1500 bytes (QEMU: `host_mtu=`).
const VIRTIO_NET_F_MTU: u64 = 1 << 3;
/// The MTU this driver uses at most: what its receive buffers hold.
const MAX_MTU: usize = 1500;
const VIRTIO_F_ANY_LAYOUT: u64 = 1 << 27;
/// `struct virtio_net_hdr` (spec 5.1.6): 12 bytes with `VIRTIO_F_VERSION_1`; the legacy
/// header without `num_buffers` (no `VIRTIO_NET_F_MRG_RXBUF` either) is 10.
const HEADER: usize = 12;
const HEADER_LEGACY: usize = 10;

/// Why the device could not be set up.
#[derive(Debug)]
pub enum NetError {
    /// The virtio-drivers crate refused the device (queue setup, configuration space).
    Device(virtio_drivers::Error),
    /// The device did not accept the features the driver asked for (FEATURES_OK did not
    /// stick, spec 3.1.1).
    Features {
        /// The features the driver asked for.
        requested: u64,
    },
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NetError::Device(error) => {
                write!(
                    f,
                    "virtio-net setup failed: {error}; check the VMM's virtio-net device options"
                )
            }
            NetError::Features { requested } => write!(
                f,
                "virtio-net setup failed: the device refused features {requested:#x}; \
                 check the VMM's virtio-net device options"
            ),
        }
    }
}

impl core::error::Error for NetError {}

/// Counters of what the device did and what the driver dropped.
#[derive(Debug, Default)]
pub struct NetStats {
    /// Frames received and handed to the stack.
    pub rx_frames: AtomicU64,
    /// Frames queued for transmission.
    pub tx_frames: AtomicU64,
    /// Used-ring entries with a token or length the driver cannot trust (dropped).
    pub rx_bad_used: AtomicU64,
    /// Times a frame could not be sent, or a received one handed out with room for its
    /// reply, for want of a free transmit buffer (backpressure events).
    pub tx_full: AtomicU64,
    /// Frames too large for a transmit buffer (dropped).
    pub tx_too_large: AtomicU64,
    /// Queue notifications written to the device (each a VM exit).
    pub notifications: AtomicU64,
    /// Device resets after a used ring the driver could not trust (each brings the
    /// device back with fresh queues).
    pub resets: AtomicU64,
    /// Resets after which the device did not come back (it is then left alone).
    pub reset_failures: AtomicU64,
}

impl NetStats {
    /// All zero (usable in a `static`).
    pub const fn new() -> Self {
        Self {
            rx_frames: AtomicU64::new(0),
            tx_frames: AtomicU64::new(0),
            rx_bad_used: AtomicU64::new(0),
            tx_full: AtomicU64::new(0),
            tx_too_large: AtomicU64::new(0),
            notifications: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            reset_failures: AtomicU64::new(0),
        }
    }
}

/// A queue of this driver: `QUEUE` descriptors.
type Queue<H> = BufferQueue<H, QUEUE>;

/// A virtio-net device, driven through the netstack's `Driver` contract.
pub struct NetDevice<H: Hal, T: Transport> {
    transport: T,
    rx: Queue<H>,
    tx: Queue<H>,
    /// Free transmit buffers.
    tx_free: Vec<Box<[u8]>>,
    /// Bytes of the virtio-net header in front of every frame.
    header: usize,
    mac: [u8; 6],
    waker: &'static AtomicWaker,
    stats: &'static NetStats,
    mtu: usize,
    /// Run after a reset brought the device back (what the transport alone cannot
    /// restore: MSI-X queue vectors).
    after_reset: Option<Box<dyn FnMut() + Send>>,
    /// A reset failed: the device is left alone (no frames either way).
    dead: bool,
}

fn buffer() -> Box<[u8]> {
    alloc::vec![0u8; BUFFER].into_boxed_slice()
}

impl<H: Hal, T: Transport> NetDevice<H, T> {
    /// Initializes the device on `transport`, posts every receive buffer and enables its
    /// receive interrupts. `waker` is what the kernel's interrupt handler wakes.
    ///
    /// # Errors
    /// `NetError::Device` when the device cannot be initialized, `NetError::Features`
    /// when it refuses the features.
    pub fn new(
        mut transport: T,
        waker: &'static AtomicWaker,
        stats: &'static NetStats,
    ) -> Result<Self, NetError> {
        let (header, mac) = Self::start(&mut transport)?;
        let mtu = Self::offered_mtu(&mut transport);
        let rx = Queue::new(&mut transport, RECEIVE_QUEUE, Direction::In, true)
            .map_err(NetError::Device)?;
        let tx = Queue::new(&mut transport, TRANSMIT_QUEUE, Direction::Out, false)
            .map_err(NetError::Device)?;
        transport.finish_init();
        let mut device = Self {
            transport,
            rx,
            tx,
            tx_free: (0..QUEUE / 2).map(|_| buffer()).collect(),
            header,
            mac,
            waker,
            stats,
            mtu,
            after_reset: None,
            dead: false,
        };
        for _ in 0..QUEUE {
            if device.rx.post(buffer(), BUFFER).is_err() {
                return Err(NetError::Device(virtio_drivers::Error::QueueFull));
            }
        }
        device.flush();
        Ok(device)
    }

    /// Spec 3.1.1 up to the queues (`features::negotiate`), then the MAC address. Gives
    /// the virtio-net header's size and the MAC address.
    fn start(transport: &mut T) -> Result<(usize, [u8; 6]), NetError> {
        let features = features::negotiate(
            transport,
            VIRTIO_NET_F_MAC | VIRTIO_NET_F_MTU | VIRTIO_F_ANY_LAYOUT | VIRTIO_F_VERSION_1,
        )
        .map_err(|refused| NetError::Features {
            requested: refused.requested,
        })?;
        transport.set_guest_page_size(4096);
        let mac = transport
            .read_consistent(|| transport.read_config_space::<[u8; 6]>(0))
            .map_err(NetError::Device)?;
        let header = if features & VIRTIO_F_VERSION_1 != 0 {
            HEADER
        } else {
            HEADER_LEGACY
        };
        Ok((header, mac))
    }

    /// The MTU the device offers with `VIRTIO_NET_F_MTU` (negotiated in `start`), kept
    /// within 68 (the least IPv4 allows) and [`MAX_MTU`]; 1500 without the feature.
    fn offered_mtu(transport: &mut T) -> usize {
        if transport.read_device_features() & VIRTIO_NET_F_MTU == 0 {
            return MAX_MTU;
        }
        match transport.read_consistent(|| transport.read_config_space::<u16>(10)) {
            Ok(mtu) => usize::from(mtu).clamp(68, MAX_MTU),
            Err(_) => MAX_MTU,
        }
    }

    /// Lowers the MTU to `mtu` (the command line's `mtu=`); never raises it.
    pub fn limit_mtu(&mut self, mtu: usize) {
        self.mtu = self.mtu.min(mtu);
    }

    /// Sets what runs after a reset has brought the device back: whatever the caller set
    /// up on the device that a reset clears and the transport does not know about (with
    /// virtio-pci and MSI-X, the queues' vectors: without them no interrupt arrives).
    pub fn set_after_reset(&mut self, hook: Box<dyn FnMut() + Send>) {
        self.after_reset = Some(hook);
    }

    /// Resets the device (spec 2.4: it gives up every buffer) and tells it to forget
    /// both queues.
    fn stop(&mut self) {
        self.transport.set_status(DeviceStatus::empty());
        self.transport.queue_unset(RECEIVE_QUEUE);
        self.transport.queue_unset(TRANSMIT_QUEUE);
    }

    /// Resets the device and brings it back with fresh queues: the answer to a used
    /// ring entry the driver cannot trust. virtio-drivers' queue pops only the entry it
    /// expects, so a token the driver never posted would stay at the head of the ring
    /// and stall the queue for good; a reset (spec 2.4) makes the device give up every
    /// buffer and start over on new rings. The buffers it held are the driver's again:
    /// the receive buffers are posted anew, the transmit buffers (their frames are lost)
    /// go back to the free list. If the device does not come back, it is left alone.
    fn reset(&mut self) {
        self.stats.resets.fetch_add(1, Ordering::Relaxed);
        self.stop();
        // SAFETY: the device was just reset.
        let receive_buffers = unsafe { self.rx.take_all() };
        // SAFETY: as above.
        self.tx_free.extend(unsafe { self.tx.take_all() });
        match self.restart() {
            Ok(()) => {
                for buffer in receive_buffers {
                    // Fresh queue, as many buffers as descriptors at most: cannot fail.
                    let _ = self.rx.post(buffer, BUFFER);
                }
                self.flush();
                if let Some(hook) = &mut self.after_reset {
                    hook();
                }
            }
            Err(_) => {
                self.stop();
                self.stats.reset_failures.fetch_add(1, Ordering::Relaxed);
                self.dead = true;
            }
        }
    }

    /// The set-up of `new` again, on new queues (the old ones are dropped, their
    /// memory freed: the device was reset and no longer uses them).
    fn restart(&mut self) -> Result<(), NetError> {
        let (header, _) = Self::start(&mut self.transport)?;
        let rx = Queue::new(&mut self.transport, RECEIVE_QUEUE, Direction::In, true)
            .map_err(NetError::Device)?;
        let tx = Queue::new(&mut self.transport, TRANSMIT_QUEUE, Direction::Out, false)
            .map_err(NetError::Device)?;
        self.transport.finish_init();
        self.rx = rx;
        self.tx = tx;
        self.header = header;
        Ok(())
    }

    /// The device's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The IP MTU.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Acknowledges the device's interrupt (reads and clears its interrupt status).
    /// The kernel's handler may instead do this through the raw register.
    pub fn ack_interrupt(&mut self) {
        let _ = self.transport.ack_interrupt();
    }

    /// Tells the device about the buffers queued since the last flush (one notification
    /// per queue at most, none when the device suppressed them).
    pub fn flush(&mut self) {
        let notified = u64::from(self.tx.notify(&mut self.transport))
            + u64::from(self.rx.notify(&mut self.transport));
        if notified != 0 {
            self.stats
                .notifications
                .fetch_add(notified, Ordering::Relaxed);
        }
    }

    /// Reclaims completed transmissions into `tx_free`.
    fn reclaim_transmitted(&mut self) {
        while let Some(used) = self.tx.take_used() {
            match used {
                // A device that only reads a buffer has nothing to lie about.
                Used::Buffer(buffer, _) | Used::Lied(buffer) => self.tx_free.push(buffer),
                Used::Untrusted(_) => {
                    self.stats.rx_bad_used.fetch_add(1, Ordering::Relaxed);
                    self.reset();
                    return;
                }
            }
        }
    }

    /// Whether a transmit buffer is free. If not: registers `waker`, makes sure the
    /// device has heard of the queued frames and asks it to interrupt when it is done
    /// with some; then looks once more, since a completion before the request raised
    /// none.
    fn tx_ready(&mut self, waker: &Waker) -> bool {
        self.reclaim_transmitted();
        if self.tx_free.is_empty() && !self.dead {
            self.waker.register(waker);
            self.tx.set_interrupts(true);
            if self.tx.notify(&mut self.transport) {
                self.stats.notifications.fetch_add(1, Ordering::Relaxed);
            }
            fence(Ordering::SeqCst);
            self.reclaim_transmitted();
            if self.tx_free.is_empty() {
                self.stats.tx_full.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        // Room: completions raise no interrupt until the queue fills again.
        self.tx.set_interrupts(false);
        !self.dead
    }

    /// The next frame the device wrote: the buffer and the frame's range in it. `None`
    /// (after registering `waker` and enabling the receive interrupt) if none.
    fn next_frame(&mut self, waker: &Waker) -> Option<(Box<[u8]>, usize, usize)> {
        // Entries with a bad length are skipped; a device that keeps writing them gets
        // a queue's worth per call, then the runner is woken to come back (no spinning
        // here on its behalf).
        for _ in 0..QUEUE {
            let used = match self.rx.take_used() {
                Some(used) => used,
                None => {
                    // Nothing pending: ask for an interrupt, then look once more, since
                    // a frame that arrived before the request raised none.
                    self.waker.register(waker);
                    self.rx.set_interrupts(true);
                    fence(Ordering::SeqCst);
                    self.rx.take_used()?
                }
            };
            // Frames are pending: the runner drains them without interrupts until empty.
            self.rx.set_interrupts(false);
            let buffer = match used {
                Used::Buffer(buffer, written) if written >= self.header => {
                    self.stats.rx_frames.fetch_add(1, Ordering::Relaxed);
                    return Some((buffer, self.header, written));
                }
                // Shorter than the header, or longer than the buffer: dropped, counted.
                Used::Buffer(buffer, _) | Used::Lied(buffer) => buffer,
                Used::Untrusted(_) => {
                    // A device that broke the ring: reset it, then wait for its next
                    // interrupt (the new receive queue starts with interrupts on).
                    self.stats.rx_bad_used.fetch_add(1, Ordering::Relaxed);
                    self.reset();
                    self.waker.register(waker);
                    return None;
                }
            };
            self.stats.rx_bad_used.fetch_add(1, Ordering::Relaxed);
            // Back to the device: a descriptor was just freed, so this cannot fail; if
            // it did, the buffer is dropped (counted).
            if self.rx.post(buffer, BUFFER).is_err() {
                self.stats.rx_bad_used.fetch_add(1, Ordering::Relaxed);
            }
        }
        waker.wake_by_ref();
        None
    }

    /// The next received frame with a transmit token for the reply; `None` (after
    /// registering `waker` for whichever is missing) without a frame or a free transmit
    /// buffer. A frame waiting for transmit room stays in the used ring.
    pub fn receive(&mut self, waker: &Waker) -> Option<(NetRx<'_, H>, NetTx<'_, H>)> {
        // Completions are reclaimed here only when no buffer is free: the per-frame
        // path stays as short as the transmit side allows (`transmit` reclaims).
        if self.dead || (self.tx_free.is_empty() && !self.tx_ready(waker)) {
            return None;
        }
        let (buffer, start, end) = self.next_frame(waker)?;
        let rx = NetRx {
            queue: &mut self.rx,
            buffer,
            start,
            end,
            stats: self.stats,
        };
        // A buffer is free (above), and `next_frame` took none (a reset only adds).
        let tx = NetTx {
            queue: &mut self.tx,
            free: &mut self.tx_free,
            header: self.header,
            stats: self.stats,
        };
        Some((rx, tx))
    }

    /// A token for one frame in a free transmit buffer (the device hears of the frame
    /// at the next [`flush`](Self::flush)); `None` (after registering `waker` for the
    /// next completion) when none is free.
    pub fn transmit(&mut self, waker: &Waker) -> Option<NetTx<'_, H>> {
        if self.dead || !self.tx_ready(waker) {
            return None;
        }
        Some(NetTx {
            queue: &mut self.tx,
            free: &mut self.tx_free,
            header: self.header,
            stats: self.stats,
        })
    }
}

impl<H: Hal, T: Transport> Drop for NetDevice<H, T> {
    fn drop(&mut self) {
        // The device must stop using the queues before their memory and the buffers are
        // freed (the fields drop after this).
        self.stop();
        // SAFETY: the device was just reset.
        drop(unsafe { self.rx.take_all() });
        // SAFETY: as above.
        drop(unsafe { self.tx.take_all() });
    }
}

/// A received frame in the device's receive buffer; dropping it posts the buffer to the
/// receive queue again (the device hears of it at the next flush).
pub struct NetRx<'a, H: Hal> {
    queue: &'a mut Queue<H>,
    buffer: Box<[u8]>,
    /// The frame's range in `buffer` (after the virtio-net header).
    start: usize,
    end: usize,
    stats: &'static NetStats,
}

impl<H: Hal> NetRx<'_, H> {
    /// The frame (Ethernet header first, no FCS).
    pub fn frame(&self) -> &[u8] {
        &self.buffer[self.start..self.end]
    }
}

impl<H: Hal> Drop for NetRx<'_, H> {
    fn drop(&mut self) {
        // Re-post the same buffer: no allocation on the hot path. A descriptor was freed
        // for it, so this cannot fail; if it did, the buffer is dropped and counted.
        let buffer = core::mem::take(&mut self.buffer);
        if self.queue.post(buffer, BUFFER).is_err() {
            self.stats.rx_bad_used.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<H: Hal> RxToken for NetRx<'_, H> {
    fn frame(&self) -> &[u8] {
        NetRx::frame(self)
    }
}

/// Room for one frame: the token exists only while `free` holds a buffer, which
/// `consume` takes. Dropped unused, it takes nothing.
pub struct NetTx<'a, H: Hal> {
    queue: &'a mut Queue<H>,
    free: &'a mut Vec<Box<[u8]>>,
    header: usize,
    stats: &'static NetStats,
}

impl<H: Hal> NetTx<'_, H> {
    /// A free buffer with room for a frame of `len` bytes after a zeroed virtio-net
    /// header (no checksum or segmentation offload); `None` (counted) if too small.
    fn room(&mut self, len: usize) -> Option<Box<[u8]>> {
        let Some(mut buffer) = self.free.pop() else {
            // The token exists only while a buffer is free: a broken invariant, counted.
            self.stats.tx_full.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let header = self.header;
        if header + len > buffer.len() {
            self.stats.tx_too_large.fetch_add(1, Ordering::Relaxed);
            self.free.push(buffer);
            return None;
        }
        buffer[..header].fill(0);
        Some(buffer)
    }

    /// Posts the frame of `len` bytes written into `buffer` (from [`room`](Self::room)).
    fn post(&mut self, buffer: Box<[u8]>, len: usize) {
        match self.queue.post(buffer, self.header + len) {
            Ok(()) => {
                self.stats.tx_frames.fetch_add(1, Ordering::Relaxed);
            }
            Err(buffer) => {
                // More buffers than descriptors cannot happen (QUEUE / 2 buffers); the
                // frame is dropped and counted, the buffer kept.
                self.free.push(buffer);
                self.stats.tx_full.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl<H: Hal> TxToken for NetTx<'_, H> {
    // Generic over `f`, once per smoltcp call site: the work is in `room` and `post`.
    fn consume<R, F>(mut self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let Some(mut buffer) = self.room(len) else {
            // Outside the contract (the stack keeps to the MTU): the frame is written
            // aside and dropped, counted; the buffer stays free.
            return f(&mut alloc::vec![0; len]);
        };
        let header = self.header;
        let result = f(&mut buffer[header..header + len]);
        self.post(buffer, len);
        result
    }
}

impl<H: Hal, T: Transport + Send> torito_netstack::Driver for NetDevice<H, T> {
    type RxToken<'a>
        = NetRx<'a, H>
    where
        Self: 'a;
    type TxToken<'a>
        = NetTx<'a, H>
    where
        Self: 'a;

    fn mac(&self) -> [u8; 6] {
        NetDevice::mac(self)
    }

    fn mtu(&self) -> usize {
        NetDevice::mtu(self)
    }

    fn receive(&mut self, waker: &Waker) -> Option<(NetRx<'_, H>, NetTx<'_, H>)> {
        NetDevice::receive(self, waker)
    }

    fn transmit(&mut self, waker: &Waker) -> Option<NetTx<'_, H>> {
        NetDevice::transmit(self, waker)
    }

    fn flush(&mut self) {
        NetDevice::flush(self)
    }
}

#[cfg(test)]
mod tests;
