//! virtio-fs (virtio spec 1.2, section 5.11): a host directory shared with the guest,
//! spoken to in the FUSE protocol over a virtqueue.
//!
//! Two layers, both tested on the host against a fake device (`fs/tests.rs`), hostile
//! replies included:
//!
//! * [`protocol`]: FUSE requests encoded, replies checked (length, header, `unique`,
//!   errno, the opcode's body size, directory entries) before anything is read from them;
//! * [`FsDevice`] (`fs/device.rs`): the request table the block driver uses too
//!   (`requests.rs`) over the request queue: many requests in flight, completed by the
//!   interrupt, buffers owned by the table while the device holds them.
//!
//! virtio-drivers has no virtio-fs driver; we use its queue layer and its PCI transport
//! (shown the device as a type it knows), and over virtio-mmio our own transport
//! ([`mmio::MmioRegisters`]), since virtio-drivers' reads the type from the device and
//! refuses 26.
//! The device in QEMU is `vhost-user-fs-{device,pci}` with virtiofsd as its back end; the
//! daemon is the one that answers, so its replies are untrusted input like any device's.

mod device;
mod error;
pub mod mmio;
pub mod protocol;

pub use device::{Completion, FsDevice, FsStats, MAX_REQUEST, Outcome, QUEUE, Submission, Ticket};
pub use error::FuseError;

#[cfg(test)]
mod tests;
