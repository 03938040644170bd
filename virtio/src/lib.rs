//! Torito's virtio devices, over the virtio-drivers crate, generic over its `Hal` and
//! `Transport` so the same code serves virtio-mmio (microvm, Firecracker) and virtio-pci
//! (q35, pc, Cloud Hypervisor).
//!
//! Promises of [`NetDevice`]:
//!
//! * interrupt-driven: the kernel's interrupt handler acknowledges the device and wakes
//!   the [`futures_util::task::AtomicWaker`] given at construction; nothing else runs in
//!   interrupt context;
//! * transmit never busy-waits: with no free descriptor, `transmit` registers the waker
//!   and says "not now" (backpressure), and the next completion interrupt wakes it;
//! * one device notification per batch: frames and re-posted receive buffers reach the
//!   device at [`NetDevice::flush`] (once per runner poll), and a burst of received
//!   frames raises one interrupt (it stays off while the runner drains the ring);
//! * receive buffers are allocated once, at construction, and re-posted after each
//!   frame: no allocation on the hot path;
//! * device memory is untrusted: a used-ring length larger than the buffer is dropped
//!   and counted; a used-ring token the driver never posted (outside the queue, or for
//!   a buffer the device does not hold) is counted and the device is reset and brought
//!   back on fresh queues (`NetStats::resets`), so one bad entry never stalls a queue.
//!
//! [`vsock`] keeps the same promises for virtio-vsock, and parses every packet header
//! against the bytes the device wrote (a malformed packet is dropped and counted).
//!
//! Promises of [`BlockDevice`] (virtio-blk):
//!
//! * never waits for the device: [`BlockDevice::submit`] posts and returns a [`blk::Ticket`],
//!   [`BlockDevice::complete`] answers "not yet" with the caller's waker registered, and
//!   the interrupt wakes the kernel's completion task, which wakes the callers; with
//!   every request entry in use, `submit` hands the request back (backpressure);
//! * many requests in flight: up to [`blk::QUEUE`] with indirect descriptors, a third of
//!   that without; they complete in whatever order the device chooses;
//! * DMA ownership is a type: a [`Buffer`] moves into the driver with its request and
//!   comes back only when the device has returned it; an abandoned request keeps its
//!   buffer until then;
//! * device memory is untrusted: an unknown used token or an impossible length is counted
//!   and fails requests ([`BlockError`]), never the kernel.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod blk;
mod console;
pub mod discovery;
#[cfg(test)]
mod fake;
mod features;
pub mod fs;
mod lent;
mod net;
mod queue;
pub mod requests;
mod rng;
mod transport;
pub mod vsock;
pub mod xen;

pub use blk::{BlockDevice, BlockError, BlockStats, Buffer};
pub use console::{BUFFER as CONSOLE_BUFFER, ConsoleDevice, ConsoleError, ConsoleStats};
pub use fs::{FsDevice, FsStats, FuseError};
pub use net::{NetDevice, NetError, NetRx, NetStats, NetTx};

pub use rng::{RngDevice, RngError};
pub use transport::{DeviceTransport, StepwiseStatus, status_steps};
pub use virtio_drivers;
pub use vsock::{VsockDevice, VsockError};
