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
//! * device memory is untrusted: a used-ring token outside the queue or a length larger
//!   than the buffer is dropped and counted, never trusted.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

mod console;
pub mod discovery;
#[cfg(test)]
mod fake;
mod net;
mod rng;
mod transport;

pub use console::{BUFFER as CONSOLE_BUFFER, ConsoleDevice, ConsoleError, ConsoleStats};
pub use net::{NetDevice, NetError, NetStats};
pub use rng::{RngDevice, RngError};
pub use transport::{StepwiseStatus, status_steps};
pub use virtio_drivers;
