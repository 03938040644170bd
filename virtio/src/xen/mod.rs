//! Xen's paravirtual protocols for a PVH domU, without `unsafe` and tested on the host.
//!
//! A Xen guest talks to its backends (xenstored, xenconsoled, netback in dom0) through
//! pages it shares with them and event channels that ring a bell. Everything here is
//! the part of that conversation that can be checked without a hypervisor: the layouts
//! of the shared structures, the index arithmetic, and the order of the steps. The
//! kernel (`kernel/src/arch/xen/`) supplies the two things that need Xen: the shared
//! pages ([`SharedPage`], over mapped memory) and the bell ([`EventChannel`], over
//! `EVTCHNOP_send`). Host tests supply [`VecPage`] and a recording bell, and play the
//! other domain themselves.
//!
//! What is trusted: nothing the other side writes. Every index read from a shared page
//! is checked against what this side produced and masked before it addresses the page,
//! every length is checked against the page and the buffer, and a backend that breaks
//! the protocol gets a counted drop or an error naming what it did, never a panic.
//! What this side writes (its own producer indices, the grant entries it fills) is
//! trusted to stay as written only in the sense that it is never re-read to decide
//! where to write.
//!
//! * [`ring`]: Xen's generic shared request/response ring (`io/ring.h`), front end;
//! * [`console`]: the PV console ring (`io/console.h`);
//! * [`grant`]: grant-table v1 entries and a reference allocator (`grant_table.h`);
//! * [`xenstore`]: the xenstore wire protocol and an async client with watches
//!   (`io/xs_wire.h`);
//! * [`netfront`]: the network front end (`io/netif.h`, `io/xenbus.h`), a
//!   [`torito_netstack::Driver`].

pub mod console;
pub mod grant;
pub mod netfront;
mod page;
pub mod ring;
pub mod xenstore;

pub use page::VecPage;

use alloc::sync::Arc;

/// The size of a page shared with another domain, in bytes.
pub const PAGE_SIZE: usize = 4096;

/// One 4 KiB page shared with another domain (or the hypervisor). The kernel implements
/// it over a mapped page with volatile/atomic accesses; host tests over [`VecPage`].
///
/// Offsets are byte offsets in the page. Typed accesses are naturally aligned (a `u16`
/// at an even offset, a `u32` at a multiple of 4, a `u64` at a multiple of 8), as every
/// field of Xen's shared structures is. An access past the page or misaligned is a bug
/// in the caller (implementations `debug_assert` it); this module makes it impossible
/// for indices that come from the other side by masking them first.
pub trait SharedPage: Send + Sync {
    /// Loads a `u32` with Acquire ordering.
    fn load_u32(&self, offset: usize) -> u32;
    /// Stores a `u32` with Release ordering.
    fn store_u32(&self, offset: usize, value: u32);
    /// Loads a `u16` with Acquire ordering.
    fn load_u16(&self, offset: usize) -> u16;
    /// Stores a `u16` with Release ordering.
    fn store_u16(&self, offset: usize, value: u16);
    /// Loads a `u64` with Acquire ordering.
    fn load_u64(&self, offset: usize) -> u64;
    /// Stores a `u64` with Release ordering.
    fn store_u64(&self, offset: usize, value: u64);
    /// Copies bytes out of the page, from `offset` to `offset + into.len()`.
    fn read(&self, offset: usize, into: &mut [u8]);
    /// Copies bytes into the page, from `offset` to `offset + from.len()`.
    fn write(&self, offset: usize, from: &[u8]);
    /// A full barrier (Xen's `mb()`): no load or store moves across it.
    fn fence(&self);
    /// Atomically replaces the `u16` at `offset` with `new` if it equals `current`
    /// (sequentially consistent, like Xen's `sync_cmpxchg`). `Ok` with the old value if
    /// it was replaced, `Err` with the value found otherwise.
    ///
    /// Added to the agreed interface for [`grant::Table::end_access`]: in a v1 grant
    /// entry, the guest's permission bit and the hypervisor's "mapped" bits share one
    /// `u16`, and only a compare-exchange can clear the one while proving the others
    /// were clear (see the [`grant`] module).
    fn compare_exchange_u16(&self, offset: usize, current: u16, new: u16) -> Result<u16, u16>;
}

/// What a driver needs from the hypervisor's event channels: implemented by the kernel,
/// faked in tests.
///
/// The kernel routes an event on a port this object allocated (or was built for) to
/// the [`futures_util::task::AtomicWaker`] the driver was given, from its upcall; the
/// upcall only acknowledges and wakes.
pub trait EventChannel: Send + Sync {
    /// Signals the other end of `port` (`EVTCHNOP_send`).
    fn notify(&self, port: u32);

    /// Allocates a port that domain `remote` may bind to (`EVTCHNOP_alloc_unbound`), for a
    /// front end that advertises it in xenstore (netfront's `event-channel`). Events on
    /// it wake the waker this channel object stands for. `Err` carries Xen's error code
    /// (a negative errno).
    ///
    /// Added to the agreed interface for [`netfront::connect`]: the backend's domain id
    /// is known only once xenstore has been read, so the driver asks for the port then.
    fn alloc_unbound(&self, remote: u16) -> Result<u32, i32>;

    /// Closes `port` (`EVTCHNOP_close`), one that [`alloc_unbound`](Self::alloc_unbound)
    /// gave: a front end whose connection failed, or that is dropped, gives it back so
    /// that its backend sees it closed and the port can be allocated again.
    fn close(&self, port: u32);
}

/// `&T` and `Arc<T>` share a page or signal a channel as `T` does (drivers hold either):
/// the forwarding, written once for both pointers.
macro_rules! forward_through {
    ($page:ty, $channel:ty) => {
        impl<P: SharedPage + ?Sized> SharedPage for $page {
            fn load_u32(&self, offset: usize) -> u32 {
                (**self).load_u32(offset)
            }
            fn store_u32(&self, offset: usize, value: u32) {
                (**self).store_u32(offset, value)
            }
            fn load_u16(&self, offset: usize) -> u16 {
                (**self).load_u16(offset)
            }
            fn store_u16(&self, offset: usize, value: u16) {
                (**self).store_u16(offset, value)
            }
            fn load_u64(&self, offset: usize) -> u64 {
                (**self).load_u64(offset)
            }
            fn store_u64(&self, offset: usize, value: u64) {
                (**self).store_u64(offset, value)
            }
            fn read(&self, offset: usize, into: &mut [u8]) {
                (**self).read(offset, into)
            }
            fn write(&self, offset: usize, from: &[u8]) {
                (**self).write(offset, from)
            }
            fn fence(&self) {
                (**self).fence()
            }
            fn compare_exchange_u16(
                &self,
                offset: usize,
                current: u16,
                new: u16,
            ) -> Result<u16, u16> {
                (**self).compare_exchange_u16(offset, current, new)
            }
        }

        impl<E: EventChannel + ?Sized> EventChannel for $channel {
            fn notify(&self, port: u32) {
                (**self).notify(port)
            }
            fn alloc_unbound(&self, remote: u16) -> Result<u32, i32> {
                (**self).alloc_unbound(remote)
            }
            fn close(&self, port: u32) {
                (**self).close(port)
            }
        }
    };
}

forward_through!(&P, &E);
forward_through!(Arc<P>, Arc<E>);

/// A shared page together with its guest frame number (GFN: the guest-physical address
/// shifted right by 12), which is what grant entries and HVM parameters name.
#[derive(Debug, Clone)]
pub struct GuestPage<P> {
    /// The page's contents.
    pub page: P,
    /// Its guest frame number.
    pub frame: u64,
}
