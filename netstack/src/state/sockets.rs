//! smoltcp's socket table, with an `add` that reports running out of memory instead of
//! stopping the kernel, and the fallible allocation of sockets' buffers.
//!
//! `SocketSet` keeps its sockets in a `Vec` of slots. Removing a socket frees its slot
//! for the next one; adding a socket when every slot is taken pushes a new slot, and when
//! the `Vec` is full that push reallocates it at twice the size, infallibly. In a small
//! guest that reallocation (464 bytes a slot: 59 KiB from 64 to 128 slots) can be the
//! one allocation that does not fit, and an infallible allocation that fails stops the
//! kernel. So [`Sockets::add`] counts slots the way `SocketSet` uses them and, when the
//! next add will reallocate, first checks that the larger table can be allocated (a
//! fallible probe, given back at once), returning `Error::NoMemory` when it cannot.
//!
//! The probe and the reallocation are separate allocations: a task on another core that
//! allocates in between can still take the memory. The window is a few instructions
//! long; the other allocations of a connection (its buffers and its [`Reserve`]) are
//! what normally run out first.

use crate::Error;
use crate::config::TcpConfig;
use alloc::vec::Vec;
use core::ops::Deref;
use smoltcp::iface::{SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::{AnySocket, Socket, tcp};

/// A zeroed buffer of `size` bytes, or `None` if the allocator has no room.
pub(crate) fn try_buffer(size: usize) -> Option<Vec<u8>> {
    let mut buffer = Vec::new();
    buffer.try_reserve_exact(size).ok()?;
    buffer.resize(size, 0);
    Some(buffer)
}

/// Heap held for the task that will serve a connection: allocated with the
/// connection's socket, given back when `accept` hands the connection out (so the
/// serving task finds it free). An allocation of the asked capacity that is never
/// written.
pub(crate) struct Reserve(#[allow(dead_code)] Vec<u8>);

impl Reserve {
    /// `bytes` of heap, or `None` if they do not fit.
    pub fn try_new(bytes: usize) -> Option<Reserve> {
        let mut reserve = Vec::<u8>::new();
        reserve.try_reserve_exact(bytes).ok()?;
        Some(Reserve(reserve))
    }
}

/// A TCP socket with `config`'s buffers and a [`Reserve`] of `reserve` bytes, or `None`
/// if they do not all fit in the heap (the connection is then refused, counted as out
/// of memory, rather than accepted into a task that cannot be spawned). Without the
/// reserve, whether the last connection that fits stops the kernel depended on where
/// the heap happened to end (a 3 KiB smaller image did); with a mere check, a burst of
/// handshakes could all pass it and then share the same free kilobytes.
pub(crate) fn new_tcp_socket(
    config: TcpConfig,
    reserve: usize,
) -> Option<(tcp::Socket<'static>, Reserve)> {
    let rx = try_buffer(config.rx_buffer)?;
    let tx = try_buffer(config.tx_buffer)?;
    let reserve = Reserve::try_new(reserve)?;
    let socket = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
    Some((socket, reserve))
}

/// A `SocketSet` whose additions fail with `Error::NoMemory` rather than panic.
///
/// It dereferences (shared) to the `SocketSet` for `get` and `iter`; mutable access goes
/// through [`get_mut`](Self::get_mut) and [`for_poll`](Self::for_poll), so that only
/// `add` and `remove` here, which keep the slot count, change the set's membership.
pub(crate) struct Sockets {
    set: SocketSet<'static>,
    /// Sockets in the set.
    live: usize,
    /// Slots the set has created: the length of its `Vec`. `live` of them are taken.
    slots: usize,
    /// The `Vec`'s capacity: what `Vec::with_capacity` and doubling give it.
    capacity: usize,
}

/// Slots the table starts with: enough for DHCP, a listener and a few connections.
const INITIAL_SLOTS: usize = 8;

impl Sockets {
    /// An empty table with room for [`INITIAL_SLOTS`] sockets (allocated like the rest
    /// of the stack's start-up state: infallibly).
    pub fn new() -> Self {
        let storage = Vec::with_capacity(INITIAL_SLOTS);
        let capacity = storage.capacity();
        Self {
            set: SocketSet::new(storage),
            live: 0,
            slots: 0,
            capacity,
        }
    }

    /// Adds `socket`.
    ///
    /// # Errors
    /// `NoMemory` if the table must grow and the larger table does not fit; the socket
    /// is dropped.
    pub fn add<T: AnySocket<'static>>(&mut self, socket: T) -> Result<SocketHandle, Error> {
        if self.live == self.slots && self.slots == self.capacity {
            // `Vec` growth: twice the capacity, at least 4 slots.
            let grown = (self.capacity * 2).max(4);
            let mut probe = Vec::<SocketStorage<'static>>::new();
            probe
                .try_reserve_exact(grown)
                .map_err(|_| Error::NoMemory)?;
            drop(probe);
            self.capacity = grown;
        }
        let handle = self.set.add(socket);
        self.live += 1;
        self.slots = self.slots.max(self.live);
        Ok(handle)
    }

    /// Removes the socket `handle` names, freeing its slot for the next `add`.
    ///
    /// # Panics
    /// If `handle` is not in the set (as `SocketSet::remove` does): a netstack bug.
    pub fn remove(&mut self, handle: SocketHandle) -> Socket<'static> {
        let socket = self.set.remove(handle);
        self.live -= 1;
        socket
    }

    /// The socket `handle` names, as a `T`.
    ///
    /// # Panics
    /// If `handle` is not in the set or not a `T` (as `SocketSet::get_mut` does): a
    /// netstack bug.
    pub fn get_mut<T: AnySocket<'static>>(&mut self, handle: SocketHandle) -> &mut T {
        self.set.get_mut(handle)
    }

    /// The set, for the interface's polls and deadline queries, which change sockets'
    /// state but never add or remove one.
    pub fn for_poll(&mut self) -> &mut SocketSet<'static> {
        &mut self.set
    }
}

impl Deref for Sockets {
    type Target = SocketSet<'static>;
    fn deref(&self) -> &Self::Target {
        &self.set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::socket::udp;

    fn udp_socket() -> udp::Socket<'static> {
        let buffer = || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 1], vec![0; 16]);
        udp::Socket::new(buffer(), buffer())
    }

    /// The slot count follows `SocketSet`: freed slots are reused before new ones are
    /// made, so the table only grows past its high-water mark.
    #[test]
    fn slots_follow_the_high_water_mark() {
        let mut sockets = Sockets::new();
        let handles: Vec<_> = (0..20)
            .map(|_| sockets.add(udp_socket()).unwrap())
            .collect();
        assert_eq!((sockets.live, sockets.slots), (20, 20));
        assert!(sockets.capacity >= 20);
        let capacity = sockets.capacity;
        for &handle in &handles[..15] {
            sockets.remove(handle);
        }
        assert_eq!((sockets.live, sockets.slots), (5, 20));
        for _ in 0..15 {
            sockets.add(udp_socket()).unwrap();
        }
        assert_eq!(
            (sockets.live, sockets.slots, sockets.capacity),
            (20, 20, capacity)
        );
        assert_eq!(sockets.iter().count(), 20);
    }

    /// The modelled capacity is at least what the `Vec` really has whenever an `add`
    /// would need to grow it, so the probe is never smaller than the reallocation.
    #[test]
    fn modelled_capacity_doubles_like_vec() {
        let mut sockets = Sockets::new();
        let mut model = Vec::<SocketStorage<'static>>::new();
        model.reserve_exact(INITIAL_SLOTS);
        for _ in 0..100 {
            sockets.add(udp_socket()).unwrap();
            model.push(SocketStorage::EMPTY);
            assert_eq!(sockets.capacity, model.capacity());
        }
    }
}
