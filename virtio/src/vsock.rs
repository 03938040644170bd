//! virtio-vsock (virtio spec 1.2, section 5.10): stream sockets between the guest and
//! its host, over virtio-drivers' `VirtQueue` with our own buffers.
//!
//! Three layers, the lower two tested on the host (`vsock/tests.rs`):
//!
//! * [`packet`]: the 44-byte header, parsed with every field checked against what the
//!   device actually wrote;
//! * [`Connections`]: listeners, connections and credit (flow control), as plain code:
//!   packets in, packets out, wakers for the sockets;
//! * [`VsockDevice`] (`vsock/device.rs`): the receive, transmit and event queues, and
//!   the DMA buffer hand-over.
//!
//! Why not virtio-drivers' `VirtIOSocket`/`VsockConnectionManager`: its every send
//! (data, credit update, accept) spins until the device has used the packet
//! (`add_notify_wait_pop`), its connection manager keeps a 1 KiB buffer per connection
//! by default and drops a whole `poll` result when a packet does not fit, and its credit
//! arithmetic underflows on a peer's hostile `fwd_cnt`. We keep its queue and transport
//! layers and write the protocol.
//!
//! Like virtio-net, no `VIRTIO_F_EVENT_IDX`: the ring `flags` suppress interrupts while
//! the kernel's vsock task drains the used ring, and the device is notified once per
//! batch. Transmit completions interrupt only while a packet waits for a free buffer.
//!
//! DMA ownership: every buffer is a `Box<[u8]>` held in its queue's slot (indexed by the
//! token it was posted under) while the device owns it; it comes back only through
//! `pop_used` with that token. A used entry with a token we did not post, or a length
//! past the buffer, is dropped and counted.

pub mod connections;
mod device;
mod error;
pub mod packet;

pub use connections::{Connections, Counters, Handle};
pub use device::{BUFFER, Polled, VsockDevice};
pub use error::VsockError;

#[cfg(test)]
mod tests;
