//! The one driver type every NIC's stack is built for: a virtio-net device or a Xen vif.
//!
//! The stack's runner is generic over its driver, and smoltcp's whole receive and send
//! path is generic under it. Built once per driver type, that code was compiled twice
//! when Xen's netfront joined virtio-net, and every image that serves a network grew by
//! it. An enum that dispatches each call keeps it compiled once; the cost is one branch
//! per driver call, next to a frame's worth of work.

use crate::arch::virtio::KernelHal;
use alloc::boxed::Box;
use core::task::Waker;
use torito_netstack::{Driver, RxToken, TxToken};
use torito_virtio::{DeviceTransport, NetDevice, StepwiseStatus};

/// A virtio-net device as the kernel opens it.
pub(super) type Virtio = NetDevice<KernelHal, StepwiseStatus<DeviceTransport>>;

/// A NIC's device, whichever kind it is.
///
/// Both are boxed: a virtio-net device is 4.5 KiB, and the runner that owns the link is
/// built on whatever stack calls `net::stack()` first, a blocking task's 32 KiB fiber
/// stack included (unboxed, echo-blocking's fiber overflowed); a vif is boxed too, so
/// the enum is two words either way.
pub(super) enum Link {
    Virtio(Box<Virtio>),
    Xen(Box<crate::xen::Nic>),
}

/// A received frame from either kind of device.
pub(super) enum Rx<A, B> {
    Virtio(A),
    Xen(B),
}

/// Room for a frame in either kind of device.
pub(super) enum Tx<A, B> {
    Virtio(A),
    Xen(B),
}

type VirtioRx<'a> = <Virtio as Driver>::RxToken<'a>;
type VirtioTx<'a> = <Virtio as Driver>::TxToken<'a>;
type XenRx<'a> = <crate::xen::Nic as Driver>::RxToken<'a>;
type XenTx<'a> = <crate::xen::Nic as Driver>::TxToken<'a>;

impl Driver for Link {
    type RxToken<'a> = Rx<VirtioRx<'a>, XenRx<'a>>;
    type TxToken<'a> = Tx<VirtioTx<'a>, XenTx<'a>>;

    fn mac(&self) -> [u8; 6] {
        match self {
            Link::Virtio(device) => device.mac(),
            Link::Xen(vif) => vif.mac(),
        }
    }

    fn mtu(&self) -> usize {
        match self {
            Link::Virtio(device) => device.mtu(),
            Link::Xen(vif) => vif.mtu(),
        }
    }

    fn receive(&mut self, waker: &Waker) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        match self {
            Link::Virtio(device) => Driver::receive(&mut **device, waker)
                .map(|(rx, tx)| (Rx::Virtio(rx), Tx::Virtio(tx))),
            Link::Xen(vif) => vif
                .receive(waker)
                .map(|(rx, tx)| (Rx::Xen(rx), Tx::Xen(tx))),
        }
    }

    fn transmit(&mut self, waker: &Waker) -> Option<Self::TxToken<'_>> {
        match self {
            Link::Virtio(device) => Driver::transmit(&mut **device, waker).map(Tx::Virtio),
            Link::Xen(vif) => Driver::transmit(&mut **vif, waker).map(Tx::Xen),
        }
    }

    fn flush(&mut self) {
        match self {
            Link::Virtio(device) => Driver::flush(&mut **device),
            Link::Xen(vif) => Driver::flush(&mut **vif),
        }
    }
}

impl<A: RxToken, B: RxToken> RxToken for Rx<A, B> {
    fn frame(&self) -> &[u8] {
        match self {
            Rx::Virtio(token) => token.frame(),
            Rx::Xen(token) => token.frame(),
        }
    }
}

impl<A: TxToken, B: TxToken> TxToken for Tx<A, B> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        match self {
            Tx::Virtio(token) => token.consume(len, f),
            Tx::Xen(token) => token.consume(len, f),
        }
    }
}
