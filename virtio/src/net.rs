//! virtio-net (virtio spec 1.2, section 5.1) on `VirtIONetRaw`, with our own buffers.
//!
//! DMA ownership: every buffer is a `Box<[u8]>` that lives in a slot of this driver.
//! While the device owns a buffer (posted to a queue and not yet returned in the used
//! ring) the slot records it as `Posted` and nothing reads or writes it; the buffer
//! comes back to the driver only through `pop_used` with the same token.
#![allow(unsafe_code)]

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use core::task::Waker;
use futures_util::task::AtomicWaker;
use virtio_drivers::Hal;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::Transport;

/// Descriptors per queue (a power of two; QEMU's default queue size is 256).
const QUEUE: usize = 64;
/// One buffer: the virtio-net header (12 bytes) plus a full Ethernet frame, rounded up.
const BUFFER: usize = 1536 + 64;

/// Why the device could not be set up.
#[derive(Debug)]
pub enum NetError {
    /// The virtio-drivers crate refused the device (feature negotiation, queue setup).
    Device(virtio_drivers::Error),
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
        }
    }
}

enum Slot {
    /// The device owns the first `.1` bytes of the buffer (posted under its token).
    Posted(Box<[u8]>, usize),
    /// Nothing here (transiently, or after a device error).
    Empty,
}

/// A virtio-net device, driven through the netstack's `Driver` contract.
pub struct NetDevice<H: Hal, T: Transport> {
    raw: VirtIONetRaw<H, T, QUEUE>,
    /// Receive slots, indexed by the token (head descriptor) they were posted under.
    rx: Vec<Slot>,
    /// Transmit slots, indexed by token.
    tx: Vec<Slot>,
    /// Free transmit buffers.
    tx_free: Vec<Box<[u8]>>,
    waker: &'static AtomicWaker,
    stats: &'static NetStats,
    mtu: usize,
}

fn buffer() -> Box<[u8]> {
    alloc::vec![0u8; BUFFER].into_boxed_slice()
}

impl<H: Hal, T: Transport> NetDevice<H, T> {
    /// Initializes the device on `transport`, posts every receive buffer and enables its
    /// interrupts. `waker` is what the kernel's interrupt handler wakes.
    ///
    /// # Errors
    /// `NetError::Device` when the device cannot be initialized.
    pub fn new(
        transport: T,
        waker: &'static AtomicWaker,
        stats: &'static NetStats,
    ) -> Result<Self, NetError> {
        let raw = VirtIONetRaw::<H, T, QUEUE>::new(transport).map_err(NetError::Device)?;
        let mut device = Self {
            raw,
            rx: (0..QUEUE).map(|_| Slot::Empty).collect(),
            tx: (0..QUEUE).map(|_| Slot::Empty).collect(),
            tx_free: (0..QUEUE / 2).map(|_| buffer()).collect(),
            waker,
            stats,
            mtu: 1500,
        };
        for _ in 0..QUEUE {
            device.post_receive(buffer())?;
        }
        device.raw.enable_interrupts();
        Ok(device)
    }

    /// The device's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.raw.mac_address()
    }

    /// The IP MTU.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Acknowledges the device's interrupt (reads and clears its interrupt status).
    /// The kernel's handler may instead do this through the raw register.
    pub fn ack_interrupt(&mut self) {
        let _ = self.raw.ack_interrupt();
    }

    fn post_receive(&mut self, mut buffer: Box<[u8]>) -> Result<(), NetError> {
        // SAFETY: the buffer moves into `self.rx[token]` as `Posted` right below and is not
        // touched until `receive_complete` returns it for that same token.
        let token = unsafe { self.raw.receive_begin(&mut buffer) }.map_err(NetError::Device)?;
        match self.rx.get_mut(usize::from(token)) {
            Some(slot) => *slot = Slot::Posted(buffer, BUFFER),
            None => {
                // The crate handed out a token outside the queue: a broken invariant there.
                self.stats.rx_bad_used.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Reclaims completed transmissions into `tx_free`.
    fn reclaim_transmitted(&mut self) {
        while let Some(token) = self.raw.poll_transmit() {
            let Some(Slot::Posted(buffer, posted)) = self
                .tx
                .get_mut(usize::from(token))
                .map(|slot| core::mem::replace(slot, Slot::Empty))
            else {
                // A token we never posted: the device is misbehaving; stop trusting it.
                self.stats.rx_bad_used.fetch_add(1, Ordering::Relaxed);
                return;
            };
            // SAFETY: `buffer` is the one posted under `token` (its slot says so).
            match unsafe { self.raw.transmit_complete(token, &buffer[..posted]) } {
                Ok(_) => self.tx_free.push(buffer),
                Err(_) => {
                    self.stats.rx_bad_used.fetch_add(1, Ordering::Relaxed);
                    self.tx[usize::from(token)] = Slot::Posted(buffer, posted);
                    return;
                }
            }
        }
    }

    /// Hands the next received frame to `f`; `false` (after registering `waker`) if none.
    pub fn receive(&mut self, waker: &Waker, f: &mut dyn FnMut(&[u8])) -> bool {
        self.waker.register(waker);
        let Some(token) = self.raw.poll_receive() else {
            return false;
        };
        let Some(slot) = self.rx.get_mut(usize::from(token)) else {
            self.stats.rx_bad_used.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let Slot::Posted(mut buffer, _) = core::mem::replace(slot, Slot::Empty) else {
            self.stats.rx_bad_used.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        // SAFETY: `buffer` is the one posted under `token` (its slot says so).
        let result = unsafe { self.raw.receive_complete(token, &mut buffer) };
        match result {
            Ok((header, length))
                if header
                    .checked_add(length)
                    .is_some_and(|end| end <= buffer.len()) =>
            {
                self.stats.rx_frames.fetch_add(1, Ordering::Relaxed);
                f(&buffer[header..header + length]);
            }
            _ => {
                self.stats.rx_bad_used.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Re-post the same buffer: no allocation on the hot path.
        if self.post_receive(buffer).is_err() {
            self.stats.rx_bad_used.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Queues one frame of `len` bytes that `f` writes; `false` (after registering
    /// `waker` for the next completion) when no descriptor or buffer is free.
    pub fn transmit(&mut self, waker: &Waker, len: usize, f: &mut dyn FnMut(&mut [u8])) -> bool {
        self.waker.register(waker);
        self.reclaim_transmitted();
        if self.tx_free.is_empty() || !self.raw.can_send() {
            self.stats.tx_full.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let Some(mut buffer) = self.tx_free.pop() else {
            return false;
        };
        let Ok(header) = self.raw.fill_buffer_header(&mut buffer) else {
            self.tx_free.push(buffer);
            return false;
        };
        if header + len > buffer.len() {
            self.stats.tx_too_large.fetch_add(1, Ordering::Relaxed);
            self.tx_free.push(buffer);
            return true; // consumed (dropped): retrying cannot help
        }
        f(&mut buffer[header..header + len]);
        // SAFETY: the buffer moves into `self.tx[token]` as `Posted` right below and is
        // not touched until `transmit_complete` returns it for that token.
        match unsafe { self.raw.transmit_begin(&buffer[..header + len]) } {
            Ok(token) => {
                self.stats.tx_frames.fetch_add(1, Ordering::Relaxed);
                if let Some(slot) = self.tx.get_mut(usize::from(token)) {
                    *slot = Slot::Posted(buffer, header + len);
                }
                true
            }
            Err(_) => {
                self.tx_free.push(buffer);
                self.stats.tx_full.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
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
}
