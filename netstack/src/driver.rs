//! The driver trait: the only thing a network device implements to join a [`Stack`](crate::Stack).
//!
//! Kept deliberately small and callback-shaped so a virtio-net queue can implement it
//! without knowing smoltcp: the [`Runner`](crate::Runner) adapts it to smoltcp's
//! token-based `phy::Device` internally (see the private `device` module).

use core::task::Waker;

/// A network device that sends and receives Ethernet frames.
///
/// # Contract
///
/// - **Not ready is not an error.** When there is no frame to receive, or no free
///   transmit descriptor, the method registers `waker` (replacing any earlier one) to be
///   woken when that changes, and returns `false`. It never blocks and never busy-waits.
/// - **Transmit room only when a descriptor is free.** `transmit` calls `f` exactly once
///   with a buffer of exactly `len` bytes only when the frame can be queued at once;
///   after `f` returns the frame belongs to the device.
/// - The waker is the [`Runner`](crate::Runner)'s: wake it from the interrupt handler
///   (or wherever the device signals progress). Waking it when nothing changed is
///   harmless but wastes a poll.
/// - Frames exclude the Ethernet FCS. A received frame shorter than an Ethernet header
///   or longer than `mtu() + 14` bytes is dropped and counted by the stack.
pub trait Driver: Send {
    /// The device's MAC address.
    fn mac(&self) -> [u8; 6];

    /// The IP MTU: the largest IP packet a frame can carry (1500 on most links). Frames
    /// are up to `mtu() + 14` bytes long.
    fn mtu(&self) -> usize;

    /// Hands one received frame to `f` (the slice is valid only during the call) and
    /// returns `true`. With no frame pending, registers `waker` to be woken when one
    /// arrives and returns `false`.
    fn receive(&mut self, waker: &Waker, f: &mut dyn FnMut(&[u8])) -> bool;

    /// If a transmit descriptor is free: calls `f` once with a buffer of `len` bytes for
    /// it to fill, queues the frame and returns `true`. Otherwise registers `waker` to be
    /// woken at the next transmit completion and returns `false` without calling `f`.
    ///
    /// A queued frame may wait in the driver until [`flush`](Self::flush); a driver
    /// whose queue is full must itself make sure the device sees what is queued (it is
    /// waiting for the device to make room).
    fn transmit(&mut self, waker: &Waker, len: usize, f: &mut dyn FnMut(&mut [u8])) -> bool;

    /// Tells the device about the frames queued (and receive buffers given back) since
    /// the last call. The [`Runner`](crate::Runner) calls it once at the end of every
    /// poll, so a device notification (a VM exit under virtualization) is paid once per
    /// batch of frames rather than once per frame. The default does nothing: for a
    /// driver whose `transmit` hands every frame over at once.
    fn flush(&mut self) {}
}
