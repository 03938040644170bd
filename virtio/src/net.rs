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
/// The device's MTU in its configuration space (spec 5.1.3: `mtu`, offset 10): a pod
/// network's tap may carry less than 1500 bytes (QEMU: `host_mtu=`).
const VIRTIO_NET_F_MTU: u64 = 1 << 3;
/// The MTU this driver uses at most: what its receive buffers hold.
const MAX_MTU: usize = 1500;
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
        let rx = Queue::new(&mut transport, RECEIVE_QUEUE, false, true)?;
        let tx = Queue::new(&mut transport, TRANSMIT_QUEUE, true, false)?;
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
            if device.rx.post(buffer(), BUFFER, stats).is_err() {
                return Err(NetError::Device(virtio_drivers::Error::QueueFull));
            }
        }
        device.flush();
        Ok(device)
    }

    /// Spec 3.1.1 up to the queues: reset, ACKNOWLEDGE | DRIVER, features, FEATURES_OK
    /// (checked; a legacy device without VERSION_1 skips it, spec 3.1.2). Gives the
    /// virtio-net header's size and the MAC address.
    fn start(transport: &mut T) -> Result<(usize, [u8; 6]), NetError> {
        let base = DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER;
        transport.set_status(DeviceStatus::empty());
        transport.set_status(base);
        let features = transport.read_device_features()
            & (VIRTIO_NET_F_MAC | VIRTIO_NET_F_MTU | VIRTIO_F_ANY_LAYOUT | VIRTIO_F_VERSION_1);
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

    /// Resets the device and brings it back with fresh queues: the answer to a used
    /// ring entry the driver cannot trust. virtio-drivers' queue pops only the entry it
    /// expects, so a token the driver never posted would stay at the head of the ring
    /// and stall the queue for good; a reset (spec 2.4) makes the device give up every
    /// buffer and start over on new rings. The buffers it held are the driver's again:
    /// the receive buffers are posted anew, the transmit buffers (their frames are lost)
    /// go back to the free list. If the device does not come back, it is left alone.
    fn reset(&mut self) {
        self.stats.resets.fetch_add(1, Ordering::Relaxed);
        self.transport.set_status(DeviceStatus::empty());
        self.transport.queue_unset(RECEIVE_QUEUE);
        self.transport.queue_unset(TRANSMIT_QUEUE);
        let mut receive_buffers = Vec::with_capacity(QUEUE);
        for slot in &mut self.rx.slots {
            if let Slot::Posted(buffer, _) = core::mem::replace(slot, Slot::Empty) {
                receive_buffers.push(buffer);
            }
        }
        for slot in &mut self.tx.slots {
            if let Slot::Posted(buffer, _) = core::mem::replace(slot, Slot::Empty) {
                self.tx_free.push(buffer);
            }
        }
        match self.restart() {
            Ok(()) => {
                for buffer in receive_buffers {
                    // Fresh queue, as many buffers as descriptors at most: cannot fail.
                    let _ = self.rx.post(buffer, BUFFER, self.stats);
                }
                self.flush();
                if let Some(hook) = &mut self.after_reset {
                    hook();
                }
            }
            Err(_) => {
                self.transport.set_status(DeviceStatus::empty());
                self.transport.queue_unset(RECEIVE_QUEUE);
                self.transport.queue_unset(TRANSMIT_QUEUE);
                self.stats.reset_failures.fetch_add(1, Ordering::Relaxed);
                self.dead = true;
            }
        }
    }

    /// The set-up of `new` again, on new queues (the old ones are dropped, their
    /// memory freed: the device was reset and no longer uses them).
    fn restart(&mut self) -> Result<(), NetError> {
        let (header, _) = Self::start(&mut self.transport)?;
        let rx = Queue::new(&mut self.transport, RECEIVE_QUEUE, false, true)?;
        let tx = Queue::new(&mut self.transport, TRANSMIT_QUEUE, true, false)?;
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
        self.tx.notify(&mut self.transport, self.stats);
        self.rx.notify(&mut self.transport, self.stats);
    }

    /// Reclaims completed transmissions into `tx_free`.
    fn reclaim_transmitted(&mut self) {
        while let Some(used) = self.tx.take_used(self.stats) {
            match used {
                Used::Buffer(buffer, _) => self.tx_free.push(buffer),
                Used::Untrusted => {
                    self.reset();
                    return;
                }
            }
        }
    }

    /// Hands the next received frame to `f`; `false` (after registering `waker` and
    /// enabling the receive interrupt) if none.
    pub fn receive(&mut self, waker: &Waker, f: &mut dyn FnMut(&[u8])) -> bool {
        if self.dead {
            return false;
        }
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
            // A device that broke the ring: reset it, then wait for its next interrupt
            // (the new receive queue starts with interrupts on).
            self.reset();
            self.waker.register(waker);
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
        if self.dead {
            return false;
        }
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
