//! The device side of vsock: the receive, transmit and event queues and their buffers
//! (DMA hand-over, notification and interrupt policy); the module docs are in vsock.rs.
#![allow(unsafe_code)]

use super::VsockError;
use super::connections::Connections;
use super::packet::HEADER;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{Ordering, fence};
use core::task::Waker;
use futures_util::task::AtomicWaker;
use virtio_drivers::Hal;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::{DeviceStatus, Transport};

/// Queue indices (spec 5.10.2).
const RECEIVE_QUEUE: u16 = 0;
const TRANSMIT_QUEUE: u16 = 1;
const EVENT_QUEUE: u16 = 2;
/// Descriptors per data queue; a transmitted packet takes two (header, payload).
pub(super) const QUEUE: usize = 64;
const EVENT_SLOTS: usize = 4;
/// One receive or transmit buffer: a header and 4 KiB of payload (Linux's size, which
/// the backends are tuned for).
pub const BUFFER: usize = HEADER + 4096;
/// `struct virtio_vsock_event` is one `le32` (spec 5.10.6.7).
const EVENT: usize = 4;
pub(super) const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// Received packets handled per [`VsockDevice::poll`] before it yields to other tasks.
const BUDGET: usize = 64;

/// One virtqueue and the buffers it holds.
struct Queue<H: Hal, const SIZE: usize> {
    index: u16,
    /// The device reads (transmit) rather than writes these buffers.
    out: bool,
    queue: VirtQueue<H, SIZE>,
    /// By token: the buffer and how many of its bytes were posted.
    slots: Vec<Option<(Box<[u8]>, usize)>>,
    unnotified: bool,
    interrupts: bool,
}

/// A used entry.
enum Used {
    /// A buffer we posted and the bytes the device wrote.
    Buffer(Box<[u8]>, usize),
    /// A buffer we posted, back with a length past it: its bytes are not used.
    Lied(Box<[u8]>),
    /// A token we did not post, or a chain that did not match: nothing came back.
    Untrusted,
}

impl<H: Hal, const SIZE: usize> Queue<H, SIZE> {
    fn new<T: Transport>(transport: &mut T, index: u16, out: bool) -> Result<Self, VsockError> {
        let mut queue =
            VirtQueue::new(transport, index, false, false).map_err(VsockError::Device)?;
        queue.set_dev_notify(!out);
        Ok(Self {
            index,
            out,
            queue,
            slots: (0..SIZE).map(|_| None).collect(),
            unnotified: false,
            interrupts: !out,
        })
    }

    fn set_interrupts(&mut self, on: bool) {
        if self.interrupts != on {
            self.queue.set_dev_notify(on);
            self.interrupts = on;
        }
    }

    /// Posts the first `length` bytes of `buffer`; a transmitted packet goes as header
    /// and payload in two descriptors, the layout every backend accepts. `Err` gives
    /// the buffer back (no free descriptor).
    fn post(&mut self, mut buffer: Box<[u8]>, length: usize) -> Result<(), Box<[u8]>> {
        // SAFETY: the buffer moves into `self.slots[token]` right below and is not
        // touched until `take_used` returns it for that token; on error the queue kept
        // nothing. `length <= buffer.len()` (callers post at most the whole buffer).
        let added = unsafe {
            if !self.out {
                self.queue.add(&[], &mut [&mut buffer[..length]])
            } else if length > HEADER {
                self.queue
                    .add(&[&buffer[..HEADER], &buffer[HEADER..length]], &mut [])
            } else {
                self.queue.add(&[&buffer[..length]], &mut [])
            }
        };
        let Ok(token) = added else {
            return Err(buffer);
        };
        self.unnotified = true;
        match self.slots.get_mut(usize::from(token)) {
            Some(slot) => *slot = Some((buffer, length)),
            // A token outside the queue from the crate itself: the device owns the
            // buffer now, so it is leaked rather than freed under it.
            None => {
                Box::leak(buffer);
            }
        }
        Ok(())
    }

    /// The next used entry, if any.
    fn take_used(&mut self) -> Option<Used> {
        let token = self.queue.peek_used()?;
        let Some((mut buffer, posted)) = self
            .slots
            .get_mut(usize::from(token))
            .and_then(Option::take)
        else {
            return Some(Used::Untrusted);
        };
        // SAFETY: `buffer` is the one posted under `token` (its slot says so), passed
        // with the same descriptors as in `post`.
        let used = unsafe {
            if !self.out {
                self.queue
                    .pop_used(token, &[], &mut [&mut buffer[..posted]])
            } else if posted > HEADER {
                self.queue.pop_used(
                    token,
                    &[&buffer[..HEADER], &buffer[HEADER..posted]],
                    &mut [],
                )
            } else {
                self.queue.pop_used(token, &[&buffer[..posted]], &mut [])
            }
        };
        Some(match used {
            Ok(written) if (written as usize) <= posted => Used::Buffer(buffer, written as usize),
            // Popped, so the buffer is ours again, but its length is a lie.
            Ok(_) => Used::Lied(buffer),
            Err(_) => {
                // The chain did not match: keep the buffer with the device.
                self.slots[usize::from(token)] = Some((buffer, posted));
                Used::Untrusted
            }
        })
    }

    fn notify<T: Transport>(&mut self, transport: &mut T) {
        if !self.unnotified {
            return;
        }
        self.unnotified = false;
        // The avail index is published; the device's flag is read after it.
        fence(Ordering::SeqCst);
        if self.queue.should_notify() {
            transport.notify(self.index);
        }
    }
}

/// What [`VsockDevice::poll`] left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polled {
    /// Everything handled; the waker is registered and interrupts are on.
    Idle,
    /// The budget ran out with packets still waiting: poll again after other tasks ran.
    Busy,
    /// The device returned a used entry it cannot have (a token never posted, a chain
    /// that does not match): it is not used again, and every connection was reset.
    Broken,
}

/// A virtio-vsock device.
pub struct VsockDevice<H: Hal, T: Transport> {
    transport: T,
    rx: Queue<H, QUEUE>,
    tx: Queue<H, QUEUE>,
    events: Queue<H, EVENT_SLOTS>,
    tx_free: Vec<Box<[u8]>>,
    cid: u64,
    waker: &'static AtomicWaker,
}

fn buffer(size: usize) -> Box<[u8]> {
    alloc::vec![0u8; size].into_boxed_slice()
}

impl<H: Hal, T: Transport> VsockDevice<H, T> {
    /// Initializes the device (spec 3.1.1), reads the guest's CID and posts the receive
    /// and event buffers; `waker` is what the kernel's interrupt handler wakes.
    ///
    /// # Errors
    /// [`VsockError::Device`] when a queue cannot be set up, [`VsockError::Features`]
    /// when the device refuses the features.
    pub fn new(mut transport: T, waker: &'static AtomicWaker) -> Result<Self, VsockError> {
        let base = DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER;
        transport.set_status(DeviceStatus::empty());
        transport.set_status(base);
        let features = transport.read_device_features() & VIRTIO_F_VERSION_1;
        transport.write_driver_features(features);
        if features != 0 {
            transport.set_status(base | DeviceStatus::FEATURES_OK);
            if !transport.get_status().contains(DeviceStatus::FEATURES_OK) {
                return Err(VsockError::Features {
                    requested: features,
                });
            }
        }
        transport.set_guest_page_size(4096);
        // guest_cid is an le64; read as two halves (spec 2.4.1: wider reads need not be
        // atomic), consistently across a configuration change.
        let cid = transport
            .read_consistent(|| {
                let low = transport.read_config_space::<u32>(0)?;
                let high = transport.read_config_space::<u32>(4)?;
                Ok(u64::from(low) | u64::from(high) << 32)
            })
            .map_err(VsockError::Device)?;
        let rx = Queue::new(&mut transport, RECEIVE_QUEUE, false)?;
        let tx = Queue::new(&mut transport, TRANSMIT_QUEUE, true)?;
        let events = Queue::new(&mut transport, EVENT_QUEUE, false)?;
        transport.finish_init();
        let mut device = Self {
            transport,
            rx,
            tx,
            events,
            tx_free: (0..QUEUE / 2).map(|_| buffer(BUFFER)).collect(),
            cid,
            waker,
        };
        for _ in 0..QUEUE {
            device
                .rx
                .post(buffer(BUFFER), BUFFER)
                .map_err(|_| VsockError::Device(virtio_drivers::Error::QueueFull))?;
        }
        for _ in 0..EVENT_SLOTS {
            device
                .events
                .post(buffer(EVENT), EVENT)
                .map_err(|_| VsockError::Device(virtio_drivers::Error::QueueFull))?;
        }
        device.rx.notify(&mut device.transport);
        device.events.notify(&mut device.transport);
        Ok(device)
    }

    /// The guest's CID, from the device's configuration.
    pub fn cid(&self) -> u64 {
        self.cid
    }

    /// Moves packets both ways between the device and `connections`: hands received
    /// packets in (re-posting each buffer), sends what `connections` has to send while
    /// transmit buffers are free, notifies the device once per queue. `Idle` means it
    /// then registered `waker` for the device's interrupt and found nothing more.
    pub fn poll(&mut self, connections: &mut Connections, waker: &Waker) -> Polled {
        let mut budget = BUDGET;
        loop {
            self.rx.set_interrupts(false);
            while budget > 0 {
                let Some(used) = self.rx.take_used() else {
                    break;
                };
                budget -= 1;
                let buffer = match used {
                    Used::Buffer(buffer, written) => {
                        if let Err(error) = connections.receive(&buffer[..written]) {
                            log::debug!("vsock: dropped a malformed packet: {}", error);
                        }
                        buffer
                    }
                    Used::Lied(buffer) => {
                        connections.count_bad_used();
                        buffer
                    }
                    Used::Untrusted => return self.broken(connections),
                };
                // Re-post the same buffer: a descriptor was just freed, so this cannot
                // fail; if it did, the buffer is dropped and counted.
                if self.rx.post(buffer, BUFFER).is_err() {
                    connections.count_bad_used();
                }
            }
            while let Some(used) = self.events.take_used() {
                match used {
                    Used::Buffer(buffer, _) | Used::Lied(buffer) => {
                        // The only event defined is TRANSPORT_RESET (spec 5.10.6.7).
                        log::warn!("vsock: the device reset the transport; connections end");
                        connections.transport_reset();
                        if self.events.post(buffer, EVENT).is_err() {
                            connections.count_bad_used();
                        }
                    }
                    Used::Untrusted => return self.broken(connections),
                }
            }
            if !self.transmit(connections) {
                return self.broken(connections);
            }
            self.rx.notify(&mut self.transport);
            self.events.notify(&mut self.transport);
            if budget == 0 {
                return Polled::Busy;
            }
            // Sleep: interrupts on, then look once more (a packet that arrived before
            // they were on raised none).
            self.waker.register(waker);
            self.rx.set_interrupts(true);
            let waiting = connections.wants_transmit() && self.tx_free.is_empty();
            self.tx.set_interrupts(waiting);
            fence(Ordering::SeqCst);
            let receivable = self.rx.queue.can_pop();
            let transmittable = waiting && self.tx.queue.can_pop();
            if !receivable && !transmittable && !self.events.queue.can_pop() {
                return Polled::Idle;
            }
        }
    }

    /// A device that broke its ring: stop trusting it (peeking again would return the
    /// same entry for ever).
    fn broken(&mut self, connections: &mut Connections) -> Polled {
        connections.count_bad_used();
        connections.transport_reset();
        Polled::Broken
    }

    /// Reclaims sent buffers and fills free ones; `false` when the device broke the
    /// transmit ring.
    fn transmit(&mut self, connections: &mut Connections) -> bool {
        while let Some(used) = self.tx.take_used() {
            match used {
                Used::Buffer(buffer, _) => self.tx_free.push(buffer),
                Used::Lied(buffer) => {
                    connections.count_bad_used();
                    self.tx_free.push(buffer);
                }
                Used::Untrusted => return false,
            }
        }
        while connections.wants_transmit() {
            let Some(mut buffer) = self.tx_free.pop() else {
                break;
            };
            let Some(length) = connections.transmit(&mut buffer) else {
                self.tx_free.push(buffer);
                break;
            };
            if let Err(buffer) = self.tx.post(buffer, length) {
                // More buffers than descriptor pairs cannot happen (QUEUE / 2 buffers).
                self.tx_free.push(buffer);
                connections.count_bad_used();
                break;
            }
        }
        self.tx.notify(&mut self.transport);
        true
    }
}

impl<H: Hal, T: Transport> Drop for VsockDevice<H, T> {
    fn drop(&mut self) {
        // The device must stop using the queues before their memory and buffers go.
        self.transport.queue_unset(RECEIVE_QUEUE);
        self.transport.queue_unset(TRANSMIT_QUEUE);
        self.transport.queue_unset(EVENT_QUEUE);
    }
}
