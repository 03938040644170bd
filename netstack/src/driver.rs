//! The driver trait: the only thing a network device implements to join a [`Stack`](crate::Stack).
//!
//! Token-shaped, as `embassy-net-driver` is, so that no frame is copied between the
//! device and smoltcp: a receive token lends the device's own buffer, and a transmit
//! token exists only while a transmit descriptor is free, so the frame is written
//! straight into the device's buffer. It knows nothing of smoltcp: the
//! [`Runner`](crate::Runner) adapts it to smoltcp's `phy::Device` (the private `device`
//! module), adding the look at each frame that SYN handling needs.
//!
//! Our own trait rather than `embassy-net-driver`'s: the runner needs
//! [`flush`](Driver::flush) (one device notification per poll, not per frame) and a
//! look at a received frame before it decides whether smoltcp gets it
//! ([`RxToken::frame`]), neither of which that trait has.

use core::task::Waker;

/// A network device that sends and receives Ethernet frames.
///
/// # Contract
///
/// - **Not ready is not an error.** With no frame to receive, or no free transmit
///   descriptor, a method registers `waker` (replacing any earlier one) to be woken when
///   that changes, and returns `None`. It never blocks and never busy-waits.
/// - **A transmit token only for a free descriptor.** Every [`TxToken`] handed out,
///   alone or beside a received frame, can queue its frame at once: the stack never has
///   a frame it cannot hand over, so none is copied aside or lost.
/// - The waker is the [`Runner`](crate::Runner)'s: wake it from the interrupt handler
///   (or wherever the device signals progress). Waking it when nothing changed is
///   harmless but wastes a poll.
/// - Frames exclude the Ethernet FCS. A received frame shorter than an Ethernet header
///   or longer than `mtu() + 14` bytes is dropped and counted by the stack.
pub trait Driver: Send {
    /// A received frame, lent from the device's buffer.
    type RxToken<'a>: RxToken
    where
        Self: 'a;
    /// Room for one frame in a free transmit descriptor.
    type TxToken<'a>: TxToken
    where
        Self: 'a;

    /// The device's MAC address.
    fn mac(&self) -> [u8; 6];

    /// The IP MTU: the largest IP packet a frame can carry (1500 on most links). Frames
    /// are up to `mtu() + 14` bytes long.
    fn mtu(&self) -> usize;

    /// The next received frame, with a transmit token for the reply, if a frame is
    /// pending and a transmit descriptor is free. Otherwise registers `waker` to be
    /// woken when both may be true (a frame arrives, a transmission completes) and
    /// returns `None`; a pending frame then stays pending.
    fn receive(&mut self, waker: &Waker) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)>;

    /// A transmit token if a transmit descriptor is free. Otherwise registers `waker` to
    /// be woken at the next transmit completion and returns `None`.
    ///
    /// A queued frame may wait in the driver until [`flush`](Self::flush); a driver
    /// whose queue is full must itself make sure the device sees what is queued (it is
    /// waiting for the device to make room).
    fn transmit(&mut self, waker: &Waker) -> Option<Self::TxToken<'_>>;

    /// Tells the device about the frames queued (and receive buffers given back) since
    /// the last call. The [`Runner`](crate::Runner) calls it once at the end of every
    /// poll, so a device notification (a VM exit under virtualization) is paid once per
    /// batch of frames rather than once per frame. The default does nothing: for a
    /// driver whose tokens hand every frame over at once.
    fn flush(&mut self) {}
}

/// A received frame in the device's buffer. Dropping the token gives the buffer back to
/// the device (to receive into again; the device hears of it at the next
/// [`Driver::flush`]).
pub trait RxToken {
    /// The frame's bytes, from the destination MAC address to the end of the payload.
    fn frame(&self) -> &[u8];
}

/// Room for one frame in a free transmit descriptor. Dropping it unused sends nothing
/// and keeps the descriptor free.
pub trait TxToken {
    /// Calls `f` with the device's buffer for a frame of `len` bytes, for it to write
    /// the whole frame, then queues the frame and returns what `f` returned.
    ///
    /// `len` is at most the driver's `mtu() + 14` (the stack never asks for more). A
    /// driver given more must not panic: it lets `f` write elsewhere, drops the frame
    /// and counts it.
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R;
}
