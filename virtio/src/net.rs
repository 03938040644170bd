//! virtio-net (virtio spec 1.2, section 5.1) on virtio-drivers' `VirtQueue`, with our own
//! buffers and our own notification policy.
//!
//! DMA ownership: every buffer is a `Box<[u8]>` that lives in a slot of this driver.
//! While the device owns a buffer (posted to a queue and not yet returned in the used
//! ring) the slot records it as `Posted` and nothing reads or writes it; the buffer
//! comes back to the driver only through `pop_used` with the same token.
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

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering, fence};
use core::task::Waker;
use futures_util::task::AtomicWaker;
use virtio_drivers::Hal;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::{DeviceStatus, Transport};

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
const VIRTIO_F_ANY_LAYOUT: u64 = 1 << 27;
const VIRTIO_F_VERSION_1: u64 = 1 << 32;
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
    /// Transmit attempts that found no free descriptor (backpressure events).
    pub tx_full: AtomicU64,
    /// Frames too large for a transmit buffer (dropped).
    pub tx_too_large: AtomicU64,
    /// Queue notifications written to the device (each a VM exit).
    pub notifications: AtomicU64,
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
        }
    }
}

enum Slot {
    /// The device owns the first `.1` bytes of the buffer (posted under its token).
    Posted(Box<[u8]>, usize),
    /// Nothing here (transiently, or after a device error).
    Empty,
}

/// What the used ring gave back.
enum Used {
    /// A buffer the driver posted, and how many bytes the device wrote into it.
    Buffer(Box<[u8]>, usize),
    /// An entry the driver cannot trust (counted; nothing was taken).
    Untrusted,
}

/// One virtqueue with the driver's view of it: which buffers it holds, whether buffers
/// were added since the last notification, whether its interrupts are on.
struct Queue<H: Hal> {
    index: u16,
    /// The device reads this queue's buffers (transmit), rather than writes them.
    out: bool,
    queue: VirtQueue<H, QUEUE>,
    /// Indexed by the token (head descriptor) a buffer was posted under.
    slots: Vec<Slot>,
    /// Buffers were added since the device was last told.
    unnotified: bool,
    /// Used-buffer notifications (interrupts) are requested.
    interrupts: bool,
}

impl<H: Hal> Queue<H> {
    fn new<T: Transport>(
        transport: &mut T,
        index: u16,
        out: bool,
        interrupts: bool,
    ) -> Result<Self, NetError> {
        let mut queue = VirtQueue::new(transport, index, false, false).map_err(NetError::Device)?;
        queue.set_dev_notify(interrupts);
        Ok(Queue {
            index,
            out,
            queue,
            slots: (0..QUEUE).map(|_| Slot::Empty).collect(),
            unnotified: false,
            interrupts,
        })
    }

    fn set_interrupts(&mut self, on: bool) {
        if self.interrupts != on {
            self.queue.set_dev_notify(on);
            self.interrupts = on;
        }
    }

    /// Posts the first `length` bytes of `buffer`, for the device to read (`out`) or to
    /// write. `Err` gives the buffer back (no free descriptor).
    fn post(
        &mut self,
        mut buffer: Box<[u8]>,
        length: usize,
        stats: &NetStats,
    ) -> Result<(), Box<[u8]>> {
        // SAFETY: the buffer moves into `self.slots[token]` as `Posted` right below and is
        // not touched until `take_used` returns it for that same token; on error the
        // queue did not keep it.
        let added = unsafe {
            if self.out {
                self.queue.add(&[&buffer[..length]], &mut [])
            } else {
                self.queue.add(&[], &mut [&mut buffer[..length]])
            }
        };
        let Ok(token) = added else {
            return Err(buffer);
        };
        self.unnotified = true;
        match self.slots.get_mut(usize::from(token)) {
            Some(slot) => *slot = Slot::Posted(buffer, length),
            // The crate handed out a token outside the queue: a broken invariant there.
            // The device owns the buffer now, so it is leaked, never freed under it.
            None => {
                stats.rx_bad_used.fetch_add(1, Ordering::Relaxed);
                Box::leak(buffer);
            }
        }
        Ok(())
    }

    /// The next entry of the used ring, if any.
    fn take_used(&mut self, stats: &NetStats) -> Option<Used> {
        let token = self.queue.peek_used()?;
        let Some(Slot::Posted(buffer, posted)) = self
            .slots
            .get_mut(usize::from(token))
            .map(|slot| core::mem::replace(slot, Slot::Empty))
        else {
            // A token we never posted: the device is misbehaving; stop trusting it.
            stats.rx_bad_used.fetch_add(1, Ordering::Relaxed);
            return Some(Used::Untrusted);
        };
        let mut buffer = buffer;
        // SAFETY: `buffer` is the one posted under `token` (its slot says so), with the
        // same direction and length.
        let used = unsafe {
            if self.out {
                self.queue.pop_used(token, &[&buffer[..posted]], &mut [])
            } else {
                self.queue
                    .pop_used(token, &[], &mut [&mut buffer[..posted]])
            }
        };
        Some(match used {
            Ok(written) => Used::Buffer(buffer, written as usize),
            Err(_) => {
                stats.rx_bad_used.fetch_add(1, Ordering::Relaxed);
                self.slots[usize::from(token)] = Slot::Posted(buffer, posted);
                Used::Untrusted
            }
        })
    }

    /// Notifies the device if buffers were added since the last time and it has not
    /// suppressed notifications.
    fn notify<T: Transport>(&mut self, transport: &mut T, stats: &NetStats) {
        if !self.unnotified {
            return;
        }
        self.unnotified = false;
        // The avail index was published before; the device's flag must be read after it
        // (a store-load order the queue's own release/acquire does not give). A device
        // that set the flag re-checks the avail ring after clearing it.
        fence(Ordering::SeqCst);
        if self.queue.should_notify() {
            stats.notifications.fetch_add(1, Ordering::Relaxed);
            transport.notify(self.index);
        }
    }
}

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
        // Spec 3.1.1: reset, ACKNOWLEDGE | DRIVER, features, FEATURES_OK (checked), queues,
        // DRIVER_OK. A legacy device (no VERSION_1) skips FEATURES_OK (spec 3.1.2).
        let base = DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER;
        transport.set_status(DeviceStatus::empty());
        transport.set_status(base);
        let features = transport.read_device_features()
            & (VIRTIO_NET_F_MAC | VIRTIO_F_ANY_LAYOUT | VIRTIO_F_VERSION_1);
        transport.write_driver_features(features);
        if features & VIRTIO_F_VERSION_1 != 0 {
            transport.set_status(base | DeviceStatus::FEATURES_OK);
            if !transport.get_status().contains(DeviceStatus::FEATURES_OK) {
                return Err(NetError::Features {
                    requested: features,
                });
            }
        }
        transport.set_guest_page_size(4096);
        let mac = transport
            .read_consistent(|| transport.read_config_space::<[u8; 6]>(0))
            .map_err(NetError::Device)?;
        let rx = Queue::new(&mut transport, RECEIVE_QUEUE, false, true)?;
        let tx = Queue::new(&mut transport, TRANSMIT_QUEUE, true, false)?;
        transport.finish_init();
        let mut device = Self {
            transport,
            rx,
            tx,
            tx_free: (0..QUEUE / 2).map(|_| buffer()).collect(),
            header: if features & VIRTIO_F_VERSION_1 != 0 {
                HEADER
            } else {
                HEADER_LEGACY
            },
            mac,
            waker,
            stats,
            mtu: 1500,
        };
        for _ in 0..QUEUE {
            if device.rx.post(buffer(), BUFFER, stats).is_err() {
                return Err(NetError::Device(virtio_drivers::Error::QueueFull));
            }
        }
        device.flush();
        Ok(device)
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
        self.tx.notify(&mut self.transport, self.stats);
        self.rx.notify(&mut self.transport, self.stats);
    }

    /// Reclaims completed transmissions into `tx_free`.
    fn reclaim_transmitted(&mut self) {
        while let Some(used) = self.tx.take_used(self.stats) {
            match used {
                Used::Buffer(buffer, _) => self.tx_free.push(buffer),
                Used::Untrusted => return,
            }
        }
    }

    /// Hands the next received frame to `f`; `false` (after registering `waker` and
    /// enabling the receive interrupt) if none.
    pub fn receive(&mut self, waker: &Waker, f: &mut dyn FnMut(&[u8])) -> bool {
        let used = match self.rx.take_used(self.stats) {
            Some(used) => used,
            None => {
                // Nothing pending: ask for an interrupt, then look once more, since a
                // frame that arrived before the request raised none.
                self.waker.register(waker);
                self.rx.set_interrupts(true);
                fence(Ordering::SeqCst);
                match self.rx.take_used(self.stats) {
                    Some(used) => used,
                    None => return false,
                }
            }
        };
        let Used::Buffer(buffer, written) = used else {
            // A device that broke the ring: wait for its next interrupt rather than spin.
            self.waker.register(waker);
            self.rx.set_interrupts(true);
            return false;
        };
        // Frames are pending: the runner drains them without interrupts until empty.
        self.rx.set_interrupts(false);
        match written.checked_sub(self.header) {
            Some(length) if written <= buffer.len() => {
                self.stats.rx_frames.fetch_add(1, Ordering::Relaxed);
                f(&buffer[self.header..self.header + length]);
            }
            _ => {
                self.stats.rx_bad_used.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Re-post the same buffer: no allocation on the hot path. A descriptor was just
        // freed, so this cannot fail; if it did, the buffer is dropped and counted.
        if self.rx.post(buffer, BUFFER, self.stats).is_err() {
            self.stats.rx_bad_used.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Queues one frame of `len` bytes that `f` writes (the device hears of it at the
    /// next [`flush`](Self::flush)); `false` (after registering `waker` for the next
    /// completion) when no descriptor or buffer is free.
    pub fn transmit(&mut self, waker: &Waker, len: usize, f: &mut dyn FnMut(&mut [u8])) -> bool {
        self.reclaim_transmitted();
        if self.tx_free.is_empty() {
            // Full: the device must hear of what is queued, and interrupt when it is done
            // with some; look once more, since a completion before the request raised none.
            self.waker.register(waker);
            self.tx.set_interrupts(true);
            self.tx.notify(&mut self.transport, self.stats);
            fence(Ordering::SeqCst);
            self.reclaim_transmitted();
            if self.tx_free.is_empty() {
                self.stats.tx_full.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        }
        self.tx.set_interrupts(false);
        let Some(mut buffer) = self.tx_free.pop() else {
            return false;
        };
        let header = self.header;
        if header + len > buffer.len() {
            self.stats.tx_too_large.fetch_add(1, Ordering::Relaxed);
            self.tx_free.push(buffer);
            return true; // consumed (dropped): retrying cannot help
        }
        // A zero header: no checksum offload, no segmentation offload.
        buffer[..header].fill(0);
        f(&mut buffer[header..header + len]);
        match self.tx.post(buffer, header + len, self.stats) {
            Ok(()) => {
                self.stats.tx_frames.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(buffer) => {
                // More buffers than descriptors cannot happen (QUEUE / 2 buffers); keep
                // the frame's buffer and report backpressure rather than lose it silently.
                self.tx_free.push(buffer);
                self.waker.register(waker);
                self.tx.set_interrupts(true);
                self.stats.tx_full.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

impl<H: Hal, T: Transport> Drop for NetDevice<H, T> {
    fn drop(&mut self) {
        // The device must stop using the queues before their memory and the buffers are
        // freed (the fields drop after this).
        self.transport.queue_unset(RECEIVE_QUEUE);
        self.transport.queue_unset(TRANSMIT_QUEUE);
    }
}

impl<H: Hal, T: Transport + Send> torito_netstack::Driver for NetDevice<H, T> {
    fn mac(&self) -> [u8; 6] {
        NetDevice::mac(self)
    }

    fn mtu(&self) -> usize {
        NetDevice::mtu(self)
    }

    fn receive(&mut self, waker: &Waker, f: &mut dyn FnMut(&[u8])) -> bool {
        NetDevice::receive(self, waker, f)
    }

    fn transmit(&mut self, waker: &Waker, len: usize, f: &mut dyn FnMut(&mut [u8])) -> bool {
        NetDevice::transmit(self, waker, len, f)
    }

    fn flush(&mut self) {
        NetDevice::flush(self)
    }
}

#[cfg(test)]
mod tests;
