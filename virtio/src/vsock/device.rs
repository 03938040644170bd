//! The device side of vsock: the receive, transmit and event queues and their buffers
//! (DMA hand-over, notification and interrupt policy); the module docs are in vsock.rs.
#![allow(unsafe_code)]

use super::VsockError;
use super::connections::Connections;
use super::packet::HEADER;
use crate::features::{self, Refused};
use crate::queue::{BufferQueue, Direction, Used};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{Ordering, fence};
use core::task::Waker;
use futures_util::task::AtomicWaker;
use virtio_drivers::Hal;
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
pub(super) use crate::features::VIRTIO_F_VERSION_1;
/// Received packets handled per [`VsockDevice::poll`] before it yields to other tasks.
const BUDGET: usize = 64;

/// A queue of this driver: `SIZE` descriptors.
type Queue<H, const SIZE: usize> = BufferQueue<H, SIZE>;

/// Sets up a queue: receive and event queues with interrupts on, the transmit queue
/// (header and payload as two descriptors) with them off.
fn queue<H: Hal, T: Transport, const SIZE: usize>(
    transport: &mut T,
    index: u16,
    direction: Direction,
) -> Result<Queue<H, SIZE>, VsockError> {
    let interrupts = direction == Direction::In;
    Queue::new(transport, index, direction, interrupts).map_err(VsockError::Device)
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
        features::negotiate(&mut transport, VIRTIO_F_VERSION_1)
            .map_err(|Refused { requested }| VsockError::Features { requested })?;
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
        let rx = queue(&mut transport, RECEIVE_QUEUE, Direction::In)?;
        let tx = queue(&mut transport, TRANSMIT_QUEUE, Direction::OutSplit(HEADER))?;
        let events = queue(&mut transport, EVENT_QUEUE, Direction::In)?;
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
                    Used::Untrusted(_) => return self.broken(connections),
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
                    Used::Untrusted(_) => return self.broken(connections),
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
            let receivable = self.rx.can_pop();
            let transmittable = waiting && self.tx.can_pop();
            if !receivable && !transmittable && !self.events.can_pop() {
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
                Used::Untrusted(_) => return false,
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
        // The device must stop using the queues before their memory and buffers go: a
        // reset makes it give up every buffer (spec 2.4), and only then are they taken
        // back.
        self.transport.set_status(DeviceStatus::empty());
        self.transport.queue_unset(RECEIVE_QUEUE);
        self.transport.queue_unset(TRANSMIT_QUEUE);
        self.transport.queue_unset(EVENT_QUEUE);
        // SAFETY: the device was just reset.
        drop(unsafe { self.rx.take_all() });
        // SAFETY: as above.
        drop(unsafe { self.tx.take_all() });
        // SAFETY: as above.
        drop(unsafe { self.events.take_all() });
    }
}
